//! The evaluation's metrics on hand-made cases a wrong implementation
//! breaks: SPEC 7's RSNA example, IoU against IoBB in the ChestX-ray8
//! protocol, strict thresholds of the top-1 hit rate, bootstrap intervals of
//! known cases, and boxes from a heatmap with two blobs.

use engine::eval::heatmap::{regions, top_box, upsample_bilinear, Threshold};
use engine::eval::metrics::*;

#[test]
fn rsna_score_of_spec_7() {
    // IoU exactly 0.6: the thresholds 0.40 ... 0.60 (5 of 8) count it
    let (truth, pred) = ([0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 6.0]);
    assert_eq!(rsna_image_score(&[(pred, 0.9)], &[truth]), Some(0.625));
    // a second, wrong prediction adds a false positive at every threshold
    let s = rsna_image_score(&[(pred, 0.9), ([50.0, 50.0, 60.0, 60.0], 0.8)], &[truth]).unwrap();
    assert!((s - 5.0 / 8.0 * 0.5).abs() < 1e-12, "{s}");
    // above 0.6 the better, lower-scored box (IoU 0.9) still finds the unmatched truth: 1 TP, 1 FP at every threshold
    let s = rsna_image_score(&[([0.0, 0.0, 10.0, 9.0], 0.5), (pred, 0.9)], &[truth]).unwrap();
    assert!((s - 0.5).abs() < 1e-12, "{s}");
    // no truth: any prediction scores 0, none leaves the image out
    assert_eq!(rsna_image_score(&[(pred, 0.9)], &[]), Some(0.0));
    assert_eq!(rsna_image_score(&[], &[]), None);
    assert_eq!(rsna_image_score(&[], &[truth]), Some(0.0));
}

#[test]
fn chestxray8_protocol_counts_iou_and_iobb_differently() {
    let truth = [[0.0, 0.0, 100.0, 100.0], [200.0, 200.0, 300.0, 300.0]];
    let inside = [10.0, 10.0, 30.0, 30.0]; // IoU 0.04, IoBB 1
    let far = [500.0, 500.0, 510.0, 510.0];
    let preds = [inside, far];
    assert_eq!(chestxray8_counts(&preds, &truth, Overlap::Iou(0.1)), (0, 2, 2));
    assert_eq!(chestxray8_counts(&preds, &truth, Overlap::Iobb(0.1)), (1, 2, 1));
    assert_eq!(chestxray8_counts(&preds, &truth, Overlap::Iou(0.03)), (1, 2, 1));
    // one box over both truths finds both under IoBB 0.25, neither under IoU 0.25
    let both = [[0.0, 0.0, 300.0, 300.0]];
    assert_eq!(chestxray8_counts(&both, &truth, Overlap::Iobb(0.1)), (2, 2, 0));
    assert_eq!(chestxray8_counts(&both, &truth, Overlap::Iou(0.25)), (0, 2, 1));
    let counts = [(1, 2, 1), (2, 2, 0), (0, 1, 3)];
    assert_eq!(chestxray8_summary(&counts, &[0, 1, 2]), (3.0 / 5.0, 4.0 / 3.0));
    assert_eq!(chestxray8_summary(&counts, &[1, 1]), (1.0, 0.0));
}

#[test]
fn top1_hits_need_more_than_the_threshold() {
    let truth = vec![vec![[0.0, 0.0, 10.0, 10.0]], vec![[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]];
    // IoU 0.5 exactly with the first image's truth; 1.0 with the second's second box
    let top = [[0.0, 0.0, 10.0, 5.0], [20.0, 20.0, 30.0, 30.0]];
    assert_eq!(top1_accuracy(&top, &truth), [1.0, 0.5, 0.5]);
    assert_eq!(top1_hits(&[None, Some(top[1])], &truth, 0.25), vec![0.0, 1.0]);
    assert_eq!(iobb(&[0.0, 0.0, 10.0, 5.0], &[0.0, 0.0, 10.0, 10.0]), 1.0);
}

#[test]
fn bootstrap_intervals_of_known_cases() {
    let same = vec![0.25; 50];
    assert_eq!(bootstrap_mean(&same, 1000, 1), Interval { value: 0.25, lo: 0.25, hi: 0.25 });
    // a fair 0/1 sample of 100: the 95 % interval is about 0.5 +- 0.098
    let half: Vec<f64> = (0..100).map(|i| (i % 2) as f64).collect();
    let ci = bootstrap_mean(&half, 4000, 2);
    assert_eq!(ci.value, 0.5);
    assert!((0.38..0.43).contains(&ci.lo) && (0.57..0.62).contains(&ci.hi), "{ci:?}");
    assert_eq!(ci, bootstrap_mean(&half, 4000, 2), "seeded");
    // paired: a constant difference has no spread; the same method differs by 0
    let shifted: Vec<f64> = half.iter().map(|v| v + 0.25).collect();
    let d = bootstrap_difference(&shifted, &half, 1000, 3).unwrap();
    assert!((d.value - 0.25).abs() < 1e-12 && (d.lo - 0.25).abs() < 1e-12 && (d.hi - 0.25).abs() < 1e-12, "{d:?}");
    // pairing matters: unpaired spread would be about +-0.14
    let paired = bootstrap_difference(&half, &half, 1000, 3).unwrap();
    assert_eq!((paired.lo, paired.hi), (0.0, 0.0));
    assert!(bootstrap_difference(&half, &same, 10, 1).is_err());
}

/// A 20 x 10 map: a 5x4 blob of 1.0 at (2, 3), a 2x2 blob of 0.9 at (15, 1), a faint 3x1 strip of 0.15 at (10, 8).
fn two_blobs() -> Vec<f32> {
    let (w, h) = (20, 10);
    let mut m = vec![0.0f32; w * h];
    for y in 3..7 {
        for x in 2..7 {
            m[y * w + x] = 1.0;
        }
    }
    for y in 1..3 {
        for x in 15..17 {
            m[y * w + x] = 0.9;
        }
    }
    for x in 10..13 {
        m[8 * w + x] = 0.15;
    }
    m
}

#[test]
fn heatmap_boxes_take_the_largest_region_and_honour_the_threshold() {
    let m = two_blobs();
    let r = regions(&m, 20, 10, Threshold::OfMax(0.2)).unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].bbox, r[0].pixels), ([2.0, 3.0, 7.0, 7.0], 20));
    assert_eq!((r[1].bbox, r[1].pixels), ([15.0, 1.0, 17.0, 3.0], 4));
    // below the faint strip's level it is a region too; above the small blob's only the large one is left
    assert_eq!(regions(&m, 20, 10, Threshold::OfMax(0.1)).unwrap().len(), 3);
    assert_eq!(regions(&m, 20, 10, Threshold::OfMax(0.95)).unwrap().len(), 1);
    // ChestX-ray8's scaled thresholds: 0.15 -> 38, 0.9 -> 229.5
    assert_eq!(regions(&m, 20, 10, Threshold::Scaled255(30.0)).unwrap().len(), 3);
    assert_eq!(regions(&m, 20, 10, Threshold::Scaled255(60.0)).unwrap().len(), 2);
    assert_eq!(regions(&m, 20, 10, Threshold::Scaled255(230.0)).unwrap().len(), 1);
    // the top box, scaled from the 20x10 grid to a 200x100 image
    assert_eq!(top_box(&m, 20, 10, Threshold::OfMax(0.2), (200, 100)).unwrap(), Some([20.0, 30.0, 70.0, 70.0]));
    // diagonal neighbours join; a flat or empty map has no box
    let mut d = vec![0.0f32; 9];
    d[0] = 1.0;
    d[4] = 1.0;
    assert_eq!(regions(&d, 3, 3, Threshold::OfMax(0.5)).unwrap().len(), 1);
    assert_eq!(top_box(&[0.0; 9], 3, 3, Threshold::OfMax(0.2), (3, 3)).unwrap(), None);
    assert!(regions(&d, 4, 3, Threshold::OfMax(0.5)).is_err());
}

#[test]
fn bilinear_upsampling_matches_pytorch_without_aligned_corners() {
    // F.interpolate(torch.tensor([[[[0., 1.], [2., 3.]]]]), size=(4, 4), mode="bilinear", align_corners=False)
    let up = upsample_bilinear(&[0.0, 1.0, 2.0, 3.0], 2, 2, 4, 4).unwrap();
    let want = [0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0];
    assert_eq!(up, want);
    assert_eq!(upsample_bilinear(&[5.0], 1, 1, 3, 2).unwrap(), vec![5.0; 6]);
    assert!(upsample_bilinear(&[1.0, 2.0], 3, 1, 4, 4).is_err());
    // a 2x2 map with one hot cell: above 20 % of the maximum only a corner region remains, not the whole image
    let up = upsample_bilinear(&[1.0, 0.0, 0.0, 0.0], 2, 2, 64, 64).unwrap();
    let r = regions(&up, 64, 64, Threshold::OfMax(0.2)).unwrap();
    assert_eq!(r.len(), 1);
    assert!(r[0].bbox[0] == 0.0 && r[0].bbox[2] < 64.0 && r[0].bbox[2] > 32.0, "{:?}", r[0].bbox);
}

#[test]
fn area_ratio_is_the_geometric_mean_against_the_most_overlapping_truth() {
    let big = [0.0, 0.0, 0.4, 0.4];
    let small = [0.0, 0.0, 0.2, 0.2];
    let far = [0.6, 0.6, 0.8, 0.8];
    assert!((area_ratio(&[big], &[vec![small]]) - 4.0).abs() < 1e-5);
    // the second image's truth that overlaps its top box is `big`, not `far`
    assert!((area_ratio(&[big, small], &[vec![small], vec![far, big]]) - 1.0).abs() < 1e-5);
    assert!((area_ratio(&[small], &[vec![far, big]]) - 0.25).abs() < 1e-5);
}

#[test]
fn distinct_boxes_merges_near_copies_only() {
    let a = [0.2, 0.2, 0.4, 0.4];
    let a_shifted = [0.201, 0.2, 0.401, 0.4]; // IoU 0.99 with a
    let half_over = [0.3, 0.2, 0.5, 0.4]; // IoU 1/3 with a
    assert_eq!(distinct_boxes(&[]), 0);
    assert_eq!(distinct_boxes(&[a, a_shifted, a]), 1);
    assert_eq!(distinct_boxes(&[a, half_over, a_shifted, half_over]), 2);
}
