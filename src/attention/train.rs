//! `engine train`: the attention model on cached ROIs and report attributes.
//! Split 90/5/5 by patient (MIMIC-CXR-JPG: its own split), Adam, gradient clipping, early stopping when the
//! validation loss changes by less than 0.1% over 10 epochs, the best
//! checkpoint kept; progress bar, one JSON line per epoch (losses, attribute
//! accuracy and AUC on validation), `--resume`, seeded. A non-finite loss
//! stops training with a message, the last good checkpoint kept.

use super::data::{join, macro_auc, make_batch, read_attributes, split_by_patient, split_by_table, AttributeVectors, HostBatch, Sample};
use crate::data::mimic::Mimic;
use crate::data::truth::image_key;
use crate::nn::attention::{init_params, loss, similarity_fused, Attributes, Batch, Head, HeadConfig, Rois, Variant};
use super::roi_cache::{extract_all, load_all};
use crate::autograd::Graph;
use crate::tensor::Tensor;
use crate::backend::Backend;
use crate::localizer::bundle::{save_bundle, AttnMeta};
use crate::localizer::rois::FEATURE_DIM;
use crate::localizer::Localizer;
use crate::optim::Optimizer;
use crate::rng::Rng;
use crate::text::extract::Status;
use crate::weights::{read, write, StoreDtype};
use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Clone, Debug)]
pub struct AttnTrainArgs {
    /// Folder of images (PNG, JPEG, DICOM) named by report id, or a MIMIC-CXR-JPG root (its frontal
    /// images, patients from subject_id, its split table when it lists every image).
    #[arg(long)]
    pub images: PathBuf,
    /// Attributes per report: JSON lines from `engine text extract`.
    #[arg(long)]
    pub attributes: PathBuf,
    /// Word vectors from `engine text word2vec` (attribute and negative vectors).
    #[arg(long)]
    pub vectors: PathBuf,
    /// Trained detector (model.safetensors of `engine detector train`).
    #[arg(long)]
    pub detector: PathBuf,
    /// Output folder: rois/, checkpoint.safetensors, model.safetensors, log.jsonl.
    #[arg(long, default_value = "runs/attention")]
    pub out: PathBuf,
    /// ROIs per set (positive and negative).
    #[arg(long, default_value_t = 100)]
    pub top_n: usize,
    #[arg(long, default_value_t = 300)]
    pub epochs: usize,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f32,
    #[arg(long, default_value_t = 2.0)]
    pub clip: f32,
    /// Early stopping window (epochs) for the 0.1% rule.
    #[arg(long, default_value_t = 10)]
    pub patience: usize,
    #[arg(long, value_enum, default_value_t = Variant::Literal)]
    pub variant: Variant,
    /// Softmax inverse temperature over attributes (literal a) (default 4; SCAN variant 9).
    #[arg(long)]
    pub lambda_a: Option<f32>,
    /// Softmax inverse temperature over ROIs (literal b) (default 9; SCAN variant 4).
    #[arg(long)]
    pub lambda_b: Option<f32>,
    /// Triplet margin beta.
    #[arg(long, default_value_t = 0.8)]
    pub margin: f32,
    /// Dropout on the classifier's hidden layer while training (SPEC 4.2
    /// proposes 0.2; 0 is the reference model).
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,
    /// Ablation: ROI features without their box coordinates.
    #[arg(long)]
    pub no_geometry: bool,
    /// Ablation: the triplet loss alone.
    #[arg(long)]
    pub no_classification: bool,
    /// Also train on reports where pneumonia is uncertain.
    #[arg(long)]
    pub include_uncertain: bool,
    /// CSV with columns `id,patient` (e.g. MIMIC study -> subject): the split
    /// keeps each patient's images together. Without it each image is its own patient.
    #[arg(long)]
    pub patients: Option<PathBuf>,
    #[arg(long, default_value_t = 0.05)]
    pub val_split: f64,
    #[arg(long, default_value_t = 0.05)]
    pub test_split: f64,
    #[arg(long)]
    pub resume: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

struct Eval {
    loss: f64,
    triplet: f64,
    accuracy: f64,
    auc: Option<f64>,
}

/// Uploads a host batch as graph inputs.
fn batch_on_tape<B: Backend>(g: &mut Graph<B>, hb: &HostBatch, d: usize, k: usize) -> Result<Batch<B>> {
    let b = g.b.clone();
    let mut inp = |data: &[f32], shape: &[usize]| -> Result<crate::autograd::Var> { Ok(g.input(Tensor::from_host(&b, data, shape)?)) };
    let pos = Rois { r: inp(&hb.r, &[hb.b, hb.n, FEATURE_DIM])?, g: inp(&hb.g, &[hb.b, hb.n, 4])?, s: inp(&hb.s, &[hb.b, hb.n, 1])? };
    let neg = Rois { r: inp(&hb.rn, &[hb.b, hb.nn, FEATURE_DIM])?, g: inp(&hb.gn, &[hb.b, hb.nn, 4])?, s: inp(&hb.sn, &[hb.b, hb.nn, 1])? };
    let m = inp(&hb.mv, &[hb.b, hb.m, d])?;
    let tn = inp(&hb.mnv, &[hb.b, hb.m, d])?;
    let y = inp(&hb.y, &[hb.b, k])?;
    Ok(Batch { pos, neg, t: Attributes::new(m, hb.mask.clone(), hb.b, hb.m), tn, y })
}

fn evaluate<B: Backend>(b: &B, head: &Head<B>, items: &[Sample], vectors: &AttributeVectors, batch: usize) -> Result<Eval> {
    let (mut l, mut t, mut n) = (0.0, 0.0, 0usize);
    let (mut probs, mut ys) = (Vec::new(), Vec::new());
    let k = vectors.names.len();
    for chunk in items.chunks(batch.max(1)) {
        let refs: Vec<&Sample> = chunk.iter().collect();
        let hb = make_batch(&refs, vectors);
        let mut g = Graph::no_grad(b.clone());
        let bt = batch_on_tape(&mut g, &hb, vectors.dim, k)?;
        let parts = loss(head, &mut g, &bt, &similarity_fused)?;
        l += g.to_host(parts.total)?[0] as f64 * hb.b as f64;
        t += g.to_host(parts.triplet)?[0] as f64 * hb.b as f64;
        n += hb.b;
        let pr = g.sigmoid(parts.logits)?;
        probs.extend(g.to_host(pr)?);
        ys.extend(hb.y);
    }
    let correct = probs.iter().zip(&ys).filter(|(p, y)| (**p > 0.5) == (**y > 0.5)).count();
    Ok(Eval { loss: l / n.max(1) as f64, triplet: t / n.max(1) as f64, accuracy: correct as f64 / probs.len().max(1) as f64, auc: macro_auc(&probs, &ys, k) })
}

/// Prepares the data (extracting ROIs when not cached) and trains.
pub fn train<B: Backend>(b: B, a: &AttnTrainArgs) -> Result<serde_json::Value> {
    crate::ensure_arg!(a.batch >= 1 && a.epochs >= 1 && a.top_n >= 1, "--batch, --epochs and --top-n must be positive");
    crate::ensure_arg!((0.0..1.0).contains(&a.dropout), "--dropout {} must be in [0, 1)", a.dropout);
    let vectors = AttributeVectors::load(&a.vectors)?;
    let attrs = read_attributes(&a.attributes)?;
    let loc = Localizer::load_detector(&b, &a.detector)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    // ROIs of every image with a report, cached in OUT/rois
    let mimic = Mimic::is_root(&a.images);
    let frontal = if mimic { Mimic::new(&a.images)?.frontal_images()? } else { Vec::new() };
    let mut items: Vec<(String, PathBuf)> = if mimic {
        frontal.iter().map(|i| (image_key(&i.dicom_id), i.path.clone())).filter(|(id, _)| attrs.contains_key(id)).collect()
    } else {
        attrs.keys().filter_map(|id| crate::data::rsna::find_image(&a.images, id).map(|p| (id.clone(), p))).collect()
    };
    items.sort();
    ensure!(!items.is_empty(), "no image in {} has a report in {}", a.images.display(), a.attributes.display());
    let roi_dir = a.out.join("rois");
    let bar = crate::progress::bar(items.len() as u64, "ROIs");
    let (extracted, skipped) = extract_all(&loc, &items, &roi_dir, a.top_n, 256, &|n| bar.set_position(n))?;
    bar.finish_and_clear();
    eprintln!("engine: ROIs of {} images ({extracted} extracted now, {} unreadable) in {}", items.len(), skipped.len(), roi_dir.display());
    let keep: &[Status] = if a.include_uncertain { &[Status::Affirmed, Status::Uncertain] } else { &[Status::Affirmed] };
    let samples = join(load_all(&roi_dir)?, &attrs, &vectors, keep);
    ensure!(samples.len() >= 3, "only {} images have pneumonia affirmed with a known attribute: too few to train", samples.len());
    let patients = match &a.patients {
        Some(p) => super::data::read_patients(p)?,
        None => frontal.iter().map(|i| (image_key(&i.dicom_id), i.subject_id.clone())).collect(),
    };
    let patient_of = |id: &str| patients.get(id).cloned().unwrap_or_else(|| id.to_string());
    // MIMIC-CXR's own split when its table lists every image (it is by patient too)
    let split: HashMap<String, String> = frontal.iter().filter(|i| !i.split.is_empty()).map(|i| (image_key(&i.dicom_id), i.split.clone())).collect();
    let (train_set, val_set, test_set) = if !split.is_empty() && samples.iter().all(|s| split.contains_key(&s.rois.id)) {
        eprintln!("engine: {}: MIMIC-CXR's split (mimic-cxr-2.0.0-split.csv), not --val-split / --test-split", a.images.display());
        split_by_table(samples, &|id| split.get(id).cloned())?
    } else {
        split_by_patient(samples, &patient_of, a.val_split, a.test_split, a.seed)
    };
    ensure!(!train_set.is_empty() && !val_set.is_empty(), "the split left {} training and {} validation samples", train_set.len(), val_set.len());
    let (la, lb) = match a.variant { Variant::Literal => (4.0, 9.0), Variant::Scan => (9.0, 4.0) };
    let cfg = HeadConfig {
        d: vectors.dim, k: vectors.names.len(), lambda_a: a.lambda_a.unwrap_or(la), lambda_b: a.lambda_b.unwrap_or(lb), beta: a.margin,
        variant: a.variant, with_classification: !a.no_classification, dropout: a.dropout, no_geometry: a.no_geometry, ..HeadConfig::default()
    };
    let meta = AttnMeta { head: cfg, attributes: vectors.names.clone(), top_n: a.top_n, test_ids: test_set.iter().map(|s| s.rois.id.clone()).collect() };
    let mut params = init_params(&b, &cfg, a.seed)?;
    let mut opt = Optimizer::adam(a.lr, 0.0);
    let ckpt = a.out.join("checkpoint.safetensors");
    let (mut start, mut history, mut best) = (0usize, Vec::<f64>::new(), f64::INFINITY);
    if a.resume && ckpt.is_file() {
        let f = read(&ckpt)?;
        let only: BTreeMap<String, crate::weights::HostTensor> = f.tensors.iter().filter(|(k, _)| !k.starts_with("optimizer.")).map(|(k, v)| (k.clone(), v.clone())).collect();
        crate::weights::assign_strict(&b, &mut params, &crate::weights::TensorFile { tensors: only, path: f.path.clone(), metadata: f.metadata.clone() }, "")?;
        opt.load_state(&b, &params, &f)?;
        start = f.meta("epoch")?;
        history = f.meta("val_history")?;
        best = f.meta("best_val")?;
        eprintln!("engine: resuming from {} after epoch {start}", ckpt.display());
    }
    eprintln!("engine: attention training on {}: {} train / {} validation / {} test samples, {} ROIs, d = {}",
        b.name(), train_set.len(), val_set.len(), test_set.len(), a.top_n, cfg.d);
    let log_path = a.out.join("log.jsonl");
    let mut last = json!({});
    for epoch in start..a.epochs {
        let t0 = std::time::Instant::now();
        let mut rng = Rng::new(a.seed ^ (epoch as u64 + 1).wrapping_mul(0x51ED));
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        rng.shuffle(&mut order);
        let (mut sum, mut seen) = (0.0f64, 0usize);
        let bar = crate::progress::bar(order.len().div_ceil(a.batch) as u64, &format!("epoch {}", epoch + 1));
        for chunk in order.chunks(a.batch) {
            bar.inc(1);
            let refs: Vec<&Sample> = chunk.iter().map(|&i| &train_set[i]).collect();
            let hb = make_batch(&refs, &vectors);
            let head = Head::training(cfg, &params, rng.next_u64());
            let mut g = Graph::new(b.clone());
            let bt = batch_on_tape(&mut g, &hb, cfg.d, cfg.k)?;
            let parts = loss(&head, &mut g, &bt, &similarity_fused)?;
            let l = g.to_host(parts.total)?[0];
            if !l.is_finite() {
                bail!("epoch {}: loss is not finite ({l}); stopped, {} is the last good checkpoint", epoch + 1, ckpt.display());
            }
            let grads = g.backward(parts.total)?;
            drop(g);
            params.zero_grad();
            grads.accumulate_into(&b, &mut params)?;
            params.clip_grad_norm(&b, a.clip)?;
            opt.step(&b, &mut params)?;
            sum += l as f64 * hb.b as f64;
            seen += hb.b;
        }
        bar.finish_and_clear();
        for p in &params.params {
            if !b.sum_squares(&p.value.buf)?.is_finite() {
                bail!("epoch {}: parameter {} is not finite; stopped, {} is the last good checkpoint", epoch + 1, p.name, ckpt.display());
            }
        }
        let head = Head::new(cfg, &params);
        let ev = evaluate(&b, &head, &val_set, &vectors, a.batch)?;
        history.push(ev.loss);
        let improved = ev.loss < best;
        if improved {
            best = ev.loss;
            save_bundle(&b, &params, &loc.detector, &meta, &loc.meta, &a.out.join("model.safetensors"))?;
        }
        let mut state = opt.state_tensors(&b, &params)?;
        for p in &params.params {
            state.push((p.name.clone(), p.value.shape.clone(), p.value.to_host(&b)?));
        }
        let mut m = BTreeMap::new();
        m.insert("epoch".to_string(), (epoch + 1).to_string());
        m.insert("val_history".to_string(), serde_json::to_string(&history)?);
        m.insert("best_val".to_string(), serde_json::to_string(&best)?);
        m.insert("engine_attention".to_string(), serde_json::to_string(&meta)?);
        write(&ckpt, &state, StoreDtype::F32, &m)?;
        last = json!({
            "epoch": epoch + 1, "train_loss": sum / seen.max(1) as f64, "val_loss": ev.loss, "val_triplet": ev.triplet,
            "val_attribute_accuracy": ev.accuracy, "val_attribute_auc": ev.auc, "best": improved, "seconds": t0.elapsed().as_secs_f64(), "device": b.name(),
        });
        println!("{last}");
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).with_context(|| format!("cannot write {}", log_path.display()))?;
        writeln!(f, "{last}")?;
        // early stopping: the validation loss moved by less than 0.1% over `patience` epochs
        let e = history.len();
        if e > a.patience {
            let old = history[e - 1 - a.patience];
            if ((ev.loss - old) / old).abs() < 1e-3 {
                eprintln!("engine: early stop after epoch {}: validation loss changed by less than 0.1% in {} epochs", epoch + 1, a.patience);
                break;
            }
        }
    }
    Ok(last)
}
