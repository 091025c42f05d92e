//! The CPU backend's box geometry: `geometry/` on the backend's buffers (the
//! geometry is f32 on both backends, as torchvision's).

use super::{Cpu, Real};
use crate::backend::ops::BoxOps;
use crate::geometry::boxes::{as_boxes, clip, BoxCoder, BoxF};
use crate::geometry::{anchors::anchors_for, matcher::Matcher, nms::nms as nms_host};
use anyhow::{ensure, Result};



/// `[n, 4]` rows as boxes; `what` names the buffer in the error.
fn boxes<T: Real>(what: &str, x: &[T]) -> Result<Vec<BoxF>> {
    ensure!(x.len() % 4 == 0, "{what}: {} values are not rows of 4 box coordinates", x.len());
    Ok(as_boxes(&x.iter().map(|v| v.to_f32().unwrap()).collect::<Vec<f32>>()))
}

fn flat<T: Real>(b: impl IntoIterator<Item = BoxF>) -> Vec<T> {
    b.into_iter().flatten().map(|v| T::of(v as f64)).collect()
}

pub fn box_iou<T: Real>(a: &[T], b: &[T]) -> Result<Vec<T>> {
    let (a, b) = (boxes("box_iou", a)?, boxes("box_iou", b)?);
    Ok(crate::geometry::boxes::box_iou(&a, &b).into_iter().map(|v| T::of(v as f64)).collect())
}

pub fn box_encode<T: Real>(coder: &BoxCoder, gt: &[T], anchors: &[T]) -> Result<Vec<T>> {
    let (g, a) = (boxes("box_encode", gt)?, boxes("box_encode", anchors)?);
    ensure!(g.len() == a.len(), "box_encode: {} boxes for {} anchors", g.len(), a.len());
    Ok(flat(g.iter().zip(&a).map(|(g, a)| coder.encode(g, a))))
}

pub fn box_decode<T: Real>(coder: &BoxCoder, d: &[T], anchors: &[T], size: Option<[usize; 2]>) -> Result<Vec<T>> {
    let (d, a) = (boxes("box_decode", d)?, boxes("box_decode", anchors)?);
    ensure!(d.len() == a.len(), "box_decode: {} regressions for {} anchors", d.len(), a.len());
    Ok(flat(d.iter().zip(&a).map(|(d, a)| {
        let b = coder.decode(d, a);
        size.map_or(b, |s| clip(&b, s))
    })))
}

pub fn anchors<T: Real>(image_size: [usize; 2], grids: &[[usize; 2]], scale: f32) -> Vec<T> {
    flat(anchors_for(image_size, grids, scale))
}

pub fn nms<T: Real>(b: &[T], scores: &[T], threshold: f32) -> Result<Vec<usize>> {
    let b = boxes("nms", b)?;
    ensure!(b.len() == scores.len(), "nms: {} boxes and {} scores", b.len(), scores.len());
    Ok(nms_host(&b, scores, threshold))
}

pub fn match_anchors<T: Real>(m: &Matcher, gt: &[T], anchors: &[T]) -> Result<Vec<i64>> {
    Ok(m.assign(&boxes("match_anchors", gt)?, &boxes("match_anchors", anchors)?))
}


impl<T: Real> BoxOps for Cpu<T> {
    fn box_iou(&self, a: &Vec<T>, b: &Vec<T>) -> Result<Vec<T>> {
        box_iou(a, b)
    }

    fn box_encode(&self, coder: &BoxCoder, gt: &Vec<T>, anchors: &Vec<T>) -> Result<Vec<T>> {
        box_encode(coder, gt, anchors)
    }

    fn box_decode(&self, coder: &BoxCoder, d: &Vec<T>, anchors: &Vec<T>, clip: Option<[usize; 2]>) -> Result<Vec<T>> {
        box_decode(coder, d, anchors, clip)
    }

    fn anchors(&self, image_size: [usize; 2], grids: &[[usize; 2]], scale: f32) -> Result<Vec<T>> {
        Ok(anchors(image_size, grids, scale))
    }

    fn nms(&self, boxes: &Vec<T>, scores: &Vec<T>, threshold: f32) -> Result<Vec<usize>> {
        nms(boxes, scores, threshold)
    }

    fn match_anchors(&self, matcher: &Matcher, gt: &Vec<T>, anchors: &Vec<T>) -> Result<Vec<i64>> {
        match_anchors(matcher, gt, anchors)
    }
}
