//! The ROI selection of the host path the localizer replaced (every output
//! of the pass downloaded; each image's anchors ranked, decoded and gathered
//! on the host): the reference of tests/roi_selection.rs and the "host" side
//! of benches/rois.rs.

use engine::backend::Backend;
use engine::localizer::bundle::ModelMeta;
use engine::geometry::boxes::{area, BoxCoder, BoxF};
use engine::geometry::nms::order_by_score;
use engine::localizer::rois::{RoiSet, FEATURE_DIM};
use engine::localizer::Pass;
use engine::nn::retinanet::{self, NUM_ANCHORS};

/// Both ROI sets of every image of `pass`.
pub fn host_rois<B: Backend>(pass: &Pass<B>, meta: &ModelMeta, top_n: usize) -> Vec<(RoiSet, RoiSet)> {
    let (size, out) = (pass.size, &pass.out);
    let anchors = retinanet::anchors(&meta.retina, out, [size, size]);
    let (logits, reg) = (pass.g.to_host(out.cls_logits).unwrap(), pass.g.to_host(out.bbox_regression).unwrap());
    let towers: Vec<Vec<f32>> = out.cls_tower.iter().map(|&v| pass.g.to_host(v).unwrap()).collect();
    let (a, k) = (anchors.len(), meta.retina.num_classes);
    let mut level_of = Vec::new();
    for (l, gr) in out.grids.iter().enumerate() {
        for p in 0..gr[0] * gr[1] {
            level_of.extend(std::iter::repeat_n((l, p), NUM_ANCHORS));
        }
    }
    let inside = |b: &BoxF| area(&b.map(|v| v.clamp(0.0, 1.0))) / area(b) >= 0.5;
    (0..pass.n).map(|i| {
        let scores: Vec<f32> = (0..a).map(|j| (0..k).map(|c| logits[(i * a + j) * k + c]).fold(f32::NEG_INFINITY, f32::max)).map(|x| 1.0 / (1.0 + (-x).exp())).collect();
        let boxes: Vec<BoxF> = (0..a).map(|j| {
            let d = [reg[(i * a + j) * 4], reg[(i * a + j) * 4 + 1], reg[(i * a + j) * 4 + 2], reg[(i * a + j) * 4 + 3]];
            BoxCoder::default().decode(&d, &anchors[j]).map(|v| v / size as f32)
        }).collect();
        let set = |sel: &mut dyn Iterator<Item = usize>, clip: bool| {
            let mut s = RoiSet::default();
            for j in sel.take(top_n) {
                let (l, p) = level_of[j];
                let hw = out.grids[l][0] * out.grids[l][1];
                s.features.extend((0..FEATURE_DIM).map(|c| towers[l][(i * FEATURE_DIM + c) * hw + p]));
                s.boxes.extend(if clip { boxes[j].map(|v| v.clamp(0.0, 1.0)) } else { boxes[j] });
                s.scores.push(scores[j]);
            }
            s
        };
        let order = order_by_score(&scores);
        (set(&mut order.iter().copied(), true), set(&mut order.iter().rev().copied().filter(|&j| inside(&boxes[j])), false))
    }).collect()
}

