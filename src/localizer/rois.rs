//! ROI selection (SPEC 3.9): from one detector pass, for each image the
//! top-N anchors by score (the positive set I) and the bottom-N (the negative
//! set I_n, among anchors with at least half their box inside the image),
//! each with the 256-d output of the classification tower's 4th conv + ReLU
//! at its location, its score and its decoded box in [0, 1] coordinates.
//!
//! The ranking needs every anchor's score and the negative set every
//! anchor's box, so the logits and the boxes (decoded on the backend) come
//! to the host; the towers (256 values per location) stay on the backend,
//! which gathers the 2N selected features of each image (`gather_lines`).

use super::Pass;
use crate::backend::cpu::sigmoid;
use crate::backend::Backend;
use crate::data::image::Gray;
use crate::localizer::bundle::ModelMeta;
use crate::geometry::boxes::{area, as_boxes, BoxCoder, BoxF};
use crate::geometry::nms::order_by_score;
use crate::nn::retinanet::NUM_ANCHORS;
use crate::shape::AxisLayout;
use anyhow::{ensure, Result};

pub const FEATURE_DIM: usize = 256;

/// One ROI set of one image (the paper's r, g and s).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoiSet {
    /// r: `[n, 256]` features.
    pub features: Vec<f32>,
    /// g: `[n, 4]` boxes (x1, y1, x2, y2) in [0, 1] coordinates.
    pub boxes: Vec<f32>,
    /// s: `[n]` detector scores.
    pub scores: Vec<f32>,
}

impl RoiSet {
    pub fn len(&self) -> usize {
        self.scores.len()
    }
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
    /// The boxes as rows.
    pub fn box_rows(&self) -> Vec<BoxF> {
        as_boxes(&self.boxes)
    }
}

#[derive(Clone, Debug, Default)]
pub struct ImageRois {
    pub id: String,
    pub pos: RoiSet,
    pub neg: RoiSet,
    /// Original (width, height).
    pub size: (usize, usize),
}

fn inside_fraction(b: &BoxF) -> f32 {
    let clipped = [b[0].clamp(0.0, 1.0), b[1].clamp(0.0, 1.0), b[2].clamp(0.0, 1.0), b[3].clamp(0.0, 1.0)];
    let a = area(b);
    if a > 0.0 { area(&clipped) / a } else { 0.0 }
}

/// The ROI sets of every image of `pass` (`imgs`: the ids and images it ran on).
pub fn select<B: Backend>(b: &B, pass: &Pass<B>, meta: &ModelMeta, imgs: &[(&str, &Gray)], top_n: usize) -> Result<Vec<ImageRois>> {
    let (n, size, out) = (pass.n, pass.size, &pass.out);
    ensure!(imgs.len() == n, "ROI selection: {} images for a pass over {n}", imgs.len());
    let k = meta.retina.num_classes;
    let anchors = b.anchors([size, size], &out.grids, meta.retina.anchor_scale)?;
    let a = b.len(&anchors) / 4;
    let logits = pass.g.to_host(out.cls_logits)?;
    ensure!(logits.len() == n * a * k, "ROI selection: {} logits for {n} images of {a} anchors and {k} classes", logits.len());
    // anchor index -> (level, position in the level's grid)
    let mut level_of = Vec::with_capacity(a);
    for (l, gr) in out.grids.iter().enumerate() {
        for p in 0..gr[0] * gr[1] {
            level_of.extend(std::iter::repeat_n((l, p), NUM_ANCHORS));
        }
    }
    ensure!(level_of.len() == a, "anchors and pyramid disagree ({} vs {a})", level_of.len());
    let reg = &pass.g.value(out.bbox_regression).buf;
    let coder = BoxCoder::default();
    // per image: the selected anchors of each set, with their boxes and scores
    let mut sets: Vec<[(Vec<usize>, RoiSet); 2]> = Vec::with_capacity(n);
    for i in 0..n {
        // score of an anchor: its best class
        let scores: Vec<f32> = (0..a).map(|j| sigmoid(logits[(i * a + j) * k..(i * a + j + 1) * k].iter().copied().fold(f32::NEG_INFINITY, f32::max))).collect();
        let d = b.axis_slice(reg, AxisLayout { outer: 1, n, inner: a * 4 }, i, 1)?;
        let px = b.download(&b.box_decode(&coder, &d, &anchors, None)?)?;
        let boxes: Vec<BoxF> = as_boxes(&px).into_iter().map(|bx| bx.map(|v| v / size as f32)).collect();
        let order = order_by_score(&scores);
        let set = |sel: &mut dyn Iterator<Item = usize>, clip: bool| {
            let (mut picked, mut s) = (Vec::new(), RoiSet::default());
            for j in sel.take(top_n) {
                picked.push(j);
                s.boxes.extend(if clip { boxes[j].map(|v| v.clamp(0.0, 1.0)) } else { boxes[j] });
                s.scores.push(scores[j]);
            }
            (picked, s)
        };
        let pos = set(&mut order.iter().copied(), true);
        let neg = set(&mut order.iter().rev().copied().filter(|&j| inside_fraction(&boxes[j]) >= 0.5), false);
        sets.push([pos, neg]);
    }
    // features: one gather per pyramid level over every selected ROI of the batch
    for (l, gr) in out.grids.iter().enumerate() {
        let hw = gr[0] * gr[1];
        let mut lines = Vec::new();
        for (i, image) in sets.iter().enumerate() {
            for (picked, _) in image {
                lines.extend(picked.iter().filter(|&&j| level_of[j].0 == l).map(|&j| (i * hw + level_of[j].1) as u32));
            }
        }
        if lines.is_empty() {
            continue;
        }
        let tower = &pass.g.value(out.cls_tower[l]).buf;
        let rows = b.download(&b.gather_lines(tower, AxisLayout { outer: n, n: FEATURE_DIM, inner: hw }, &lines)?)?;
        // the rows come back in the order the lines were listed
        let mut next = 0;
        for image in sets.iter_mut() {
            for (picked, set) in image.iter_mut() {
                if set.features.is_empty() {
                    set.features = vec![0.0; picked.len() * FEATURE_DIM];
                }
                for (r, &j) in picked.iter().enumerate() {
                    if level_of[j].0 == l {
                        set.features[r * FEATURE_DIM..(r + 1) * FEATURE_DIM].copy_from_slice(&rows[next * FEATURE_DIM..(next + 1) * FEATURE_DIM]);
                        next += 1;
                    }
                }
            }
        }
    }
    Ok(sets
        .into_iter()
        .zip(imgs)
        .map(|([(_, pos), (_, neg)], (id, img))| ImageRois { id: id.to_string(), pos, neg, size: (img.width, img.height) })
        .collect())
}
