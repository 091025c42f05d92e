//! `engine detector infer`: boxes and scores of a trained detector on an
//! image file or a folder, as JSON, as CSV in the RSNA submission form
//! (`patientId,PredictionString` with `score x y width height` groups), and
//! with `--draw` as PNG overlays. Unreadable files are skipped and reported.

use crate::backend::Backend;
use crate::data::image::Gray;
use crate::draw::{Canvas, RED};
use crate::folder::image_id;
use crate::localizer::postprocess::PostProcess;
use crate::localizer::Localizer;
use anyhow::Result;
use serde_json::json;
use std::path::PathBuf;

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

pub fn infer<B: Backend>(b: B, a: &InferArgs) -> Result<serde_json::Value> {
    let loc = Localizer::load_detector(&b, &a.checkpoint)?;
    crate::folder::create_draw_dir(a.draw.as_deref())?;
    let pp = PostProcess { score_thresh: a.score_thresh, detections_per_image: a.max_boxes, ..Default::default() };
    let (mut results, mut csv) = (Vec::new(), String::from("patientId,PredictionString\n"));
    let skipped = crate::folder::run(&a.images, a.batch, a.strict, |imgs| {
        let grays: Vec<&Gray> = imgs.iter().map(|(_, g)| g).collect();
        for ((path, img), det) in imgs.iter().zip(loc.detections(&grays, &pp)?) {
            let id = image_id(path);
            let pred: Vec<String> = det.boxes.iter().zip(&det.scores).map(|(b, s)| format!("{s:.4} {:.1} {:.1} {:.1} {:.1}", b[0], b[1], b[2] - b[0], b[3] - b[1])).collect();
            csv += &format!("{id},{}\n", pred.join(" "));
            if let Some(d) = &a.draw {
                let mut c = Canvas::from_gray(img);
                let thick = (img.width.max(img.height) / 300).max(1) as i64;
                for (j, (bx, s)) in det.boxes.iter().zip(&det.scores).enumerate().take(5).rev() {
                    c.rect(bx, RED, if j == 0 { 2 * thick } else { thick });
                    c.text(bx[0] as i64 + 2 * thick, bx[1] as i64 + 2 * thick, &format!("{s:.2}"), RED, thick);
                }
                c.save(&d.join(format!("{id}.png")))?;
            }
            results.push(json!({
                "image": path.display().to_string(), "width": img.width, "height": img.height,
                "boxes": det.boxes.iter().zip(&det.scores).map(|(b, s)| json!({"x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3], "score": s})).collect::<Vec<_>>(),
            }));
        }
        Ok(())
    })?;
    let report = json!({ "model": a.checkpoint.display().to_string(), "device": b.name(), "images": results, "skipped": skipped });
    crate::folder::write_json(&a.out, &report)?;
    if let Some(p) = &a.csv {
        crate::weights::write_atomic(p, csv.as_bytes())?;
    }
    Ok(report)
}
