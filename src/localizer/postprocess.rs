//! RetinaNet post-processing (torchvision RetinaNet.postprocess_detections):
//! per level, sigmoid scores over (anchor, class), keep those above the score
//! threshold, the top-k of them, decode and clip their boxes; then class-wise
//! NMS over all levels and the best `detections_per_image`.

use crate::backend::cpu::sigmoid;
use crate::geometry::boxes::{clip, BoxCoder, BoxF};
use crate::geometry::nms::{batched_nms, order_by_score};

#[derive(Clone, Copy, Debug)]
pub struct PostProcess {
    pub score_thresh: f32,
    pub topk_candidates: usize,
    pub nms_thresh: f32,
    pub detections_per_image: usize,
}

impl Default for PostProcess {
    fn default() -> Self {
        PostProcess { score_thresh: 0.05, topk_candidates: 1000, nms_thresh: 0.5, detections_per_image: 300 }
    }
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Detections {
    pub boxes: Vec<BoxF>,
    pub scores: Vec<f32>,
    pub labels: Vec<usize>,
}

impl PostProcess {
    /// One image: `logits` `[A, K]`, `regression` `[A, 4]`, `anchors` `[A]`,
    /// `level_sizes` (anchors per level, summing to A).
    pub fn run(&self, logits: &[f32], regression: &[f32], anchors: &[BoxF], level_sizes: &[usize], k: usize, image_size: [usize; 2]) -> Detections {
        let coder = BoxCoder::default();
        let (mut boxes, mut scores, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        let mut start = 0;
        for &n in level_sizes {
            // Scores in f64: near-equal f32 scores then keep the order exact arithmetic gives.
            let cand: Vec<usize> = (start * k..(start + n) * k).filter(|&i| sigmoid(logits[i] as f64) > self.score_thresh as f64).collect();
            let s: Vec<f64> = cand.iter().map(|&i| sigmoid(logits[i] as f64)).collect();
            for j in order_by_score(&s).into_iter().take(self.topk_candidates) {
                let i = cand[j];
                let a = i / k;
                let d = [regression[4 * a], regression[4 * a + 1], regression[4 * a + 2], regression[4 * a + 3]];
                boxes.push(clip(&coder.decode(&d, &anchors[a]), image_size));
                scores.push(s[j]);
                labels.push(i % k);
            }
            start += n;
        }
        let keep = batched_nms(&boxes, &scores, &labels, self.nms_thresh);
        let keep = &keep[..keep.len().min(self.detections_per_image)];
        Detections {
            boxes: keep.iter().map(|&i| boxes[i]).collect(),
            scores: keep.iter().map(|&i| scores[i] as f32).collect(),
            labels: keep.iter().map(|&i| labels[i]).collect(),
        }
    }
}
