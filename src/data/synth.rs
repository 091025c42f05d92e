//! Synthetic chest phantoms (`engine data synth`): grey images with two lung
//! fields, ribs, the heart shadow, the spine and noise, and pneumonia-like
//! opacities of known position, extent and density; an RSNA-format
//! `labels.csv`, one short report per image in the attribute vocabulary
//! (with negated findings such as "no effusion"), and `truth.jsonl` with the
//! exact boxes and attributes. Seeded: the same options make the same files.
//!
//! Convention of radiographs: the patient's right is the image's left.

use crate::data::image::Gray;
use crate::geometry::boxes::BoxF;
use crate::rng::Rng;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

#[derive(Clone, Debug)]
pub struct SynthConfig {
    pub count: usize,
    pub size: usize,
    pub seed: u64,
    /// Share of images with pneumonia.
    pub positive_rate: f64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig { count: 200, size: 256, seed: 1, positive_rate: 0.8 }
    }
}

/// One opacity as drawn.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Opacity {
    /// "left" / "right" (the patient's side)
    pub side: &'static str,
    /// "upper" / "middle" / "lower"
    pub zone: &'static str,
    /// "focal" / "patchy" / "diffuse"
    pub extent: &'static str,
    /// "mild" / "moderate" / "severe"
    pub severity: &'static str,
    pub bbox: BoxF,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Phantom {
    pub id: String,
    pub opacities: Vec<Opacity>,
    pub report: String,
    /// Canonical attributes the report states.
    pub attributes: Vec<String>,
    #[serde(skip)]
    pub image: Gray,
}

fn ellipse(img: &mut [f32], s: usize, cx: f32, cy: f32, rx: f32, ry: f32, value: f32, add: bool) {
    for y in 0..s {
        for x in 0..s {
            let (dx, dy) = ((x as f32 - cx) / rx, (y as f32 - cy) / ry);
            if dx * dx + dy * dy <= 1.0 {
                let p = &mut img[y * s + x];
                *p = if add { *p + value } else { value };
            }
        }
    }
}

/// Lung field of a side: (centre x, centre y, radius x, radius y), image coordinates.
fn lung(s: f32, image_left: bool) -> (f32, f32, f32, f32) {
    let cx = if image_left { 0.31 * s } else { 0.69 * s };
    (cx, 0.47 * s, 0.15 * s, 0.30 * s)
}

/// Draws one phantom.
pub fn phantom(rng: &mut Rng, id: String, size: usize, positive: bool) -> Phantom {
    let s = size as f32;
    let mut img = vec![0.08f32; size * size];
    ellipse(&mut img, size, 0.5 * s, 0.52 * s, 0.46 * s, 0.48 * s, 0.42, false); // thorax
    for left in [true, false] {
        let (cx, cy, rx, ry) = lung(s, left);
        ellipse(&mut img, size, cx, cy, rx, ry, 0.16, false);
    }
    // ribs: bright arcs crossing both lungs
    for k in 0..7 {
        let y0 = (0.2 + 0.09 * k as f32) * s;
        for x in 0..size {
            let t = (x as f32 / s - 0.5) * 2.0;
            let y = y0 + 0.06 * s * t * t;
            for dy in 0..(0.012 * s).max(1.0) as usize {
                let yy = y as usize + dy;
                if yy < size {
                    img[yy * size + x] += 0.07;
                }
            }
        }
    }
    ellipse(&mut img, size, 0.5 * s, 0.5 * s, 0.05 * s, 0.5 * s, 0.5, false); // spine / mediastinum
    ellipse(&mut img, size, 0.57 * s, 0.66 * s, 0.14 * s, 0.11 * s, 0.55, false); // heart, patient's left

    let mut opacities = Vec::new();
    if positive {
        let bilateral = rng.uniform() < 0.25;
        let sides: Vec<&'static str> = if bilateral { vec!["right", "left"] } else if rng.uniform() < 0.5 { vec!["right"] } else { vec!["left"] };
        let zone = ["upper", "middle", "lower"][rng.below(3)];
        let extent = ["focal", "patchy", "diffuse"][rng.below(3)];
        let severity = ["mild", "moderate", "severe"][rng.below(3)];
        for side in sides {
            let (cx, cy, rx, ry) = lung(s, side == "right");
            let zy = match zone { "upper" => cy - 0.55 * ry, "middle" => cy, _ => cy + 0.55 * ry };
            let (ex, ey) = match extent { "focal" => (0.35 * rx, 0.18 * ry), "patchy" => (0.6 * rx, 0.3 * ry), _ => (0.85 * rx, 0.45 * ry) };
            let ox = cx + rng.range(-0.15, 0.15) as f32 * rx;
            let oy = zy + rng.range(-0.1, 0.1) as f32 * ry;
            let density = match severity { "mild" => 0.14, "moderate" => 0.24, _ => 0.36 };
            // a few gaussian blobs (one for focal); the box covers where the
            // added density is above a fifth of its peak
            let blobs = if extent == "focal" { 1 } else { 3 + rng.below(3) };
            let mut add = vec![0.0f32; size * size];
            for _ in 0..blobs {
                let (bx, by) = (ox + rng.range(-0.5, 0.5) as f32 * ex, oy + rng.range(-0.5, 0.5) as f32 * ey);
                let (sx, sy) = (ex * rng.range(0.35, 0.55) as f32, ey * rng.range(0.35, 0.55) as f32);
                for y in 0..size {
                    for x in 0..size {
                        let (dx, dy) = ((x as f32 - bx) / sx, (y as f32 - by) / sy);
                        add[y * size + x] += (-(dx * dx + dy * dy) / 2.0).exp();
                    }
                }
            }
            let peak = add.iter().cloned().fold(0.0, f32::max);
            let (mut x1, mut y1, mut x2, mut y2) = (s, s, 0.0f32, 0.0f32);
            for y in 0..size {
                for x in 0..size {
                    let v = add[y * size + x] / peak;
                    img[y * size + x] += density * v.min(1.0);
                    if v > 0.2 {
                        (x1, y1, x2, y2) = (x1.min(x as f32), y1.min(y as f32), x2.max(x as f32 + 1.0), y2.max(y as f32 + 1.0));
                    }
                }
            }
            opacities.push(Opacity { side, zone, extent, severity, bbox: [x1, y1, x2, y2] });
        }
    }
    for v in img.iter_mut() {
        *v = (*v + 0.025 * rng.normal() as f32).clamp(0.0, 1.0);
    }
    let (report, attributes) = report(rng, &opacities);
    Phantom { id, opacities, report, attributes, image: Gray { width: size, height: size, data: img } }
}

/// A short report in the attribute vocabulary, and the attributes it states.
fn report(rng: &mut Rng, ops: &[Opacity]) -> (String, Vec<String>) {
    let negatives = ["No pleural effusion.", "No pneumothorax.", "No effusion or pneumothorax.", "The heart size is normal."];
    let neg = |rng: &mut Rng| negatives[rng.below(negatives.len())].to_string();
    let Some(o) = ops.first() else {
        let clear = ["No focal consolidation.", "The lungs are clear. No pneumonia.", "No consolidation to suggest pneumonia."];
        return (format!("{} {}", clear[rng.below(clear.len())], neg(rng)), vec![]);
    };
    let side = if ops.len() > 1 { "bilateral" } else { o.side };
    let noun = if ops.len() > 1 { "opacities" } else { "opacity" };
    let extent = if o.extent == "diffuse" && ops.len() == 1 { "diffuse" } else { o.extent };
    let lobe = if ops.len() > 1 { "lungs" } else { "lung" };
    let text = match rng.below(3) {
        0 => format!("{} {extent} {noun} in the {side} {} {lobe}, {}, consistent with pneumonia.", cap(o.severity), o.zone, "concerning for infection"),
        1 => format!("There is {} {extent} airspace {noun} in the {side} {} zone, compatible with pneumonia.", article(o.severity), o.zone),
        _ => format!("{} {extent} consolidation of the {side} {} {lobe}. Findings suggest pneumonia.", cap(o.severity), o.zone),
    };
    let mut attrs: Vec<String> = vec![side.into(), o.zone.into(), extent.into(), o.severity.into()];
    attrs.sort();
    (format!("{text} {}", neg(rng)), attrs)
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

fn article(s: &str) -> String {
    format!("{} {s}", if s.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" })
}

/// Writes `count` phantoms: `images/<id>.png`, `reports/<id>.txt`,
/// `labels.csv` (RSNA) and `truth.jsonl`.
pub fn write_dataset(out: &Path, cfg: &SynthConfig, mut progress: impl FnMut()) -> Result<Vec<Phantom>> {
    std::fs::create_dir_all(out.join("images")).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::create_dir_all(out.join("reports"))?;
    let mut rng = Rng::new(cfg.seed);
    let mut labels = String::from("patientId,x,y,width,height,Target\n");
    let mut truth = Vec::new();
    let mut all = Vec::new();
    for i in 0..cfg.count {
        let id = format!("phantom-{i:05}");
        let positive = rng.uniform() < cfg.positive_rate;
        let mut r = Rng::new(cfg.seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
        let p = phantom(&mut r, id.clone(), cfg.size, positive);
        std::fs::write(out.join("images").join(format!("{id}.png")), p.image.to_png()?)?;
        std::fs::write(out.join("reports").join(format!("{id}.txt")), format!("FINDINGS: {}\n", p.report))?;
        if p.opacities.is_empty() {
            labels += &format!("{id},,,,,0\n");
        }
        for o in &p.opacities {
            let b = o.bbox;
            labels += &format!("{id},{},{},{},{},1\n", b[0], b[1], b[2] - b[0], b[3] - b[1]);
        }
        writeln!(truth, "{}", serde_json::to_string(&p)?)?;
        progress();
        all.push(p);
    }
    crate::weights::write_atomic(&out.join("labels.csv"), labels.as_bytes())?;
    crate::weights::write_atomic(&out.join("truth.jsonl"), &truth)?;
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_phantom_and_boxes_on_the_stated_side() {
        let a = phantom(&mut Rng::new(5), "a".into(), 128, true);
        let b = phantom(&mut Rng::new(5), "a".into(), 128, true);
        assert_eq!(a.image, b.image);
        for o in &a.opacities {
            let cx = (o.bbox[0] + o.bbox[2]) / 2.0;
            // the patient's right is the image's left
            assert_eq!(cx < 64.0, o.side == "right", "{o:?}");
            assert!(o.bbox[2] > o.bbox[0] && o.bbox[3] > o.bbox[1]);
        }
        assert!(a.report.contains(a.opacities[0].severity) || a.report.to_lowercase().contains(a.opacities[0].severity));
        let n = phantom(&mut Rng::new(6), "n".into(), 64, false);
        assert!(n.opacities.is_empty() && n.attributes.is_empty());
    }
}
