//! Anchor-to-box matching (torchvision Matcher(0.5, 0.4, allow_low_quality_matches)):
//! each anchor takes its best ground-truth box; IoU < 0.4 is background (-1),
//! [0.4, 0.5) is ignored (-2); then, for each ground-truth box, every anchor
//! reaching that box's best IoU (ties included) gets back its own best match.

use super::boxes::{iou, BoxF};

pub const BACKGROUND: i64 = -1;
pub const IGNORED: i64 = -2;

#[derive(Clone, Copy, Debug)]
pub struct Matcher {
    pub high: f32,
    pub low: f32,
    pub allow_low_quality: bool,
}

impl Default for Matcher {
    fn default() -> Self {
        Matcher { high: 0.5, low: 0.4, allow_low_quality: true }
    }
}

impl Matcher {
    /// For each anchor: the index of its ground-truth box, or BACKGROUND / IGNORED.
    pub fn assign(&self, gt: &[BoxF], anchors: &[BoxF]) -> Vec<i64> {
        if gt.is_empty() {
            return vec![BACKGROUND; anchors.len()];
        }
        // best gt per anchor (first on ties)
        let mut best = vec![(f32::NEG_INFINITY, 0usize); anchors.len()];
        let mut best_per_gt = vec![f32::NEG_INFINITY; gt.len()];
        let q: Vec<Vec<f32>> = gt.iter().map(|g| anchors.iter().map(|a| iou(g, a)).collect()).collect();
        for (gi, row) in q.iter().enumerate() {
            for (ai, &v) in row.iter().enumerate() {
                if v > best[ai].0 {
                    best[ai] = (v, gi);
                }
                best_per_gt[gi] = best_per_gt[gi].max(v);
            }
        }
        let mut m: Vec<i64> = best
            .iter()
            .map(|&(v, g)| if v < self.low { BACKGROUND } else if v < self.high { IGNORED } else { g as i64 })
            .collect();
        if self.allow_low_quality {
            for (gi, row) in q.iter().enumerate() {
                for (ai, &v) in row.iter().enumerate() {
                    if v == best_per_gt[gi] {
                        m[ai] = best[ai].1 as i64;
                    }
                }
            }
        }
        m
    }
}
