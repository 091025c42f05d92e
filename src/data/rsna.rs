//! RSNA pneumonia-challenge labels (`patientId,x,y,width,height,Target`; a
//! negative image has one row with empty box fields and Target 0) and the
//! image files they name (any supported extension).

use crate::data::image::EXTENSIONS;
use crate::geometry::boxes::BoxF;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Boxes per patient id, in the original image's pixels, in file order.
#[derive(Clone, Debug, Default)]
pub struct Labels {
    pub images: BTreeMap<String, Vec<BoxF>>,
}

/// Reads and checks a labels file. Errors name the file and the row.
pub fn read_labels(path: &Path) -> Result<Labels> {
    let mut rdr = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let headers = rdr.headers().with_context(|| format!("{}: no header row", path.display()))?.clone();
    let col = |name: &str| -> Result<usize> {
        headers.iter().position(|h| h.trim() == name).with_context(|| {
            format!("{}: missing column {name} (expected patientId,x,y,width,height,Target; found {})", path.display(), headers.iter().collect::<Vec<_>>().join(","))
        })
    };
    let (ci, cx, cy, cw, ch, ct) = (col("patientId")?, col("x")?, col("y")?, col("width")?, col("height")?, col("Target")?);
    let mut labels = Labels::default();
    for (row, rec) in rdr.records().enumerate() {
        let line = row + 2;
        let rec = rec.with_context(|| format!("{}: line {line} is not valid CSV", path.display()))?;
        let get = |i: usize| rec.get(i).unwrap_or("").trim();
        let id = get(ci).to_string();
        if id.is_empty() {
            bail!("{}: line {line}: empty patientId", path.display());
        }
        let target = get(ct);
        let entry = labels.images.entry(id.clone()).or_default();
        if target == "0" || get(cx).is_empty() {
            continue;
        }
        let num = |i: usize, name: &str| -> Result<f32> {
            get(i).parse::<f32>().ok().filter(|v| v.is_finite()).with_context(|| format!("{}: line {line}: {name} = {:?} is not a number", path.display(), get(i)))
        };
        let (x, y, w, h) = (num(cx, "x")?, num(cy, "y")?, num(cw, "width")?, num(ch, "height")?);
        if w <= 0.0 || h <= 0.0 || x < 0.0 || y < 0.0 {
            bail!("{}: line {line}: box x={x} y={y} width={w} height={h} is empty or negative", path.display());
        }
        entry.push([x, y, x + w, y + h]);
    }
    if labels.images.is_empty() {
        bail!("{}: no rows", path.display());
    }
    Ok(labels)
}

/// The image file of `id` in `dir` (any supported extension), if present.
pub fn find_image(dir: &Path, id: &str) -> Option<PathBuf> {
    EXTENSIONS.iter().map(|e| dir.join(format!("{id}.{e}"))).find(|p| p.is_file())
}

/// Checks that every box lies inside its image (a box outside is an error
/// that names it).
pub fn check_boxes_inside(id: &str, boxes: &[BoxF], width: usize, height: usize) -> Result<()> {
    for b in boxes {
        if b[2] > width as f32 + 0.5 || b[3] > height as f32 + 0.5 {
            bail!("image {id}: box [{}, {}, {}, {}] lies outside the {width}x{height} image", b[0], b[1], b[2], b[3]);
        }
    }
    Ok(())
}
