//! The attention model's prediction from the image alone (SPEC 4.8): alpha
//! over the positive ROI set, NMS over the ROIs ranked by alpha, and the
//! probability of every attribute.

use super::bundle::AttnMeta;
use super::rois::{ImageRois, FEATURE_DIM};
use crate::nn::attention::{infer as head_infer, Head, Rois};
use crate::autograd::Graph;
use crate::backend::Backend;
use crate::geometry::boxes::BoxF;
use crate::geometry::nms::nms;
use crate::params::ParamSet;
use crate::tensor::Tensor;
use anyhow::{ensure, Result};

/// One image's prediction.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Prediction {
    /// Boxes in [0, 1] coordinates, by descending alpha, after NMS.
    pub boxes: Vec<BoxF>,
    pub alpha: Vec<f32>,
    /// Detector score of each box's ROI.
    pub score: Vec<f32>,
    /// Probability of each attribute.
    pub probs: Vec<f32>,
    /// The detector's own top box (highest score), [0, 1] coordinates.
    pub detector_top: BoxF,
    /// Alpha of every ROI of the set, in the set's order (for evaluation).
    #[serde(skip)]
    pub alpha_all: Vec<f32>,
}

/// Alpha and attribute probabilities of the positive ROI sets of `rois`.
pub fn predict<B: Backend>(b: &B, head: &ParamSet<B>, meta: &AttnMeta, rois: &[ImageRois], iou: f32, max_boxes: usize) -> Result<Vec<Prediction>> {
    let n = rois.len();
    let Some(first) = rois.first() else { return Ok(Vec::new()) };
    let top = first.pos.len();
    ensure!(top > 0 && rois.iter().all(|r| r.pos.len() == top), "prediction: every image needs the same, non-zero number of ROIs");
    let cat = |f: &dyn Fn(&ImageRois) -> &Vec<f32>| rois.iter().flat_map(|r| f(r).iter().copied()).collect::<Vec<f32>>();
    let mut g = Graph::no_grad(b.clone());
    let r = g.input(Tensor::from_host(b, &cat(&|x| &x.pos.features), &[n, top, FEATURE_DIM])?);
    let gg = g.input(Tensor::from_host(b, &cat(&|x| &x.pos.boxes), &[n, top, 4])?);
    let s = g.input(Tensor::from_host(b, &cat(&|x| &x.pos.scores), &[n, top, 1])?);
    let h = Head::new(meta.head, head);
    let (alpha, probs) = head_infer(&h, &mut g, Rois { r, g: gg, s })?;
    let (al, pr) = (g.to_host(alpha)?, g.to_host(probs)?);
    let k = meta.head.k;
    Ok(rois.iter().enumerate().map(|(i, x)| {
        let a = &al[i * top..(i + 1) * top];
        let boxes = x.pos.box_rows();
        let keep: Vec<usize> = nms(&boxes, a, iou).into_iter().take(max_boxes).collect();
        Prediction {
            boxes: keep.iter().map(|&j| boxes[j]).collect(),
            alpha: keep.iter().map(|&j| a[j]).collect(),
            score: keep.iter().map(|&j| x.pos.scores[j]).collect(),
            probs: pr[i * k..(i + 1) * k].to_vec(),
            detector_top: boxes[0],
            alpha_all: a.to_vec(),
        }
    }).collect())
}
