//! `engine demo`: the whole method on synthetic phantoms with reports, end
//! to end: generate, extract attributes, train word2vec, train the detector,
//! extract ROIs, train the attention model and its ablation (no
//! classification loss), train the classifier of the CAM baselines, then run
//! `engine eval localize` on the held-out phantoms: the paper's Table 1 with
//! all seven rows (detector, attention model, ablation, CAM, Grad-CAM, best
//! and random ROI). Small on the CPU (minutes), the full size on a GPU.

use crate::attention::train::{train as train_attention, AttnTrainArgs};
use crate::backend::device::Device;
use crate::data::synth::{write_dataset, SynthConfig};
use crate::classifier::{train as train_classifier, ClassifierTrainArgs};
use crate::data::mimic::Labeller;
use crate::eval::localize::{run as evaluate, LocalizeArgs};
use crate::detector::train::{train as train_detector, OptimizerKind, TrainArgs};
use crate::nn::BnMode;
use crate::text::commands::{extract, word2vec, ExtractArgs, Word2vecArgs};
use anyhow::Result;
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
    /// On the CPU the 400 steps take about 6 minutes on 2 cores (the whole demo 10).
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
    /// Epochs of the CAM / Grad-CAM classifier (default: 5 on the CPU, 20 on a GPU).
    #[arg(long)]
    pub classifier_epochs: Option<usize>,
    /// Input side of the classifier (default: 96 on the CPU, the image side on a GPU): at 64 px
    /// ResNet-50's layer4 is 2x2 and every CAM box is a quarter of the image or all of it.
    #[arg(long)]
    pub classifier_size: Option<usize>,
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

/// The lines of a JSON-lines file (attributes, truth) whose `"id"` is one of `ids`.
fn lines_of(jsonl: &str, ids: &[String]) -> String {
    jsonl.lines().filter(|l| ids.iter().any(|id| l.contains(&format!("\"id\":\"{id}\"")))).map(|l| format!("{l}\n")).collect()
}

pub fn run(device: Device, a: &DemoArgs) -> Result<serde_json::Value> {
    let gpu = matches!(device, Device::Cuda(_));
    let count = a.count.unwrap_or(if gpu { 2000 } else { 400 });
    let size = a.size.unwrap_or(if gpu { 512 } else { 64 });
    let det_steps = a.detector_steps.unwrap_or(if gpu { 2500 } else { 400 });
    let attn_epochs = a.attention_epochs.unwrap_or(if gpu { 150 } else { 60 });
    let top_n = a.top_n.unwrap_or(top_n_for(size));
    crate::ensure_arg!(a.boxed != Some(0), "--boxed 0: the detector needs the boxes of at least one phantom");
    let t0 = std::time::Instant::now();
    let stage = |s: &str| eprintln!("engine demo [{:>5.0} s] {s}", t0.elapsed().as_secs_f64());
    let data = a.out.join("data");
    stage(&format!("1/8 {count} phantoms of {size}x{size} on {}", device.name()));
    let phantoms = write_dataset(&data, &SynthConfig { count, size, seed: a.seed, positive_rate: 0.85 }, || {})?;
    // held-out phantoms: the last ones, never seen by either model
    let n_test = ((count as f64 * a.test_split).round() as usize).max(1);
    let train_ids: Vec<String> = phantoms[..count - n_test].iter().map(|p| p.id.clone()).collect();
    let test = &phantoms[count - n_test..];
    let labels = std::fs::read_to_string(data.join("labels.csv"))?;
    let boxed = &train_ids[..a.boxed.unwrap_or(usize::MAX).min(train_ids.len())];
    let train_labels: String = labels.lines().enumerate().filter(|(i, l)| *i == 0 || boxed.iter().any(|id| l.starts_with(&format!("{id},")))).map(|(_, l)| format!("{l}\n")).collect();
    crate::weights::write_atomic(&data.join("labels_train.csv"), train_labels.as_bytes())?;

    stage("2/8 attributes from the reports");
    let text = a.out.join("text");
    std::fs::create_dir_all(&text)?;
    let ex = extract(&ExtractArgs { reports: data.join("reports"), out: text.join("attributes.jsonl"), attributes: None, json: true })?;
    let all_attrs = std::fs::read_to_string(text.join("attributes.jsonl"))?;
    crate::weights::write_atomic(&text.join("attributes_train.jsonl"), lines_of(&all_attrs, &train_ids).as_bytes())?;

    stage("3/8 word2vec on the reports");
    // One thread: Hogwild threads make the vectors, and so the attention
    // model, differ from run to run; the demo's corpus takes a second anyway.
    let w2v = word2vec(&device, &Word2vecArgs {
        corpus: data.join("reports"), out: text.join("w2v.safetensors"), dim: 200, window: 5, negative: 5, sample: 1e-3, min_count: 5,
        epochs: 20, alpha: 0.025, threads: Some(1), seed: a.seed, negatives_within_attributes: false, attributes: None, json: true, dump_corpus: None,
    })?;

    stage(&format!("4/8 detector, {det_steps} steps"));
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

    stage(&format!("5/8 ROIs and the attention model, {attn_epochs} epochs"));
    let attn_out = a.out.join("attention");
    let attn_args = AttnTrainArgs {
        images: data.join("images"), attributes: text.join("attributes_train.jsonl"), vectors: text.join("w2v.safetensors"),
        detector: det_out.join("model.safetensors"), out: attn_out.clone(), top_n, epochs: attn_epochs, batch: 32, lr: 5e-4, clip: 2.0,
        patience: 10, variant: a.variant, lambda_a: None, lambda_b: None, margin: 0.8, no_classification: false, dropout: a.dropout, no_geometry: a.no_geometry,
        include_uncertain: false, patients: None, val_split: 0.1, test_split: 0.0, resume: true, seed: a.seed,
    };
    let attn_last = crate::with_backend!(device.clone(), |b| train_attention(b, &attn_args))?;

    stage("6/8 the ablation: the attention model without the classification loss");
    let ablation_out = a.out.join("ablation");
    let ablation_args = AttnTrainArgs { out: ablation_out.clone(), no_classification: true, ..attn_args.clone() };
    let ablation_last = crate::with_backend!(device.clone(), |b| train_attention(b, &ablation_args))?;

    // image-level labels (has an opacity) of every training phantom, like its report
    let truth_lines = std::fs::read_to_string(data.join("truth.jsonl"))?;
    let test_ids: Vec<String> = test.iter().map(|p| p.id.clone()).collect();
    crate::weights::write_atomic(&data.join("truth_train.jsonl"), lines_of(&truth_lines, &train_ids).as_bytes())?;
    crate::weights::write_atomic(&data.join("truth_test.jsonl"), lines_of(&truth_lines, &test_ids).as_bytes())?;
    let cls_epochs = a.classifier_epochs.unwrap_or(if gpu { 20 } else { 5 });
    let cls_size = a.classifier_size.unwrap_or(if gpu { size } else { 96 });
    stage(&format!("7/8 classifier for CAM and Grad-CAM, {cls_epochs} epochs at {cls_size} px"));
    let cls_out = a.out.join("classifier");
    let cls_args = ClassifierTrainArgs {
        images: Some(data.join("images")), labels: Some(data.join("truth_train.jsonl")), image_labels: None, mimic: None, labeller: Labeller::Chexpert,
        finding: "Pneumonia".into(), out: cls_out.clone(), size: cls_size, epochs: cls_epochs, batch: 16, lr: 3e-4, val_split: 0.1, patience: 3,
        init: None, resume: true, max_steps: None, seed: a.seed,
    };
    let cls_last = crate::with_backend!(device.clone(), |b| train_classifier(b, &cls_args))?;

    stage("8/8 every method on the held-out phantoms (engine eval localize)");
    let eval_args = LocalizeArgs {
        images: data.join("images"), truth: data.join("truth_test.jsonl"), finding: None, detector: None,
        attention: Some(attn_out.join("model.safetensors")), ablation: Some(ablation_out.join("model.safetensors")),
        classifier: Some(cls_out.join("model.safetensors")), cam_threshold: None, out: a.out.join("eval"), draw: Some(a.out.join("eval").join("draw")),
        val_split: 0.2, resamples: 1000, seed: a.seed, batch: 8, strict: true,
    };
    let ev = crate::with_backend!(device.clone(), |b| evaluate(b, &eval_args))?;
    let method = |name: &str| ev["methods"].as_array().into_iter().flatten().find(|m| m["method"] == name).cloned().unwrap_or_default();
    let values = |v: &serde_json::Value| -> Vec<f64> { v.as_array().into_iter().flatten().map(|x| x["value"].as_f64().unwrap_or(f64::NAN)).collect() };
    let top1 = |name: &str| values(&method(name)["top1"]);
    let report = json!({
        "device": device.name(), "phantoms": count, "size": size, "held_out": ev["images"], "held_out_with_pneumonia": ev["boxed_images"],
        "seconds": t0.elapsed().as_secs_f64(),
        "iou_accuracy": { "thresholds": [0.25, 0.5, 0.75], "detector_top_box": top1("detector"), "attention_top_box": top1("attention model"),
            "ablation_top_box": top1("attention model (ablation)"), "cam_top_box": top1("CAM"), "grad_cam_top_box": top1("Grad-CAM"),
            "best_roi": values(&ev["context"]["best_roi"]), "random_roi": values(&ev["context"]["random_roi"]) },
        "rois_per_image": top_n, "boxed_training_phantoms": boxed.len(), "classifier_size": cls_size,
        "top_box_area_over_truth": { "detector": method("detector")["top_box_area_over_truth"], "attention": method("attention model")["top_box_area_over_truth"] },
        "distinct_top_boxes": { "detector": method("detector")["distinct_top_boxes"], "attention": method("attention model")["distinct_top_boxes"],
            "truth": ev["distinct_truth_boxes"] },
        "eval": ev, "text": ex, "word2vec": w2v, "detector_last_epoch": det_last, "attention_last_epoch": attn_last,
        "ablation_last_epoch": ablation_last, "classifier_last_epoch": cls_last,
    });
    crate::weights::write_atomic(&a.out.join("demo.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    Ok(report)
}

/// The demo's table: `engine eval localize`'s, under a line on the run.
pub fn table(r: &serde_json::Value) -> String {
    format!(
        "held-out phantoms: {} ({} with pneumonia; {}x{}, {}), {:.0} s; ablation = trained without the classification loss\n\n{}",
        r["held_out"], r["held_out_with_pneumonia"], r["size"], r["size"], r["device"].as_str().unwrap_or("?"), r["seconds"].as_f64().unwrap_or(0.0),
        crate::eval::localize::table(&r["eval"])
    )
}
