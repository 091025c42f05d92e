//! The COVID-19 severity scores (Cohen et al. 2020): `covid-severity-scores.csv`
//! (`##` comment lines, then `filename,geographic_mean,opacity_mean`) and
//! the patient of each image from the collection's `metadata.csv`
//! (`patientid`, `filename`). A malformed row is reported with its line and
//! left out; the caller says how many.

use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The experts' scores of one image.
#[derive(Clone, Debug, PartialEq)]
pub struct Scores {
    /// Extent of ground glass / consolidation, 0-8 (mean of three raters).
    pub geographic: f64,
    /// Degree of opacity, 0-6.
    pub opacity: f64,
}

/// Scores by file name, and a message for each row left out.
pub fn read_scores(path: &Path) -> Result<(BTreeMap<String, Scores>, Vec<String>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    // line numbers of the file, comments included, so that messages point at the row
    let rows: Vec<(usize, &str)> = text.lines().enumerate().map(|(i, l)| (i + 1, l)).filter(|(_, l)| !l.starts_with("##") && !l.trim().is_empty()).collect();
    let body: String = rows.iter().map(|(_, l)| format!("{l}\n")).collect();
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(body.as_bytes());
    let headers: Vec<String> = rdr.headers().with_context(|| format!("{}: no header row", path.display()))?.iter().map(|h| h.trim().to_string()).collect();
    let col = |n: &str| headers.iter().position(|h| h == n).with_context(|| format!("{}: missing column {n:?} (found {})", path.display(), headers.join(",")));
    let (cf, cg, co) = (col("filename")?, col("geographic_mean")?, col("opacity_mean")?);
    let (mut out, mut bad) = (BTreeMap::new(), Vec::new());
    for (k, rec) in rdr.records().enumerate() {
        let line = rows.get(k + 1).map_or(0, |r| r.0);
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                bad.push(format!("{}: line {line}: not valid CSV ({e})", path.display()));
                continue;
            }
        };
        let field = |c: usize| rec.get(c).unwrap_or("").trim();
        let num = |c: usize, max: f64| field(c).parse::<f64>().ok().filter(|v| v.is_finite() && (0.0..=max).contains(v));
        match (field(cf), num(cg, 8.0), num(co, 6.0)) {
            ("", _, _) => bad.push(format!("{}: line {line}: empty filename", path.display())),
            (f, Some(geographic), Some(opacity)) => {
                out.insert(f.to_string(), Scores { geographic, opacity });
            }
            (f, _, _) => bad.push(format!("{}: line {line} ({f}): geographic_mean {:?} (0-8) and opacity_mean {:?} (0-6) must be numbers in range",
                path.display(), field(cg), field(co))),
        }
    }
    ensure!(!out.is_empty(), "{}: no valid score row", path.display());
    Ok((out, bad))
}

/// The patient of each image file (`filename` -> `patientid`).
pub fn read_patients(path: &Path) -> Result<BTreeMap<String, String>> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let headers: Vec<String> = rdr.headers().with_context(|| format!("{}: no header row", path.display()))?.iter().map(|h| h.trim().to_string()).collect();
    let col = |n: &str| headers.iter().position(|h| h == n).with_context(|| format!("{}: missing column {n:?}", path.display()));
    let (cp, cf) = (col("patientid")?, col("filename")?);
    let mut out = BTreeMap::new();
    for (i, rec) in rdr.byte_records().enumerate() {
        let rec = rec.with_context(|| format!("{}: line {} is not valid CSV", path.display(), i + 2))?;
        let get = |c: usize| String::from_utf8_lossy(rec.get(c).unwrap_or(b"")).trim().to_string();
        let (p, f) = (get(cp), get(cf));
        if !p.is_empty() && !f.is_empty() {
            out.insert(f, p);
        }
    }
    Ok(out)
}
