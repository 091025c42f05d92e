//! `engine detector train`: RetinaNet on boxed images (RSNA CSV), SGD or
//! Adam with linear warm-up and step decay, a seeded validation split,
//! progress bar, one JSON line per epoch (stdout and `log.jsonl`), atomic
//! checkpoints every epoch and `--resume`. A non-finite loss stops training
//! with a message and leaves the last good checkpoint in place.

use super::checkpoint::{load_checkpoint, save_checkpoint, Resume};
use crate::localizer::bundle::{save_model, ModelMeta};
use super::dataset::{load_batch, samples, split, Sample};
use crate::autograd::Graph;
use crate::tensor::Tensor;
use crate::backend::Backend;
use crate::data::rsna::read_labels;
use crate::geometry::boxes::iou;
use crate::localizer::postprocess::{Detections, PostProcess};
use crate::localizer::Pass;
use crate::nn::retinanet::{self, RetinaConfig};
use crate::nn::{update_running_stats, BnMode, FrozenBn, Net};
use crate::optim::Optimizer;
use crate::params::ParamSet;
use crate::rng::Rng;
use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum OptimizerKind {
    Sgd,
    Adam,
}

#[derive(clap::Args, Clone, Debug, serde::Serialize)]
pub struct TrainArgs {
    /// Folder of images (PNG, JPEG, DICOM), named by patientId.
    #[arg(long)]
    pub images: PathBuf,
    /// RSNA labels: patientId,x,y,width,height,Target.
    #[arg(long)]
    pub labels: PathBuf,
    /// Output folder: model.safetensors, checkpoint.safetensors, log.jsonl.
    #[arg(long, default_value = "runs/detector")]
    pub out: PathBuf,
    /// Square input side.
    #[arg(long, default_value_t = 512)]
    pub size: usize,
    #[arg(long, default_value_t = 26)]
    pub epochs: usize,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, value_enum, default_value_t = OptimizerKind::Sgd)]
    pub optimizer: OptimizerKind,
    /// Learning rate (default 0.005 for SGD at batch 8, 1e-4 for Adam).
    #[arg(long)]
    pub lr: Option<f32>,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f32,
    /// Linear warm-up iterations (factor 1e-3 up to 1).
    #[arg(long, default_value_t = 1000)]
    pub warmup: usize,
    /// Epochs after which the learning rate is multiplied by 0.1.
    #[arg(long, value_delimiter = ',', default_value = "16,22")]
    pub lr_steps: Vec<usize>,
    /// Share of patients held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_split: f64,
    /// Gradient-norm clipping (off when absent).
    #[arg(long)]
    pub clip: Option<f32>,
    /// Batch norm: frozen (fine-tuning from pretrained weights) or train (from scratch).
    #[arg(long, value_enum, default_value_t = BnMode::Train)]
    pub bn: BnMode,
    /// Multiplies torchvision's anchor sizes (32..812 px); 0.5 suits inputs around 128 px.
    #[arg(long, default_value_t = 1.0)]
    pub anchor_scale: f32,
    /// Trainable ResNet stages counted from layer4 (torchvision's trainable_layers, 0..=5).
    #[arg(long, default_value_t = 5)]
    pub trainable_layers: usize,
    /// Start from these weights (torchvision names, e.g. from tools/convert_torchvision.py);
    /// tensors that fit are loaded, the others keep their initialisation.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Continue from OUT/checkpoint.safetensors.
    #[arg(long)]
    pub resume: bool,
    /// With `--bn train`: before each evaluation and checkpoint, recompute the
    /// batch-norm running statistics over this many training images with the
    /// current weights ("precise BN"), so that inference sees statistics of the
    /// network it runs; 0 keeps the running averages of training.
    #[arg(long, default_value_t = 64)]
    pub precise_bn: usize,
    /// At most this many steps per epoch (quick runs).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Fail on an unreadable image instead of skipping it.
    #[arg(long)]
    pub strict: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Fraction of images with boxes whose best detection has IoU > 0.5 with one.
pub fn top1_hit_rate(dets: &[Detections], truth: &[Vec<crate::geometry::boxes::BoxF>]) -> f64 {
    let mut n = 0;
    let mut hits = 0;
    for (d, t) in dets.iter().zip(truth) {
        if t.is_empty() {
            continue;
        }
        n += 1;
        if d.boxes.first().is_some_and(|b| t.iter().any(|g| iou(b, g) > 0.5)) {
            hits += 1;
        }
    }
    if n == 0 { 0.0 } else { hits as f64 / n as f64 }
}

/// Loss and detections of `items` in inference mode (frozen batch norm).
pub fn evaluate<B: Backend>(b: &B, params: &ParamSet<B>, cfg: &RetinaConfig, size: usize, items: &[Sample], batch: usize)
    -> Result<(f64, Vec<Detections>, Vec<Vec<crate::geometry::boxes::BoxF>>)> {
    let bn = FrozenBn::from_params(b, params, 1e-5)?;
    let meta = ModelMeta { retina: *cfg, image_size: size };
    let (mut loss, mut count) = (0.0, 0);
    let (mut dets, mut truth) = (Vec::new(), Vec::new());
    let mut skipped = Vec::new();
    for chunk in items.chunks(batch.max(1)) {
        let refs: Vec<&Sample> = chunk.iter().collect();
        let bt = load_batch(&refs, size, None, false, &mut skipped)?;
        if bt.ids.is_empty() {
            continue;
        }
        let n = bt.ids.len();
        let mut pass = Pass::run(b, params, &bn, &meta, &bt.x, n)?;
        let anchors = retinanet::anchors(cfg, &pass.out, [size, size]);
        let (c, r) = retinanet::losses(&mut pass.g, &pass.out, &anchors, &bt.targets, cfg.num_classes)?;
        loss += (pass.g.to_host(c)?[0] + pass.g.to_host(r)?[0]) as f64 * n as f64;
        count += n;
        dets.extend(pass.detections(&PostProcess::default(), &meta)?);
        truth.extend(bt.targets.iter().map(|t| t.boxes.clone()));
    }
    Ok((if count > 0 { loss / count as f64 } else { f64::NAN }, dets, truth))
}

/// Precise BN: the running mean and (unbiased) variance of every batch norm
/// become the average of their batch statistics over `items`, computed with
/// the current weights in training mode.
pub fn precise_bn<B: Backend>(b: &B, params: &mut ParamSet<B>, cfg: &RetinaConfig, size: usize, items: &[&Sample], batch: usize) -> Result<usize> {
    use std::collections::BTreeMap;
    let mut sums: BTreeMap<String, (Vec<f64>, Vec<f64>, usize)> = BTreeMap::new();
    let mut seen = 0;
    let mut skipped = Vec::new();
    for chunk in items.chunks(batch.max(2)) {
        let bt = load_batch(chunk, size, None, false, &mut skipped)?;
        let n = bt.ids.len();
        if n < 2 {
            continue; // one image gives no variance over the batch
        }
        let mut g = Graph::no_grad(b.clone());
        let x = g.input(Tensor::from_host(b, &bt.x, &[n, 3, size, size])?);
        let mut net = Net::new(&mut g, params, None);
        retinanet::forward(&mut net, cfg, x)?;
        for st in std::mem::take(&mut net.bn_stats) {
            let unbias = st.count as f64 / (st.count.max(2) - 1) as f64;
            let (m, v) = (st.mean.to_host(b)?, st.var.to_host(b)?);
            let e = sums.entry(st.prefix).or_insert_with(|| (vec![0.0; m.len()], vec![0.0; m.len()], 0));
            e.0.iter_mut().zip(&m).for_each(|(s, &x)| *s += x as f64);
            e.1.iter_mut().zip(&v).for_each(|(s, &x)| *s += x as f64 * unbias);
            e.2 += 1;
        }
        seen += n;
    }
    for (prefix, (m, v, k)) in sums {
        for (name, vals) in [("running_mean", m), ("running_var", v)] {
            let i = params.index(&format!("{prefix}.{name}"))?;
            let avg: Vec<f32> = vals.iter().map(|s| (s / k as f64) as f32).collect();
            let shape = params.params[i].value.shape.clone();
            params.params[i].value = Tensor::from_host(b, &avg, &shape)?;
        }
    }
    Ok(seen)
}

fn learning_rate(a: &TrainArgs, base: f32, epoch: usize, step: usize) -> f32 {
    let decay = a.lr_steps.iter().filter(|&&s| epoch >= s).count() as i32;
    let warm = if step < a.warmup { 1e-3 + (1.0 - 1e-3) * step as f32 / a.warmup as f32 } else { 1.0 };
    base * 0.1f32.powi(decay) * warm
}

/// Trains and returns the last epoch's validation top-1 hit rate.
pub fn train<B: Backend>(b: B, a: &TrainArgs) -> Result<serde_json::Value> {
    crate::ensure_arg!(a.batch >= 1 && a.size >= 32 && a.epochs >= 1, "--batch, --size (>= 32) and --epochs must be positive");
    crate::ensure_arg!(a.trainable_layers <= 5, "--trainable-layers is 0..=5");
    let labels = read_labels(&a.labels)?;
    let (all, missing) = samples(&a.images, &labels);
    if !missing.is_empty() {
        eprintln!("engine: warning: {} labelled ids have no image in {} (first: {})", missing.len(), a.images.display(), missing[0]);
    }
    crate::ensure_arg!(!all.is_empty(), "no labelled image found in {}: point --images at the folder of the labelled images", a.images.display());
    let (train_set, val_set) = split(all, a.val_split, a.seed);
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let cfg = RetinaConfig { num_classes: 1, bn: a.bn, trainable_layers: a.trainable_layers, anchor_scale: a.anchor_scale };
    let meta = ModelMeta { retina: cfg, image_size: a.size };
    let mut params = retinanet::init_params(&b, &cfg, a.seed)?;
    if let Some(init) = &a.init {
        // e.g. ImageNet ResNet-50 or a COCO RetinaNet: whatever fits is loaded, the rest keeps its initialisation
        let file = crate::weights::read(init)?;
        let (loaded, missing, misshaped, unexpected) = crate::weights::assign_partial(&b, &mut params, &file)?;
        ensure!(loaded > 0, "{}: no tensor fits the model (names as torchvision's, e.g. backbone.body.conv1.weight)", init.display());
        eprintln!("engine: {}: loaded {loaded} tensors; {} kept their initialisation, {} had another shape, {} were not used",
            init.display(), missing.len(), misshaped.len(), unexpected.len());
    }
    let base_lr = a.lr.unwrap_or(match a.optimizer { OptimizerKind::Sgd => 0.005, OptimizerKind::Adam => 1e-4 });
    let mut opt = match a.optimizer {
        OptimizerKind::Sgd => Optimizer::sgd(base_lr, a.momentum, a.weight_decay),
        OptimizerKind::Adam => Optimizer::adam(base_lr, a.weight_decay),
    };
    let ckpt = a.out.join("checkpoint.safetensors");
    let mut state = Resume { epoch: 0, step: 0 };
    if a.resume {
        if ckpt.is_file() {
            state = load_checkpoint(&b, &mut params, &mut opt, &ckpt)?;
            eprintln!("engine: resuming from {} after epoch {}", ckpt.display(), state.epoch);
        } else {
            eprintln!("engine: --resume: no {} yet, starting fresh", ckpt.display());
        }
    }
    let log_path = a.out.join("log.jsonl");
    let mut last = json!({});
    eprintln!("engine: detector training on {}: {} train / {} validation images, {}x{}, {} parameters",
        b.name(), train_set.len(), val_set.len(), a.size, a.size, params.num_elements());
    for epoch in state.epoch..a.epochs {
        let t0 = Instant::now();
        let mut rng = Rng::new(a.seed ^ (epoch as u64).wrapping_mul(0x9E37));
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        rng.shuffle(&mut order);
        let steps = order.len().div_ceil(a.batch).min(a.max_steps.unwrap_or(usize::MAX));
        let bar = crate::progress::bar(steps as u64, &format!("epoch {}", epoch + 1));
        let (mut sum_cls, mut sum_box, mut seen, mut skipped) = (0.0f64, 0.0f64, 0usize, Vec::new());
        for s in 0..steps {
            let items: Vec<&Sample> = order[s * a.batch..((s + 1) * a.batch).min(order.len())].iter().map(|&i| &train_set[i]).collect();
            let bt = load_batch(&items, a.size, Some(&mut rng), a.strict, &mut skipped)?;
            if bt.ids.is_empty() {
                continue;
            }
            let n = bt.ids.len();
            let lr = learning_rate(a, base_lr, epoch, state.step);
            opt.set_lr(lr);
            let mut g = Graph::new(b.clone());
            let x = g.input(Tensor::from_host(&b, &bt.x, &[n, 3, a.size, a.size])?);
            let frozen = if cfg.bn == BnMode::Frozen { Some(FrozenBn::from_params(&b, &params, 1e-5)?) } else { None };
            let mut net = Net::new(&mut g, &params, frozen.as_ref());
            let out = retinanet::forward(&mut net, &cfg, x)?;
            let stats = std::mem::take(&mut net.bn_stats);
            drop(net);
            let anchors = retinanet::anchors(&cfg, &out, [a.size, a.size]);
            let (c, r) = retinanet::losses(&mut g, &out, &anchors, &bt.targets, cfg.num_classes)?;
            let (lc, lr_box) = (g.to_host(c)?[0], g.to_host(r)?[0]);
            if !(lc.is_finite() && lr_box.is_finite()) {
                bail!("epoch {} step {}: loss is not finite (classification {lc}, box {lr_box}); stopped, {} is the last good checkpoint",
                    epoch + 1, s + 1, ckpt.display());
            }
            let total = g.add(c, r)?;
            let grads = g.backward(total)?;
            drop(g);
            params.zero_grad();
            grads.accumulate_into(&b, &mut params)?;
            update_running_stats(&b, &mut params, stats, 0.1)?;
            if let Some(c) = a.clip {
                params.clip_grad_norm(&b, c)?;
            }
            opt.step(&b, &mut params)?;
            state.step += 1;
            sum_cls += lc as f64 * n as f64;
            sum_box += lr_box as f64 * n as f64;
            seen += n;
            bar.inc(1);
            bar.set_message(format!("loss {:.3}", (lc + lr_box)));
        }
        bar.finish_and_clear();
        let train_secs = t0.elapsed().as_secs_f64();
        if cfg.bn == BnMode::Train && a.precise_bn > 0 {
            let pick: Vec<&Sample> = order.iter().take(a.precise_bn).map(|&i| &train_set[i]).collect();
            precise_bn(&b, &mut params, &cfg, a.size, &pick, a.batch)?;
        }
        let (val_loss, dets, truth) = if val_set.is_empty() { (f64::NAN, vec![], vec![]) } else { evaluate(&b, &params, &cfg, a.size, &val_set, a.batch)? };
        for p in &params.params {
            if !b.sum_squares(&p.value.buf)?.is_finite() {
                bail!("epoch {}: parameter {} is not finite; stopped, {} is the last good checkpoint", epoch + 1, p.name, ckpt.display());
            }
        }
        state.epoch = epoch + 1;
        save_checkpoint(&b, &params, &opt, ("engine_model", serde_json::to_string(&meta)?), &state, &ckpt)?;
        save_model(&b, &params, &meta, &a.out.join("model.safetensors"))?;
        last = json!({
            "epoch": epoch + 1, "steps": state.step, "lr": learning_rate(a, base_lr, epoch, state.step),
            "train_loss_cls": sum_cls / seen.max(1) as f64, "train_loss_box": sum_box / seen.max(1) as f64,
            "val_loss": if val_loss.is_finite() { json!(val_loss) } else { json!(null) },
            "val_top1_hit_iou50": if truth.is_empty() { json!(null) } else { json!(top1_hit_rate(&dets, &truth)) },
            "train_seconds": train_secs, "images_per_second": seen as f64 / train_secs, "skipped": skipped,
            "device": b.name(),
        });
        println!("{last}");
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).with_context(|| format!("cannot write {}", log_path.display()))?;
        writeln!(f, "{last}")?;
    }
    Ok(last)
}
