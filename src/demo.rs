//! `engine demo`: the whole method on synthetic phantoms with reports, end
//! to end: generate, extract attributes, train word2vec, train the detector,
//! extract ROIs, train the attention model, then on held-out phantoms print
//! the IoU accuracy at 0.25 / 0.5 / 0.75 of the detector's top box and of the
//! attention model's top box, side by side. Small on the CPU (minutes), the
//! full size on a GPU.

use crate::attention::train::{train as train_attention, AttnTrainArgs};
use crate::backend::device::Device;
use crate::backend::Backend;
use crate::data::image::load;
use crate::data::synth::{write_dataset, SynthConfig};
use crate::eval::metrics::{best_iou, top1_accuracy, IOU_THRESHOLDS};
use crate::geometry::boxes::{area, iou, BoxF};
use crate::detector::train::{train as train_detector, OptimizerKind, TrainArgs};
use crate::localizer::Localizer;
use crate::nn::BnMode;
use crate::text::commands::{extract, word2vec, ExtractArgs, Word2vecArgs};
use anyhow::{ensure, Context, Result};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args, Clone, Debug)]
pub struct DemoArgs {
    /// Working folder (data/, text/, detector/, attention/, demo.json).
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Phantoms (default: 400 on the CPU, 2000 on a GPU).
    #[arg(long)]
    pub count: Option<usize>,
    /// Image side (default: 64 on the CPU, 512 on a GPU).
    #[arg(long)]
    pub size: Option<usize>,
    /// Detector training steps (default: 400 on the CPU, 2500 on a GPU).
    /// On the CPU the 400 steps take about 6 minutes on 2 cores (the whole demo 6.5).
    #[arg(long)]
    pub detector_steps: Option<usize>,
    /// Attention-model epochs (default: 60 on the CPU, 150 on a GPU).
    #[arg(long)]
    pub attention_epochs: Option<usize>,
    /// ROIs per set given to the attention model (default: 100, SPEC 3.9; 50
    /// for inputs of 96 px or less, see `top_n_for`).
    #[arg(long)]
    pub top_n: Option<usize>,
    /// Cross-attention variant of the attention model.
    #[arg(long, value_enum, default_value_t = crate::nn::attention::Variant::Literal)]
    pub variant: crate::nn::attention::Variant,
    /// Train the attention model without the classification loss (the ablation).
    #[arg(long)]
    pub no_classification: bool,
    /// Train the attention model without the ROIs' box coordinates (the ablation).
    #[arg(long)]
    pub no_geometry: bool,
    /// Dropout on the attention model's classifier while training.
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,
    /// Boxes are scarce, reports plentiful (the method's premise): train the
    /// detector on the boxes of only this many training phantoms; the
    /// attention model still learns from every training phantom's report.
    /// Default: all of them.
    #[arg(long)]
    pub boxed: Option<usize>,
    /// Share of phantoms held out for the final table.
    #[arg(long, default_value_t = 0.2)]
    pub test_split: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Anchors in proportion to the input: torchvision's (32..812 px) suit
/// 512-800 px images; the phantoms' opacities at 64 px are 5-30 px.
pub fn anchor_scale_for(size: usize) -> f32 {
    if size <= 96 { 0.25 } else if size <= 256 { 0.5 } else { 1.0 }
}

/// ROIs per set for an input size: SPEC's 100 are 0.2% of the 49,104
/// anchors of a 512 px image but 13% of the 774 of a 64 px one, and there
/// the last of them are low-score central anchors that the attention model
/// learned to prefer (worse than a random ROI in 2 of 2 seeds); 50 did better
/// than 100 in 4 of 4 paired demo runs (README, "Demo").
pub fn top_n_for(size: usize) -> usize {
    if size <= 96 { 50 } else { 100 }
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

pub fn run(device: Device, a: &DemoArgs) -> Result<serde_json::Value> {
    let gpu = matches!(device, Device::Cuda(_));
    let count = a.count.unwrap_or(if gpu { 2000 } else { 400 });
    let size = a.size.unwrap_or(if gpu { 512 } else { 64 });
    let det_steps = a.detector_steps.unwrap_or(if gpu { 2500 } else { 400 });
    let attn_epochs = a.attention_epochs.unwrap_or(if gpu { 150 } else { 60 });
    let top_n = a.top_n.unwrap_or(top_n_for(size));
    ensure!(a.boxed != Some(0), "--boxed 0: the detector needs the boxes of at least one phantom");
    let t0 = std::time::Instant::now();
    let stage = |s: &str| eprintln!("engine demo [{:>5.0} s] {s}", t0.elapsed().as_secs_f64());
    let data = a.out.join("data");
    stage(&format!("1/7 {count} phantoms of {size}x{size} on {}", device.name()));
    let phantoms = write_dataset(&data, &SynthConfig { count, size, seed: a.seed, positive_rate: 0.85 }, || {})?;
    // held-out phantoms: the last ones, never seen by either model
    let n_test = ((count as f64 * a.test_split).round() as usize).max(1);
    let train_ids: Vec<String> = phantoms[..count - n_test].iter().map(|p| p.id.clone()).collect();
    let test = &phantoms[count - n_test..];
    let labels = std::fs::read_to_string(data.join("labels.csv"))?;
    let boxed = &train_ids[..a.boxed.unwrap_or(usize::MAX).min(train_ids.len())];
    let train_labels: String = labels.lines().enumerate().filter(|(i, l)| *i == 0 || boxed.iter().any(|id| l.starts_with(&format!("{id},")))).map(|(_, l)| format!("{l}\n")).collect();
    crate::weights::write_atomic(&data.join("labels_train.csv"), train_labels.as_bytes())?;

    stage("2/7 attributes from the reports");
    let text = a.out.join("text");
    std::fs::create_dir_all(&text)?;
    let ex = extract(&ExtractArgs { reports: data.join("reports"), out: text.join("attributes.jsonl"), attributes: None, json: true })?;
    let all_attrs = std::fs::read_to_string(text.join("attributes.jsonl"))?;
    let train_attrs: String = all_attrs.lines().filter(|l| train_ids.iter().any(|id| l.contains(&format!("\"id\":\"{id}\"")))).map(|l| format!("{l}\n")).collect();
    crate::weights::write_atomic(&text.join("attributes_train.jsonl"), train_attrs.as_bytes())?;

    stage("3/7 word2vec on the reports");
    // One thread: Hogwild threads make the vectors, and so the attention
    // model, differ from run to run; the demo's corpus takes a second anyway.
    let w2v = word2vec(&device, &Word2vecArgs {
        corpus: data.join("reports"), out: text.join("w2v.safetensors"), dim: 200, window: 5, negative: 5, sample: 1e-3, min_count: 5,
        epochs: 20, alpha: 0.025, threads: Some(1), seed: a.seed, negatives_within_attributes: false, attributes: None, json: true, dump_corpus: None,
    })?;

    stage(&format!("4/7 detector, {det_steps} steps"));
    let batch = 8;
    let steps_per_epoch = boxed.len().div_ceil(batch).min(50);
    let det_out = a.out.join("detector");
    let det_args = TrainArgs {
        images: data.join("images"), labels: data.join("labels_train.csv"), out: det_out.clone(), size, epochs: det_steps.div_ceil(steps_per_epoch),
        batch, optimizer: OptimizerKind::Adam, lr: Some(3e-4), momentum: 0.9, weight_decay: 0.0, warmup: 30, lr_steps: vec![10_000], val_split: 0.1,
        clip: Some(10.0), bn: BnMode::Train, anchor_scale: anchor_scale_for(size), trainable_layers: 5, init: None,
        resume: true, precise_bn: 64, max_steps: Some(steps_per_epoch), strict: false, seed: a.seed,
    };
    let det_last = crate::with_backend!(device.clone(), |b| train_detector(b, &det_args))?;

    stage(&format!("5/7 + 6/7 ROIs and the attention model, {attn_epochs} epochs"));
    let attn_out = a.out.join("attention");
    let attn_args = AttnTrainArgs {
        images: data.join("images"), attributes: text.join("attributes_train.jsonl"), vectors: text.join("w2v.safetensors"),
        detector: det_out.join("model.safetensors"), out: attn_out.clone(), top_n, epochs: attn_epochs, batch: 32, lr: 5e-4, clip: 2.0,
        patience: 10, variant: a.variant, lambda_a: None, lambda_b: None, margin: 0.8, no_classification: a.no_classification, dropout: a.dropout, no_geometry: a.no_geometry,
        include_uncertain: false, patients: None, val_split: 0.1, test_split: 0.0, resume: true, seed: a.seed,
    };
    let attn_last = crate::with_backend!(device.clone(), |b| train_attention(b, &attn_args))?;

    stage("7/7 held-out phantoms");
    let ev = crate::with_backend!(device.clone(), |b| evaluate(&b, &attn_out.join("model.safetensors"), &data.join("images"), test))?;
    let (d, m) = (top1_accuracy(&ev.detector_top, &ev.truth), top1_accuracy(&ev.attention_top, &ev.truth));
    let (best, random) = ev.roi_bounds();
    let report = json!({
        "device": device.name(), "phantoms": count, "size": size, "held_out_with_pneumonia": ev.truth.len(), "seconds": t0.elapsed().as_secs_f64(),
        "iou_accuracy": { "thresholds": [0.25, 0.5, 0.75], "detector_top_box": d, "attention_top_box": m, "best_roi": best, "random_roi": random,
            "alpha_times_score_top_box": top1_accuracy(&ev.combined_top, &ev.truth) },
        "rois_per_image": top_n, "boxed_training_phantoms": boxed.len(),
        "top_box_area_over_truth": { "detector": area_ratio(&ev.detector_top, &ev.truth), "attention": area_ratio(&ev.attention_top, &ev.truth) },
        "distinct_top_boxes": { "detector": distinct_boxes(&ev.detector_top), "attention": distinct_boxes(&ev.attention_top),
            "truth": distinct_boxes(&ev.truth.iter().filter_map(|t| t.first().copied()).collect::<Vec<_>>()) },
        "text": ex, "word2vec": w2v, "detector_last_epoch": det_last, "attention_last_epoch": attn_last,
    });
    crate::weights::write_atomic(&a.out.join("demo.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    Ok(report)
}

/// What the held-out phantoms with pneumonia give: the top boxes of the
/// detector and of the attention model, the truth boxes (all in [0, 1]
/// coordinates), and, for context, each image's ROIs' best IoU with the
/// truth (what a perfect choice among them would reach).
struct Evaluation {
    detector_top: Vec<BoxF>,
    attention_top: Vec<BoxF>,
    /// The ROI with the highest alpha x detector score (a diagnostic: does
    /// alpha add to the detector's ranking?).
    combined_top: Vec<BoxF>,
    truth: Vec<Vec<BoxF>>,
    roi_ious: Vec<Vec<f32>>,
}

impl Evaluation {
    /// IoU accuracy at the three thresholds of the best ROI of each image (an
    /// upper bound for any ranking of the ROIs) and of a ROI drawn at random
    /// (its expectation).
    fn roi_bounds(&self) -> ([f64; 3], [f64; 3]) {
        let n = self.roi_ious.len().max(1) as f64;
        let th = IOU_THRESHOLDS;
        let best = th.map(|t| self.roi_ious.iter().filter(|v| v.iter().any(|&x| x > t)).count() as f64 / n);
        let random = th.map(|t| self.roi_ious.iter().map(|v| v.iter().filter(|&&x| x > t).count() as f64 / v.len().max(1) as f64).sum::<f64>() / n);
        (best, random)
    }
}

fn evaluate<B: Backend>(b: &B, bundle: &std::path::Path, images: &std::path::Path, test: &[crate::data::synth::Phantom]) -> Result<Evaluation> {
    let loc = Localizer::load_bundle(b, bundle)?;
    let (mut dt, mut at, mut ct, mut truth, mut roi_ious) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in test.iter().filter(|p| !p.opacities.is_empty()) {
        let path = crate::data::rsna::find_image(images, &p.id).with_context(|| format!("no image for {}", p.id))?;
        let img = load(&path)?;
        let (rois, preds) = loc.locate(&[(p.id.as_str(), &img)], 0.5, 1)?;
        let pred = &preds[0];
        let (w, h) = (img.width as f32, img.height as f32);
        let t: Vec<BoxF> = p.opacities.iter().map(|o| [o.bbox[0] / w, o.bbox[1] / h, o.bbox[2] / w, o.bbox[3] / h]).collect();
        let (boxes, s) = (rois[0].pos.box_rows(), &rois[0].pos.scores);
        roi_ious.push(boxes.iter().map(|r| best_iou(r, &t)).collect());
        let j = (0..s.len()).max_by(|&x, &y| (pred.alpha_all[x] * s[x]).total_cmp(&(pred.alpha_all[y] * s[y]))).unwrap_or(0);
        ct.push(boxes[j]);
        dt.push(pred.detector_top);
        at.push(pred.boxes[0]);
        truth.push(t);
    }
    Ok(Evaluation { detector_top: dt, attention_top: at, combined_top: ct, truth, roi_ious })
}

/// The demo's table as text.
pub fn table(r: &serde_json::Value) -> String {
    let row = |k: &str| r["iou_accuracy"][k].as_array().map(|a| a.iter().map(|v| format!("{:>6.3}", v.as_f64().unwrap_or(f64::NAN))).collect::<Vec<_>>().join("  ")).unwrap_or_default();
    format!(
        "held-out phantoms with pneumonia: {} ({}x{}, {}), {:.0} s\n\nIoU accuracy          @0.25   @0.5  @0.75\ndetector top box     {}\nattention top box    {}\n\nfor context, over the {} ROIs the attention model ranks:\nbest ROI (bound)     {}\nrandom ROI (mean)    {}\nalpha x score top    {}\n\ntop box area / truth area (geometric mean): detector {:.2}, attention {:.2}\ndistinct top boxes (IoU < 0.9 to one another): detector {}, attention {}, truth {}\n",
        r["held_out_with_pneumonia"], r["size"], r["size"], r["device"].as_str().unwrap_or("?"), r["seconds"].as_f64().unwrap_or(0.0), row("detector_top_box"), row("attention_top_box"),
        r["rois_per_image"], row("best_roi"), row("random_roi"), row("alpha_times_score_top_box"),
        r["top_box_area_over_truth"]["detector"].as_f64().unwrap_or(f64::NAN), r["top_box_area_over_truth"]["attention"].as_f64().unwrap_or(f64::NAN),
        r["distinct_top_boxes"]["detector"], r["distinct_top_boxes"]["attention"], r["distinct_top_boxes"]["truth"]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
