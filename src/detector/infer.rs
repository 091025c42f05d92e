//! `engine detector infer`: boxes and scores of a trained detector on an
//! image file or a folder, as JSON, as CSV in the RSNA submission form
//! (`patientId,PredictionString` with `score x y width height` groups), and
//! with `--draw` as PNG overlays. Unreadable files are skipped and reported.

use super::checkpoint::load_model;
use crate::autograd::Graph;
use crate::tensor::Tensor;
use crate::backend::Backend;
use crate::data::image::{load_or_skip, to_input, EXTENSIONS};
use crate::detect::postprocess::PostProcess;
use crate::draw::{Canvas, RED};
use crate::nn::retinanet;
use crate::nn::{FrozenBn, Net};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Clone, Debug)]
pub struct InferArgs {
    /// model.safetensors from `engine detector train`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// An image file or a folder of them.
    #[arg(long)]
    pub images: PathBuf,
    /// JSON output.
    #[arg(long, default_value = "detections.json")]
    pub out: PathBuf,
    /// CSV in the RSNA submission form.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Folder for PNG overlays.
    #[arg(long)]
    pub draw: Option<PathBuf>,
    /// Drop detections below this score.
    #[arg(long, default_value_t = 0.05)]
    pub score_thresh: f32,
    /// Keep at most this many boxes per image.
    #[arg(long, default_value_t = 100)]
    pub max_boxes: usize,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Fail on an unreadable image instead of skipping it.
    #[arg(long)]
    pub strict: bool,
}

/// Image files of a path: the file itself, or the supported files of a folder (sorted).
pub fn image_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())))
        .collect();
    v.sort();
    if v.is_empty() {
        bail!("no PNG, JPEG or DICOM file in {}", path.display());
    }
    Ok(v)
}

pub fn infer<B: Backend>(b: B, a: &InferArgs) -> Result<serde_json::Value> {
    let (params, meta) = load_model(&b, &a.checkpoint, None)?;
    let size = meta.image_size;
    let bn = FrozenBn::from_params(&b, &params, 1e-5)?;
    let files = image_files(&a.images)?;
    if let Some(d) = &a.draw {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let pp = PostProcess { score_thresh: a.score_thresh, detections_per_image: a.max_boxes, ..Default::default() };
    let (mut results, mut skipped, mut csv) = (Vec::new(), Vec::new(), String::from("patientId,PredictionString\n"));
    let bar = crate::progress::bar(files.len() as u64, "images");
    for chunk in files.chunks(a.batch.max(1)) {
        let mut imgs = Vec::new();
        for f in chunk {
            if let Some(img) = load_or_skip(f, a.strict, &mut skipped)? {
                imgs.push((f, img));
            }
        }
        bar.inc(chunk.len() as u64);
        if imgs.is_empty() {
            continue;
        }
        let n = imgs.len();
        let x: Vec<f32> = imgs.iter().flat_map(|(_, img)| to_input(img, size, &[], false).0).collect();
        let mut g = Graph::no_grad(b.clone());
        let xv = g.input(Tensor::from_host(&b, &x, &[n, 3, size, size])?);
        let mut net = Net::new(&mut g, &params, Some(&bn));
        let out = retinanet::forward(&mut net, &meta.retina, xv)?;
        drop(net);
        let anchors = retinanet::anchors(&meta.retina, &out, [size, size]);
        let levels = retinanet::level_sizes(&out.grids);
        let (logits, reg) = (g.to_host(out.cls_logits)?, g.to_host(out.bbox_regression)?);
        let (na, k) = (anchors.len(), meta.retina.num_classes);
        for (i, (path, img)) in imgs.iter().enumerate() {
            let det = pp.run(&logits[i * na * k..(i + 1) * na * k], &reg[i * na * 4..(i + 1) * na * 4], &anchors, &levels, k, [size, size]);
            // back to the original image's pixels
            let (sx, sy) = (img.width as f32 / size as f32, img.height as f32 / size as f32);
            let boxes: Vec<[f32; 4]> = det.boxes.iter().map(|b| [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]).collect();
            let id = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
            let pred: Vec<String> = boxes.iter().zip(&det.scores).map(|(b, s)| format!("{s:.4} {:.1} {:.1} {:.1} {:.1}", b[0], b[1], b[2] - b[0], b[3] - b[1])).collect();
            csv += &format!("{id},{}\n", pred.join(" "));
            if let Some(d) = &a.draw {
                let mut c = Canvas::from_gray(img);
                let thick = (img.width.max(img.height) / 300).max(1) as i64;
                for (j, (bx, s)) in boxes.iter().zip(&det.scores).enumerate().take(5).rev() {
                    c.rect(bx, RED, if j == 0 { 2 * thick } else { thick });
                    c.text(bx[0] as i64 + 2 * thick, bx[1] as i64 + 2 * thick, &format!("{s:.2}"), RED, thick);
                }
                c.save(&d.join(format!("{id}.png")))?;
            }
            results.push(json!({
                "image": path.display().to_string(), "width": img.width, "height": img.height,
                "boxes": boxes.iter().zip(&det.scores).map(|(b, s)| json!({"x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3], "score": s})).collect::<Vec<_>>(),
            }));
        }
    }
    bar.finish_and_clear();
    let report = json!({ "model": a.checkpoint.display().to_string(), "device": b.name(), "images": results, "skipped": skipped });
    crate::weights::write_atomic(&a.out, serde_json::to_string_pretty(&report)?.as_bytes())?;
    if let Some(p) = &a.csv {
        crate::weights::write_atomic(p, csv.as_bytes())?;
    }
    Ok(report)
}
