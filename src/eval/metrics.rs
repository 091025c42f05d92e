//! Localization metrics (SPEC 5.1, 5.2) and bootstrap intervals. Boxes are
//! `[x1, y1, x2, y2]` in each image's own pixels; every metric works per
//! image so that the bootstrap can resample images.

use crate::geometry::boxes::{area, iou, BoxF};
use crate::rng::Rng;

/// The paper's IoU thresholds (Table 1 columns).
pub const IOU_THRESHOLDS: [f32; 3] = [0.25, 0.5, 0.75];

/// The RSNA challenge's IoU thresholds, 0.40 to 0.75 by 0.05 (written out:
/// summed steps would miss 0.6 by one ulp).
pub const RSNA_THRESHOLDS: [f32; 8] = [0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75];

/// IoU of a box with the truth box it overlaps most (0 without truth).
pub fn best_iou(b: &BoxF, truth: &[BoxF]) -> f32 {
    truth.iter().map(|g| iou(b, g)).fold(0.0, f32::max)
}

/// Intersection over the detected box's area (ChestX-ray8's IoBB).
pub fn iobb(det: &BoxF, truth: &BoxF) -> f32 {
    let w = (det[2].min(truth[2]) - det[0].max(truth[0])).max(0.0);
    let h = (det[3].min(truth[3]) - det[1].max(truth[1])).max(0.0);
    let a = area(det);
    if a > 0.0 { w * h / a } else { 0.0 }
}

/// SPEC 5.1 (a), per image: 1 where the top box's best IoU exceeds `t`
/// (no box: 0).
pub fn top1_hits(top: &[Option<BoxF>], truth: &[Vec<BoxF>], t: f32) -> Vec<f64> {
    top.iter().zip(truth).map(|(b, g)| b.is_some_and(|b| best_iou(&b, g) > t) as u8 as f64).collect()
}

/// Top-1 hit rate at each of the paper's thresholds.
pub fn top1_accuracy(top: &[BoxF], truth: &[Vec<BoxF>]) -> [f64; 3] {
    let top: Vec<Option<BoxF>> = top.iter().copied().map(Some).collect();
    IOU_THRESHOLDS.map(|t| mean(&top1_hits(&top, truth, t)))
}

/// How large the top boxes are against the truth box each overlaps most:
/// the geometric mean of area(top) / area(truth) (1 = the same size).
pub fn area_ratio(top: &[BoxF], truth: &[Vec<BoxF>]) -> f64 {
    let logs: Vec<f64> = top
        .iter()
        .zip(truth)
        .filter_map(|(b, t)| {
            let g = t.iter().max_by(|x, y| iou(b, x).total_cmp(&iou(b, y)))?;
            (area(b) > 0.0 && area(g) > 0.0).then(|| (area(b) as f64 / area(g) as f64).ln())
        })
        .collect();
    (logs.iter().sum::<f64>() / logs.len().max(1) as f64).exp()
}

/// How many different boxes a list holds, boxes with IoU >= 0.9 counting as
/// one: a model that picks by position rather than by the image returns the
/// same few boxes for many images.
pub fn distinct_boxes(boxes: &[BoxF]) -> usize {
    let mut seen: Vec<BoxF> = Vec::new();
    for b in boxes {
        if !seen.iter().any(|s| iou(s, b) >= 0.9) {
            seen.push(*b);
        }
    }
    seen.len()
}

/// SPEC 5.1 (b): the RSNA challenge score of one image, `preds` (box,
/// score) already thresholded: at each IoU threshold the predictions, by
/// descending score, each take the unmatched truth box they overlap most if
/// that IoU reaches the threshold; TP / (TP + FP + FN), averaged over the
/// thresholds. An image without truth scores 0 with any prediction, and is
/// left out (`None`) without one, as the challenge did.
pub fn rsna_image_score(preds: &[(BoxF, f32)], truth: &[BoxF]) -> Option<f64> {
    if truth.is_empty() {
        return if preds.is_empty() { None } else { Some(0.0) };
    }
    let mut order: Vec<usize> = (0..preds.len()).collect();
    order.sort_by(|&a, &b| preds[b].1.total_cmp(&preds[a].1));
    let per_threshold = RSNA_THRESHOLDS.map(|t| {
        let mut taken = vec![false; truth.len()];
        let mut tp = 0usize;
        for &i in &order {
            let best = (0..truth.len()).filter(|&g| !taken[g]).map(|g| (g, iou(&preds[i].0, &truth[g]))).max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((g, v)) = best {
                if v >= t {
                    taken[g] = true;
                    tp += 1;
                }
            }
        }
        let (fp, fne) = (preds.len() - tp, truth.len() - tp);
        tp as f64 / (tp + fp + fne) as f64
    });
    Some(mean(&per_threshold))
}

/// SPEC 5.2: how ChestX-ray8 counts a truth box as found.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Overlap {
    /// IoU > T.
    Iou(f32),
    /// Intersection / area of the predicted box > T.
    Iobb(f32),
}

impl Overlap {
    pub fn hits(self, det: &BoxF, truth: &BoxF) -> bool {
        match self {
            Overlap::Iou(t) => iou(det, truth) > t,
            Overlap::Iobb(t) => iobb(det, truth) > t,
        }
    }
}

/// ChestX-ray8 counts of one image: (truth boxes found by any prediction,
/// truth boxes, predictions that find no truth box: false positives).
pub fn chestxray8_counts(preds: &[BoxF], truth: &[BoxF], rule: Overlap) -> (usize, usize, usize) {
    let found = truth.iter().filter(|g| preds.iter().any(|p| rule.hits(p, g))).count();
    let fp = preds.iter().filter(|p| !truth.iter().any(|g| rule.hits(p, g))).count();
    (found, truth.len(), fp)
}

/// ChestX-ray8 accuracy (found truth boxes / truth boxes) and average false
/// positives per image, over the images `idx` of per-image counts.
pub fn chestxray8_summary(counts: &[(usize, usize, usize)], idx: &[usize]) -> (f64, f64) {
    let (f, n, fp) = idx.iter().fold((0, 0, 0), |s, &i| (s.0 + counts[i].0, s.1 + counts[i].1, s.2 + counts[i].2));
    (f as f64 / n.max(1) as f64, fp as f64 / idx.len().max(1) as f64)
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// A figure with its 95 % bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Interval {
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
}

/// Percentile bootstrap over images: `stat` of the resampled image indices,
/// `resamples` times (seeded); the value is `stat` of every image once.
pub fn bootstrap(n: usize, resamples: usize, seed: u64, stat: impl Fn(&[usize]) -> f64) -> Interval {
    let all: Vec<usize> = (0..n).collect();
    let value = stat(&all);
    if n == 0 || resamples == 0 {
        return Interval { value, lo: value, hi: value };
    }
    let mut rng = Rng::new(seed);
    let mut idx = vec![0; n];
    let mut stats: Vec<f64> = (0..resamples)
        .map(|_| {
            idx.iter_mut().for_each(|i| *i = rng.below(n));
            stat(&idx)
        })
        .collect();
    stats.sort_by(f64::total_cmp);
    let at = |q: f64| stats[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    Interval { value, lo: at(0.025), hi: at(0.975) }
}

/// Bootstrap interval of a mean of per-image values.
pub fn bootstrap_mean(v: &[f64], resamples: usize, seed: u64) -> Interval {
    bootstrap(v.len(), resamples, seed, |idx| idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len().max(1) as f64)
}

/// Paired bootstrap of the difference of means `a - b` (the same images resampled for both).
pub fn bootstrap_difference(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> anyhow::Result<Interval> {
    anyhow::ensure!(a.len() == b.len(), "paired bootstrap: {} and {} images; both methods need the same images", a.len(), b.len());
    Ok(bootstrap(a.len(), resamples, seed, |idx| idx.iter().map(|&i| a[i] - b[i]).sum::<f64>() / idx.len().max(1) as f64))
}
