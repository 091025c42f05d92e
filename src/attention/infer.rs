//! `engine infer`: from images alone (no text), the attention model's boxes
//! (ROIs ranked by alpha, then NMS) with their weights, and the probability
//! of every attribute; JSON, and with `--draw` a PNG with the boxes and the
//! most probable attributes written on it. Unreadable files are skipped and
//! reported.

use super::model::{infer as head_infer, Head, Rois};
use super::rois::{extract_batch, ImageRois, FEATURE_DIM};
use super::train::{load_bundle, AttnMeta};
use crate::autograd::Graph;
use crate::tensor::Tensor;
use crate::backend::Backend;
use crate::data::image::{load_or_skip, Gray};
use crate::detect::boxes::BoxF;
use crate::detect::nms::nms;
use crate::detector::infer::image_files;
use crate::draw::{Canvas, CYAN, RED, YELLOW};
use crate::nn::FrozenBn;
use crate::params::ParamSet;
use anyhow::{Context, Result};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args, Clone, Debug)]
pub struct AttnInferArgs {
    /// model.safetensors from `engine train` (detector and attention model).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// An image file or a folder of them.
    #[arg(long)]
    pub images: PathBuf,
    #[arg(long, default_value = "predictions.json")]
    pub out: PathBuf,
    /// Folder for PNG overlays.
    #[arg(long)]
    pub draw: Option<PathBuf>,
    /// IoU of the NMS over ROIs ranked by alpha.
    #[arg(long, default_value_t = 0.5)]
    pub nms: f32,
    #[arg(long, default_value_t = 5)]
    pub max_boxes: usize,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    #[arg(long)]
    pub strict: bool,
}

/// One image's prediction.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Prediction {
    /// Boxes in [0, 1] coordinates, by descending alpha, after NMS.
    pub boxes: Vec<BoxF>,
    pub alpha: Vec<f32>,
    /// Detector score of each box's ROI.
    pub score: Vec<f32>,
    /// Probability of each attribute.
    pub probs: Vec<f32>,
    /// The detector's own top box (highest score), [0, 1] coordinates.
    pub detector_top: BoxF,
    /// Alpha of every ROI of the set, in the set's order (for evaluation).
    #[serde(skip)]
    pub alpha_all: Vec<f32>,
}

/// Alpha and attribute probabilities of the positive ROI sets of `rois`.
pub fn predict<B: Backend>(b: &B, head: &ParamSet<B>, meta: &AttnMeta, rois: &[ImageRois], iou: f32, max_boxes: usize) -> Result<Vec<Prediction>> {
    let n = rois.len();
    let top = rois[0].pos.len();
    let cat = |f: &dyn Fn(&ImageRois) -> &Vec<f32>| rois.iter().flat_map(|r| f(r).iter().copied()).collect::<Vec<f32>>();
    let mut g = Graph::no_grad(b.clone());
    let r = g.input(Tensor::from_host(b, &cat(&|x| &x.pos.r), &[n, top, FEATURE_DIM])?);
    let gg = g.input(Tensor::from_host(b, &cat(&|x| &x.pos.g), &[n, top, 4])?);
    let s = g.input(Tensor::from_host(b, &cat(&|x| &x.pos.s), &[n, top, 1])?);
    let h = Head::new(meta.head, head);
    let (alpha, probs) = head_infer(&h, &mut g, Rois { r, g: gg, s })?;
    let (al, pr) = (g.to_host(alpha)?, g.to_host(probs)?);
    let k = meta.head.k;
    Ok(rois.iter().enumerate().map(|(i, x)| {
        let a = &al[i * top..(i + 1) * top];
        let boxes = x.pos.boxes();
        let keep: Vec<usize> = nms(&boxes, a, iou).into_iter().take(max_boxes).collect();
        Prediction {
            boxes: keep.iter().map(|&j| boxes[j]).collect(),
            alpha: keep.iter().map(|&j| a[j]).collect(),
            score: keep.iter().map(|&j| x.pos.s[j]).collect(),
            probs: pr[i * k..(i + 1) * k].to_vec(),
            detector_top: boxes[0],
            alpha_all: a.to_vec(),
        }
    }).collect())
}

fn draw(img: &Gray, p: &Prediction, names: &[String], path: &std::path::Path) -> Result<()> {
    let mut c = Canvas::from_gray(img);
    let (w, h) = (img.width as f32, img.height as f32);
    let thick = (img.width.max(img.height) / 300).max(1) as i64;
    for (j, bx) in p.boxes.iter().enumerate().take(3).rev() {
        let px = [bx[0] * w, bx[1] * h, bx[2] * w, bx[3] * h];
        c.rect(&px, if j == 0 { RED } else { YELLOW }, if j == 0 { 2 * thick } else { thick });
    }
    let mut order: Vec<usize> = (0..p.probs.len()).collect();
    order.sort_by(|&a, &b| p.probs[b].total_cmp(&p.probs[a]));
    let scale = (img.width / 256).max(1) as i64;
    for (line, &a) in order.iter().take(3).enumerate() {
        c.text(4 * scale, 4 * scale + line as i64 * 10 * scale, &format!("{} {:.2}", names[a], p.probs[a]), CYAN, scale);
    }
    c.save(path)
}

pub fn infer<B: Backend>(b: B, a: &AttnInferArgs) -> Result<serde_json::Value> {
    let (head, meta, det, det_meta) = load_bundle(&b, &a.checkpoint)?;
    let bn = FrozenBn::from_params(&b, &det, 1e-5)?;
    let files = image_files(&a.images)?;
    if let Some(d) = &a.draw {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let (mut results, mut skipped) = (Vec::new(), Vec::new());
    let bar = crate::progress::bar(files.len() as u64, "images");
    for chunk in files.chunks(a.batch.max(1)) {
        let mut imgs = Vec::new();
        for f in chunk {
            if let Some(img) = load_or_skip(f, a.strict, &mut skipped)? {
                imgs.push((f.clone(), img));
            }
        }
        bar.inc(chunk.len() as u64);
        if imgs.is_empty() {
            continue;
        }
        let ids: Vec<String> = imgs.iter().map(|(p, _)| p.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default()).collect();
        let refs: Vec<(&str, &Gray)> = ids.iter().zip(&imgs).map(|(id, (_, g))| (id.as_str(), g)).collect();
        let rois = extract_batch(&b, &det, &bn, &det_meta, &refs, meta.top_n)?;
        let preds = predict(&b, &head, &meta, &rois, a.nms, a.max_boxes)?;
        for ((path, img), p) in imgs.iter().zip(&preds) {
            let (w, h) = (img.width as f32, img.height as f32);
            if let Some(d) = &a.draw {
                draw(img, p, &meta.attributes, &d.join(format!("{}.png", path.file_stem().unwrap_or_default().to_string_lossy())))?;
            }
            let mut attrs: Vec<(String, f32)> = meta.attributes.iter().cloned().zip(p.probs.iter().copied()).collect();
            attrs.sort_by(|x, y| y.1.total_cmp(&x.1));
            results.push(json!({
                "image": path.display().to_string(), "width": img.width, "height": img.height,
                "boxes": p.boxes.iter().zip(&p.alpha).zip(&p.score).map(|((bx, al), s)| json!({
                    "x1": bx[0] * w, "y1": bx[1] * h, "x2": bx[2] * w, "y2": bx[3] * h, "alpha": al, "detector_score": s })).collect::<Vec<_>>(),
                "attributes": attrs.iter().map(|(k, v)| json!({"attribute": k, "probability": v})).collect::<Vec<_>>(),
            }));
        }
    }
    bar.finish_and_clear();
    let report = json!({ "model": a.checkpoint.display().to_string(), "device": b.name(), "images": results, "skipped": skipped });
    crate::weights::write_atomic(&a.out, serde_json::to_string_pretty(&report)?.as_bytes())?;
    Ok(report)
}
