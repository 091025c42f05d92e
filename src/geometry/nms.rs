//! Greedy non-maximum suppression, deterministic: boxes are visited by score
//! (descending, stable: ties keep index order) and a box is dropped when its
//! IoU with a kept box is above the threshold (torchvision.ops.nms).

use super::boxes::{iou, BoxF};

/// Indices into `scores` ordered by descending score, ties by index.
pub fn order_by_score<S: Copy + PartialOrd>(scores: &[S]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap_or(std::cmp::Ordering::Equal));
    idx
}

/// Kept indices, by descending score.
pub fn nms<S: Copy + PartialOrd>(boxes: &[BoxF], scores: &[S], threshold: f32) -> Vec<usize> {
    let order = order_by_score(scores);
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        for &j in &order[k + 1..] {
            if !suppressed[j] && iou(&boxes[i], &boxes[j]) > threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// NMS within each label, then all kept boxes by descending score
/// (torchvision.ops.batched_nms).
pub fn batched_nms<S: Copy + PartialOrd>(boxes: &[BoxF], scores: &[S], labels: &[usize], threshold: f32) -> Vec<usize> {
    let mut classes: Vec<usize> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let mut keep = Vec::new();
    for c in classes {
        let idx: Vec<usize> = (0..boxes.len()).filter(|&i| labels[i] == c).collect();
        let b: Vec<BoxF> = idx.iter().map(|&i| boxes[i]).collect();
        let s: Vec<S> = idx.iter().map(|&i| scores[i]).collect();
        keep.extend(nms(&b, &s, threshold).into_iter().map(|k| idx[k]));
    }
    // by descending score; among equal scores, index order (the order_by_score rule)
    keep.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b)));
    keep
}
