//! `engine infer`: from images alone (no text), the attention model's boxes
//! (ROIs ranked by alpha, then NMS) with their weights, and the probability
//! of every attribute; JSON, and with `--draw` a PNG with the boxes and the
//! most probable attributes written on it. Unreadable files are skipped and
//! reported.

use crate::backend::Backend;
use crate::data::image::Gray;
use crate::draw::{Canvas, CYAN, RED, YELLOW};
use crate::folder::image_id;
use crate::localizer::predict::Prediction;
use crate::localizer::Localizer;
use anyhow::Result;
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
    let loc = Localizer::load_bundle(&b, &a.checkpoint)?;
    let attributes = &loc.attention()?.meta.attributes;
    crate::folder::create_draw_dir(a.draw.as_deref())?;
    let mut results = Vec::new();
    let skipped = crate::folder::run(&a.images, a.batch, a.strict, |imgs| {
        let ids: Vec<String> = imgs.iter().map(|(p, _)| image_id(p)).collect();
        let refs: Vec<(&str, &Gray)> = ids.iter().zip(&imgs).map(|(id, (_, g))| (id.as_str(), g)).collect();
        let (_, preds) = loc.locate(&refs, a.nms, a.max_boxes)?;
        for (((path, img), p), id) in imgs.iter().zip(&preds).zip(&ids) {
            let (w, h) = (img.width as f32, img.height as f32);
            if let Some(d) = &a.draw {
                draw(img, p, attributes, &d.join(format!("{id}.png")))?;
            }
            let mut attrs: Vec<(String, f32)> = attributes.iter().cloned().zip(p.probs.iter().copied()).collect();
            attrs.sort_by(|x, y| y.1.total_cmp(&x.1));
            results.push(json!({
                "image": path.display().to_string(), "width": img.width, "height": img.height,
                "boxes": p.boxes.iter().zip(&p.alpha).zip(&p.score).map(|((bx, al), s)| json!({
                    "x1": bx[0] * w, "y1": bx[1] * h, "x2": bx[2] * w, "y2": bx[3] * h, "alpha": al, "detector_score": s })).collect::<Vec<_>>(),
                "attributes": attrs.iter().map(|(k, v)| json!({"attribute": k, "probability": v})).collect::<Vec<_>>(),
            }));
        }
        Ok(())
    })?;
    let report = json!({ "model": a.checkpoint.display().to_string(), "device": b.name(), "images": results, "skipped": skipped });
    crate::folder::write_json(&a.out, &report)?;
    Ok(report)
}
