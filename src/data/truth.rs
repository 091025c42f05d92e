//! Truth boxes for evaluation, from the formats users have: the RSNA
//! challenge CSV, NIH ChestX-ray8's `BBox_List_2017.csv`, a plain box table
//! (`image,x,y,width,height` with optional `label` and `source`), MS-CXR's
//! local-alignment CSV (boxes on MIMIC-CXR images), and the phantoms'
//! `truth.jsonl`; the format is told by the file's header. Boxes
//! stay in each image's own pixels; images are keyed by file stem (NIH's
//! `00022084_000.png` and RSNA's `00022084_000` name the same image). A row
//! that cannot be used is an error naming the file and line; a column the
//! reader does not know is reported in `warnings` and ignored.

use crate::geometry::boxes::BoxF;
use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TruthBox {
    pub bbox: BoxF,
    /// The finding ("Pneumonia", "Consolidation", ...); empty where the file
    /// names none (RSNA, truth.jsonl: every box is of the one finding the file is about).
    pub label: String,
    /// Who drew it, where the file says ("rsna", "nih_bbox2017", ...).
    pub source: String,
    /// (width, height) of the image the box was drawn on, where the file says
    /// (MS-CXR); a differently sized copy of the image gets the box scaled.
    pub frame: Option<(f32, f32)>,
}

impl TruthBox {
    /// Whether the box shows `finding`: its label names it (case-insensitive),
    /// or it has no label (the file lists boxes of one finding only).
    pub fn is(&self, finding: &str) -> bool {
        self.label.is_empty() || self.label.eq_ignore_ascii_case(finding)
    }
}

/// Truth boxes by image; an image listed without boxes is a negative.
#[derive(Clone, Debug, Default)]
pub struct Truth {
    pub images: BTreeMap<String, Vec<TruthBox>>,
    pub warnings: Vec<String>,
}

impl Truth {
    pub fn boxes(&self, id: &str) -> Vec<BoxF> {
        self.images.get(id).map(|v| v.iter().map(|b| b.bbox).collect()).unwrap_or_default()
    }
    /// The boxes of `id` in the pixels of its image as read (`width` x `height`).
    pub fn boxes_in(&self, id: &str, width: usize, height: usize) -> Vec<BoxF> {
        let Some(v) = self.images.get(id) else { return Vec::new() };
        v.iter().map(|b| match b.frame {
            Some((fw, fh)) if fw > 0.0 && fh > 0.0 => {
                let (sx, sy) = (width as f32 / fw, height as f32 / fh);
                [b.bbox[0] * sx, b.bbox[1] * sy, b.bbox[2] * sx, b.bbox[3] * sy]
            }
            _ => b.bbox,
        }).collect()
    }
    /// Number of boxes over all images.
    pub fn box_count(&self) -> usize {
        self.images.values().map(Vec::len).sum()
    }
    /// Keeps the boxes of `finding` (`TruthBox::is`); images keep their entry.
    pub fn only(mut self, finding: &str) -> Self {
        for v in self.images.values_mut() {
            v.retain(|b| b.is(finding));
        }
        self
    }
}

/// An image name without its extension (`a/b/00022084_000.png` -> `00022084_000`).
pub fn image_key(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let lower = base.to_ascii_lowercase();
    match crate::data::image::EXTENSIONS.iter().find(|e| lower.ends_with(&format!(".{e}"))) {
        Some(e) => base[..base.len() - e.len() - 1].to_string(),
        None => base.to_string(),
    }
}

/// Reads any of the supported truth formats.
pub fn read_truth(path: &Path) -> Result<Truth> {
    if path.extension().is_some_and(|e| e == "jsonl") {
        return read_truth_jsonl(path);
    }
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let headers: Vec<String> = rdr.headers().with_context(|| format!("{}: no header row", path.display()))?.iter().map(|h| h.trim().to_string()).collect();
    let has = |n: &str| headers.iter().any(|h| h.eq_ignore_ascii_case(n));
    if has("patientId") && has("Target") {
        let labels = crate::data::rsna::read_labels(path)?;
        let images = labels.images.into_iter().map(|(id, v)| {
            (image_key(&id), v.into_iter().map(|bbox| TruthBox { bbox, label: String::new(), source: "rsna".into(), frame: None }).collect())
        }).collect();
        return Ok(Truth { images, warnings: Vec::new() });
    }
    if has("dicom_id") && has("category_name") && has("x") {
        return read_ms_cxr(path, rdr);
    }
    if has("Image Index") && has("Finding Label") {
        return read_nih_boxes(path, rdr);
    }
    if has("image") && has("x") && has("y") && has("width") && has("height") {
        return read_box_table(path, &headers, rdr);
    }
    bail!("{}: unknown box format (header {:?}); expected the RSNA CSV (patientId,x,y,width,height,Target), NIH BBox_List_2017.csv \
           (Image Index,Finding Label,Bbox [x,y,w,h]), a box table (image,x,y,width,height[,label][,source]) or truth.jsonl", path.display(), headers.join(","))
}

fn number(path: &Path, line: usize, name: &str, v: &str) -> Result<f32> {
    v.trim().parse::<f32>().ok().filter(|x| x.is_finite()).with_context(|| format!("{}: line {line}: {name} = {v:?} is not a number", path.display()))
}

/// `[x, y, x + w, y + h]`, or an error naming the row when empty or negative.
fn xywh(path: &Path, line: usize, x: f32, y: f32, w: f32, h: f32) -> Result<BoxF> {
    ensure!(w > 0.0 && h > 0.0 && x >= 0.0 && y >= 0.0, "{}: line {line}: box x={x} y={y} width={w} height={h} is empty or negative", path.display());
    Ok([x, y, x + w, y + h])
}

/// NIH `BBox_List_2017.csv`: the header's `Bbox [x,y,w,h]` spans four
/// columns and ends in three empty ones; rows are image, finding, x, y, w, h.
fn read_nih_boxes(path: &Path, mut rdr: csv::Reader<std::fs::File>) -> Result<Truth> {
    let mut truth = Truth::default();
    for (row, rec) in rdr.records().enumerate() {
        let line = row + 2;
        let rec = rec.with_context(|| format!("{}: line {line} is not valid CSV", path.display()))?;
        let f: Vec<&str> = rec.iter().map(str::trim).collect();
        if f.iter().all(|v| v.is_empty()) {
            continue;
        }
        ensure!(f.len() >= 6 && !f[0].is_empty(), "{}: line {line}: expected image, finding, x, y, w, h; found {} fields", path.display(), f.len());
        if let Some(extra) = f[6..].iter().find(|v| !v.is_empty()) {
            truth.warnings.push(format!("{}: line {line}: extra value {extra:?} after the box ignored", path.display()));
        }
        let n = |i: usize, name: &str| number(path, line, name, f[i]);
        let bbox = xywh(path, line, n(2, "x")?, n(3, "y")?, n(4, "w")?, n(5, "h")?)?;
        truth.images.entry(image_key(f[0])).or_default().push(TruthBox { bbox, label: f[1].to_string(), source: "nih_bbox2017".into(), frame: None });
    }
    ensure!(!truth.images.is_empty(), "{}: no rows", path.display());
    Ok(truth)
}

/// A plain table: `image,x,y,width,height` and optionally `label`, `source`
/// (e.g. `nih-real/boxed/boxes.csv`); a row with empty box fields lists a negative image.
fn read_box_table(path: &Path, headers: &[String], mut rdr: csv::Reader<std::fs::File>) -> Result<Truth> {
    let known = ["image", "x", "y", "width", "height", "label", "source"];
    let col = |n: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(n));
    let mut truth = Truth::default();
    for h in headers.iter().filter(|h| !known.iter().any(|k| h.eq_ignore_ascii_case(k))) {
        truth.warnings.push(format!("{}: unknown column {h:?} ignored (known: {})", path.display(), known.join(", ")));
    }
    let (ci, cx, cy, cw, ch) = (col("image").unwrap_or(0), col("x").unwrap_or(1), col("y").unwrap_or(2), col("width").unwrap_or(3), col("height").unwrap_or(4));
    let (cl, cs) = (col("label"), col("source"));
    for (row, rec) in rdr.records().enumerate() {
        let line = row + 2;
        let rec = rec.with_context(|| format!("{}: line {line} is not valid CSV", path.display()))?;
        let get = |i: usize| rec.get(i).unwrap_or("").trim();
        let id = get(ci);
        if id.is_empty() && rec.iter().all(|v| v.trim().is_empty()) {
            continue;
        }
        ensure!(!id.is_empty(), "{}: line {line}: empty image name", path.display());
        let entry = truth.images.entry(image_key(id)).or_default();
        if [cx, cy, cw, ch].iter().all(|&i| get(i).is_empty()) {
            continue;
        }
        let n = |i: usize, name: &str| number(path, line, name, get(i));
        let bbox = xywh(path, line, n(cx, "x")?, n(cy, "y")?, n(cw, "width")?, n(ch, "height")?)?;
        let text = |c: Option<usize>| c.map(|i| get(i).to_string()).unwrap_or_default();
        entry.push(TruthBox { bbox, label: text(cl), source: text(cs), frame: None });
    }
    ensure!(!truth.images.is_empty(), "{}: no rows", path.display());
    Ok(truth)
}

/// MS-CXR's local-alignment CSV (`dicom_id,category_name,label_text,path,
/// x,y,w,h,image_width,image_height[,split]`): boxes on MIMIC-CXR images,
/// keyed by `dicom_id`, in the frame of `image_width` x `image_height`. Its
/// `split` column is not used (the evaluation chooses its own split).
fn read_ms_cxr(path: &Path, mut rdr: csv::Reader<std::fs::File>) -> Result<Truth> {
    let headers: Vec<String> = rdr.headers()?.iter().map(|h| h.trim().to_string()).collect();
    let col = |n: &str| headers.iter().position(|h| h == n).with_context(|| format!("{}: missing column {n:?} of MS-CXR", path.display()));
    let (cd, cc, cx, cy, cw, ch, iw, ih) = (col("dicom_id")?, col("category_name")?, col("x")?, col("y")?, col("w")?, col("h")?, col("image_width")?, col("image_height")?);
    let mut truth = Truth::default();
    for (row, rec) in rdr.records().enumerate() {
        let line = row + 2;
        let rec = rec.with_context(|| format!("{}: line {line} is not valid CSV", path.display()))?;
        let get = |i: usize| rec.get(i).unwrap_or("").trim();
        ensure!(!get(cd).is_empty(), "{}: line {line}: empty dicom_id", path.display());
        let n = |i: usize, name: &str| number(path, line, name, get(i));
        let bbox = xywh(path, line, n(cx, "x")?, n(cy, "y")?, n(cw, "w")?, n(ch, "h")?)?;
        let frame = (n(iw, "image_width")?, n(ih, "image_height")?);
        ensure!(bbox[2] <= frame.0 + 0.5 && bbox[3] <= frame.1 + 0.5, "{}: line {line}: box {bbox:?} lies outside its {}x{} image", path.display(), frame.0, frame.1);
        truth.images.entry(get(cd).to_string()).or_default().push(TruthBox { bbox, label: get(cc).to_string(), source: "ms-cxr".into(), frame: Some(frame) });
    }
    ensure!(!truth.images.is_empty(), "{}: no rows", path.display());
    Ok(truth)
}

/// The phantoms' `truth.jsonl` (`engine data synth`): one JSON object per
/// image with `id` and `opacities[].bbox` (x1, y1, x2, y2) and `severity`.
fn read_truth_jsonl(path: &Path) -> Result<Truth> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut truth = Truth::default();
    for (i, l) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let line = i + 1;
        let v: serde_json::Value = serde_json::from_str(l).with_context(|| format!("{}: line {line} is not JSON", path.display()))?;
        let id = v["id"].as_str().with_context(|| format!("{}: line {line}: no \"id\"", path.display()))?;
        let entry = truth.images.entry(image_key(id)).or_default();
        for o in v["opacities"].as_array().into_iter().flatten() {
            let b: Vec<f32> = o["bbox"].as_array().into_iter().flatten().filter_map(|x| x.as_f64()).map(|x| x as f32).collect();
            ensure!(b.len() == 4 && b[2] > b[0] && b[3] > b[1] && b[0] >= 0.0 && b[1] >= 0.0,
                "{}: line {line}: opacity bbox {:?} is not x1, y1, x2, y2 of a non-empty box", path.display(), o["bbox"]);
            entry.push(TruthBox { bbox: [b[0], b[1], b[2], b[3]], label: String::new(), source: "phantom".into(), frame: None });
        }
    }
    ensure!(!truth.images.is_empty(), "{}: no rows", path.display());
    Ok(truth)
}

/// NIH `Data_Entry_2017.csv`: the image-level findings of each image
/// (`A|B`; `No Finding` is none).
pub fn read_image_labels(path: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let headers: Vec<String> = rdr.headers().with_context(|| format!("{}: no header row", path.display()))?.iter().map(|h| h.trim().to_string()).collect();
    let col = |n: &str| headers.iter().position(|h| h == n).with_context(|| format!("{}: missing column {n:?} (found {})", path.display(), headers.join(",")));
    let (ci, cf) = (col("Image Index")?, col("Finding Labels")?);
    let mut out = BTreeMap::new();
    for (row, rec) in rdr.records().enumerate() {
        let line = row + 2;
        let rec = rec.with_context(|| format!("{}: line {line} is not valid CSV", path.display()))?;
        let id = rec.get(ci).unwrap_or("").trim();
        ensure!(!id.is_empty(), "{}: line {line}: empty Image Index", path.display());
        let labels: Vec<String> = rec.get(cf).unwrap_or("").split('|').map(str::trim).filter(|l| !l.is_empty() && *l != "No Finding").map(String::from).collect();
        out.insert(image_key(id), labels);
    }
    ensure!(!out.is_empty(), "{}: no rows", path.display());
    Ok(out)
}
