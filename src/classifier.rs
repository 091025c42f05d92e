//! `engine classifier train`: the image classifier of the CAM baselines
//! (`nn::classifier`: ResNet-50, global average pooling, one logit) from
//! image-level labels: any truth file (an image with a box of `--finding`
//! is positive; the phantoms' truth.jsonl, RSNA labels, NIH boxes), NIH's
//! `Data_Entry_2017.csv` (`--image-labels`), or a MIMIC-CXR-JPG root with
//! its CheXpert or NegBio table (1 positive, 0 negative, uncertain and
//! blank left out). Adam, seeded split, BCE, one JSON line per epoch
//! (losses, validation AUC), the best model kept, early stopping, `--resume`,
//! `--init` from torchvision weights, progress bar; a non-finite loss stops
//! with the last good checkpoint kept.

use crate::attention::data::macro_auc;
use crate::autograd::Graph;
use crate::backend::Backend;
use crate::data::image::{load, to_input};
use crate::data::mimic::{Labeller, Mention, Mimic};
use crate::data::truth::{image_key, read_image_labels, read_truth};
use crate::detector::checkpoint::{load_checkpoint, save_checkpoint, Resume};
use crate::localizer::bundle::{save_classifier, ClassifierMeta};
use crate::nn::classifier::{forward, init_params};
use crate::nn::{update_running_stats, FrozenBn, Net};
use crate::optim::Optimizer;
use crate::params::ParamSet;
use crate::rng::Rng;
use crate::tensor::Tensor;
use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Clone, Debug)]
pub struct ClassifierTrainArgs {
    /// Folder of images named as in the labels (with --labels or --image-labels).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// A truth file (RSNA CSV, NIH BBox_List, box table, truth.jsonl): an image with a box of --finding is positive.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// NIH Data_Entry_2017.csv: an image whose findings include --finding is positive.
    #[arg(long)]
    pub image_labels: Option<PathBuf>,
    /// A MIMIC-CXR-JPG root: frontal images, labels from --labeller.
    #[arg(long)]
    pub mimic: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Labeller::Chexpert)]
    pub labeller: Labeller,
    /// The finding to tell (a label of the truth or label file; boxes of files without labels, RSNA and truth.jsonl, count as it).
    #[arg(long, default_value = "Pneumonia")]
    pub finding: String,
    /// Output folder: model.safetensors (best validation loss), checkpoint.safetensors, log.jsonl.
    #[arg(long, default_value = "runs/classifier")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f32,
    #[arg(long, default_value_t = 0.2)]
    pub val_split: f64,
    /// Stop when the validation loss has not improved for this many epochs.
    #[arg(long, default_value_t = 5)]
    pub patience: usize,
    /// Start from these weights (torchvision resnet50 names; what fits is loaded).
    #[arg(long)]
    pub init: Option<PathBuf>,
    #[arg(long)]
    pub resume: bool,
    /// At most this many steps per epoch (quick runs).
    #[arg(long)]
    pub max_steps: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// (id, image file, 1 positive / 0 negative) of every labelled image.
pub fn labelled_images(a: &ClassifierTrainArgs) -> Result<Vec<(String, PathBuf, f32)>> {
    let find = |dir: &Option<PathBuf>, id: &str| dir.as_deref().and_then(|d| crate::data::rsna::find_image(d, id));
    let mut out = Vec::new();
    match (&a.labels, &a.image_labels, &a.mimic) {
        (Some(p), None, None) => {
            let t = read_truth(p)?;
            for (id, boxes) in &t.images {
                let pos = boxes.iter().any(|b| b.is(&a.finding));
                if let Some(path) = find(&a.images, id) {
                    out.push((id.clone(), path, pos as u8 as f32));
                }
            }
        }
        (None, Some(p), None) => {
            for (id, labels) in read_image_labels(p)? {
                if let Some(path) = find(&a.images, &id) {
                    out.push((id, path, labels.iter().any(|l| l.eq_ignore_ascii_case(&a.finding)) as u8 as f32));
                }
            }
        }
        (None, None, Some(root)) => {
            let m = Mimic::new(root)?;
            let labels = m.labels(a.labeller, &a.finding)?;
            for img in m.frontal_images()? {
                match labels.get(&img.study_id) {
                    Some(Mention::Positive) => out.push((image_key(&img.dicom_id), img.path, 1.0)),
                    Some(Mention::Negative) => out.push((image_key(&img.dicom_id), img.path, 0.0)),
                    _ => {}
                }
            }
        }
        _ => bail!("give exactly one of --labels, --image-labels or --mimic"),
    }
    crate::ensure_arg!(!out.is_empty(), "no labelled image found (is --images the folder of the labelled files?)");
    Ok(out)
}

/// Mean BCE and the probabilities of `items`, inference mode.
fn evaluate<B: Backend>(b: &B, params: &ParamSet<B>, size: usize, items: &[(String, PathBuf, f32)], batch: usize) -> Result<(f64, Vec<f32>, Vec<f32>)> {
    let bn = FrozenBn::from_params(b, params, 1e-5)?;
    let (mut loss, mut probs, mut ys) = (0.0, Vec::new(), Vec::new());
    for chunk in items.chunks(batch.max(1)) {
        let (x, y) = inputs(chunk, size, None)?;
        let n = y.len();
        let mut g = Graph::no_grad(b.clone());
        let xv = g.input(Tensor::from_host(b, &x, &[n, 3, size, size])?);
        let yv = g.input(Tensor::from_host(b, &y, &[n, 1])?);
        let mut net = Net::new(&mut g, params, Some(&bn));
        let (_, logit) = forward(&mut net, xv)?;
        let l = g.bce_with_logits(logit, yv)?;
        loss += g.to_host(l)?[0] as f64 * n as f64;
        probs.extend(g.to_host(logit)?.into_iter().map(crate::backend::cpu::sigmoid));
        ys.extend(y);
    }
    Ok((loss / ys.len().max(1) as f64, probs, ys))
}

/// Network inputs and labels of a batch (mirrored with probability 0.5 when `flip` is given).
fn inputs(items: &[(String, PathBuf, f32)], size: usize, mut flip: Option<&mut Rng>) -> Result<(Vec<f32>, Vec<f32>)> {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (_, path, label) in items {
        let img = load(path)?;
        let f = flip.as_deref_mut().is_some_and(|r| r.uniform() < 0.5);
        x.extend(to_input(&img, size, &[], f).0);
        y.push(*label);
    }
    Ok((x, y))
}

pub fn train<B: Backend>(b: B, a: &ClassifierTrainArgs) -> Result<serde_json::Value> {
    crate::ensure_arg!(a.batch >= 2 && a.size >= 32 && a.epochs >= 1, "--batch (>= 2: batch norm trains on batch statistics), --size (>= 32) and --epochs must be positive");
    let mut all = labelled_images(a)?;
    let mut rng = Rng::new(a.seed);
    rng.shuffle(&mut all);
    let n_val = ((all.len() as f64 * a.val_split).round() as usize).clamp(1, all.len().saturating_sub(1).max(1));
    ensure!(all.len() >= 2, "only {} labelled image: too few to train and validate", all.len());
    let val_set = all.split_off(all.len() - n_val);
    let train_set = all;
    let positives = train_set.iter().filter(|s| s.2 > 0.5).count();
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let meta = ClassifierMeta { image_size: a.size, finding: a.finding.clone() };
    let mut params = init_params(&b, a.seed)?;
    if let Some(init) = &a.init {
        let file = crate::weights::read(init)?;
        let (loaded, missing, misshaped, _) = crate::weights::assign_partial(&b, &mut params, &file)?;
        ensure!(loaded > 0, "{}: no tensor fits the classifier (names as torchvision's resnet50, e.g. conv1.weight)", init.display());
        eprintln!("engine: {}: loaded {loaded} tensors; {} kept their initialisation, {} had another shape", init.display(), missing.len(), misshaped.len());
    }
    let mut opt = Optimizer::adam(a.lr, 0.0);
    let ckpt = a.out.join("checkpoint.safetensors");
    let mut state = Resume { epoch: 0, step: 0 };
    let (mut best, mut since_best) = (f64::INFINITY, 0usize);
    if a.resume && ckpt.is_file() {
        state = load_checkpoint(&b, &mut params, &mut opt, &ckpt)?;
        eprintln!("engine: resuming from {} after epoch {}", ckpt.display(), state.epoch);
    }
    eprintln!("engine: classifier training on {}: {} train ({positives} with {}) / {} validation images, {}x{}",
        b.name(), train_set.len(), a.finding, val_set.len(), a.size, a.size);
    let log_path = a.out.join("log.jsonl");
    let mut last = json!({});
    for epoch in state.epoch..a.epochs {
        let t0 = std::time::Instant::now();
        let mut rng = Rng::new(a.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37));
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        rng.shuffle(&mut order);
        let steps = order.len().div_ceil(a.batch).min(a.max_steps.unwrap_or(usize::MAX));
        let bar = crate::progress::bar(steps as u64, &format!("epoch {}", epoch + 1));
        let (mut sum, mut seen) = (0.0f64, 0usize);
        for s in 0..steps {
            let items: Vec<(String, PathBuf, f32)> = order[s * a.batch..((s + 1) * a.batch).min(order.len())].iter().map(|&i| train_set[i].clone()).collect();
            if items.len() < 2 {
                continue; // batch norm needs two images
            }
            let (x, y) = inputs(&items, a.size, Some(&mut rng))?;
            let n = y.len();
            let mut g = Graph::new(b.clone());
            let xv = g.input(Tensor::from_host(&b, &x, &[n, 3, a.size, a.size])?);
            let yv = g.input(Tensor::from_host(&b, &y, &[n, 1])?);
            let mut net = Net::new(&mut g, &params, None);
            let (_, logit) = forward(&mut net, xv)?;
            let stats = std::mem::take(&mut net.bn_stats);
            let loss = g.bce_with_logits(logit, yv)?;
            let l = g.to_host(loss)?[0];
            if !l.is_finite() {
                bail!("epoch {} step {}: loss is not finite; stopped, {} is the last good checkpoint", epoch + 1, s + 1, ckpt.display());
            }
            let grads = g.backward(loss)?;
            drop(g);
            params.zero_grad();
            grads.accumulate_into(&b, &mut params)?;
            update_running_stats(&b, &mut params, stats, 0.1)?;
            opt.step(&b, &mut params)?;
            state.step += 1;
            sum += l as f64 * n as f64;
            seen += n;
            bar.inc(1);
            bar.set_message(format!("loss {l:.3}"));
        }
        bar.finish_and_clear();
        let secs = t0.elapsed().as_secs_f64();
        let (val_loss, probs, ys) = evaluate(&b, &params, a.size, &val_set, a.batch)?;
        ensure!(val_loss.is_finite(), "epoch {}: validation loss is not finite; stopped, {} is the last good checkpoint", epoch + 1, ckpt.display());
        let improved = val_loss < best;
        if improved {
            (best, since_best) = (val_loss, 0);
            save_classifier(&b, &params, &meta, &a.out.join("model.safetensors"))?;
        } else {
            since_best += 1;
        }
        state.epoch = epoch + 1;
        save_checkpoint(&b, &params, &opt, ("engine_classifier", serde_json::to_string(&meta)?), &state, &ckpt)?;
        last = json!({ "epoch": epoch + 1, "steps": state.step, "train_loss": sum / seen.max(1) as f64, "val_loss": val_loss,
                       "val_auc": macro_auc(&probs, &ys, 1), "best": improved, "seconds": secs, "images_per_second": seen as f64 / secs, "device": b.name() });
        println!("{last}");
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).with_context(|| format!("cannot write {}", log_path.display()))?;
        writeln!(f, "{last}")?;
        if since_best >= a.patience {
            eprintln!("engine: early stop after epoch {}: no better validation loss in {} epochs", epoch + 1, a.patience);
            break;
        }
    }
    Ok(last)
}
