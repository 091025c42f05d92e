//! MIMIC-CXR-JPG as it is laid out: images in
//! `files/pNN/pNNNNNNNN/sNNNNNNNN/<dicom_id>.jpg`, the tables
//! `mimic-cxr-2.0.0-{metadata,split,chexpert,negbio}.csv` (gzipped or not)
//! beside `files/`, and the reports (MIMIC-CXR) in
//! `files/pNN/pNNNNNNNN/sNNNNNNNN.txt` (gzipped or not). Errors name the
//! file and line.

use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One image of the metadata table.
#[derive(Clone, Debug, PartialEq)]
pub struct MimicImage {
    pub dicom_id: String,
    pub subject_id: String,
    pub study_id: String,
    /// `ViewPosition` (PA, AP, LATERAL, ...).
    pub view: String,
    /// `train`, `validate` or `test` (empty when the split table does not list it).
    pub split: String,
    pub path: PathBuf,
}

impl MimicImage {
    pub fn is_frontal(&self) -> bool {
        matches!(self.view.as_str(), "PA" | "AP")
    }
}

/// A label of the CheXpert / NegBio tables: positive, negative, uncertain, or not mentioned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mention {
    Positive,
    Negative,
    Uncertain,
    Absent,
}

/// Which labeller's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Labeller {
    Chexpert,
    Negbio,
}

/// The bytes of `path`, or of `path.gz` when only that exists, unpacked.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    let (p, zipped) = if path.is_file() { (path.to_path_buf(), path.extension().is_some_and(|e| e == "gz")) } else { (gz, true) };
    let bytes = std::fs::read(&p).with_context(|| format!("cannot read {} (or {}.gz)", path.display(), path.display()))?;
    if !zipped {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut out).with_context(|| format!("{}: not a gzip file", p.display()))?;
    Ok(out)
}

/// Rows of a MIMIC table as (line number, column name -> value).
fn table(path: &Path, need: &[&str]) -> Result<Vec<(usize, BTreeMap<String, String>)>> {
    let bytes = read_maybe_gz(path)?;
    let mut rdr = csv::Reader::from_reader(&bytes[..]);
    let headers: Vec<String> = rdr.headers().with_context(|| format!("{}: no header row", path.display()))?.iter().map(|h| h.trim().to_string()).collect();
    for n in need {
        ensure!(headers.iter().any(|h| h == n), "{}: missing column {n:?} (found {})", path.display(), headers.join(","));
    }
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: line {} is not valid CSV", path.display(), i + 2))?;
        rows.push((i + 2, headers.iter().cloned().zip(rec.iter().map(|v| v.trim().to_string())).collect()));
    }
    Ok(rows)
}

/// A MIMIC-CXR-JPG root (the folder holding `files/` and the tables).
pub struct Mimic {
    pub root: PathBuf,
}

impl Mimic {
    pub fn new(root: &Path) -> Result<Self> {
        ensure!(root.join("files").is_dir(), "{}: not a MIMIC-CXR-JPG root (no files/ folder)", root.display());
        Ok(Mimic { root: root.to_path_buf() })
    }

    /// Whether `dir` is a MIMIC-CXR-JPG root: `files/` and the metadata
    /// table beside it (gzipped or not).
    pub fn is_root(dir: &Path) -> bool {
        let meta = dir.join("mimic-cxr-2.0.0-metadata.csv");
        dir.join("files").is_dir() && (meta.is_file() || meta.with_extension("csv.gz").is_file())
    }

    fn table_path(&self, name: &str) -> PathBuf {
        self.root.join(format!("mimic-cxr-2.0.0-{name}.csv"))
    }

    /// `files/pNN/pNNNNNNNN/sNNNNNNNN`: the folder of a study.
    pub fn study_dir(&self, subject_id: &str, study_id: &str) -> PathBuf {
        let two: String = subject_id.chars().take(2).collect();
        self.root.join("files").join(format!("p{two}")).join(format!("p{subject_id}")).join(format!("s{study_id}"))
    }

    /// Every image of the metadata table with its split and file path.
    pub fn images(&self) -> Result<Vec<MimicImage>> {
        let split_path = self.table_path("split");
        let splits: BTreeMap<String, String> = if split_path.is_file() || PathBuf::from(format!("{}.gz", split_path.display())).is_file() {
            table(&split_path, &["dicom_id", "split"])?.into_iter().map(|(_, r)| (r["dicom_id"].clone(), r["split"].clone())).collect()
        } else {
            BTreeMap::new()
        };
        let meta = self.table_path("metadata");
        let mut out = Vec::new();
        for (line, r) in table(&meta, &["dicom_id", "subject_id", "study_id", "ViewPosition"])? {
            let (d, sub, st) = (&r["dicom_id"], &r["subject_id"], &r["study_id"]);
            if d.is_empty() || sub.len() < 2 || st.is_empty() || !sub.chars().chain(st.chars()).all(|c| c.is_ascii_digit()) {
                bail!("{}: line {line}: dicom_id {d:?}, subject_id {sub:?}, study_id {st:?} do not name an image", meta.display());
            }
            out.push(MimicImage {
                dicom_id: d.clone(), subject_id: sub.clone(), study_id: st.clone(), view: r["ViewPosition"].clone(),
                split: splits.get(d).cloned().unwrap_or_default(), path: self.study_dir(sub, st).join(format!("{d}.jpg")),
            });
        }
        Ok(out)
    }

    /// The frontal (PA / AP) images whose file exists.
    pub fn frontal_images(&self) -> Result<Vec<MimicImage>> {
        Ok(self.images()?.into_iter().filter(|i| i.is_frontal() && i.path.is_file()).collect())
    }

    /// One finding's label per study (`study_id` -> mention) from the CheXpert or NegBio table.
    pub fn labels(&self, labeller: Labeller, finding: &str) -> Result<BTreeMap<String, Mention>> {
        let path = self.table_path(match labeller { Labeller::Chexpert => "chexpert", Labeller::Negbio => "negbio" });
        let mut out = BTreeMap::new();
        for (line, r) in table(&path, &["study_id", finding])? {
            let m = match r[finding].as_str() {
                "1" | "1.0" => Mention::Positive,
                "0" | "0.0" => Mention::Negative,
                "-1" | "-1.0" => Mention::Uncertain,
                "" => Mention::Absent,
                v => bail!("{}: line {line}: {finding} = {v:?} (expected 1, 0, -1 or blank)", path.display()),
            };
            out.insert(r["study_id"].clone(), m);
        }
        Ok(out)
    }

    /// Each frontal image of the metadata table (its file need not be here)
    /// with its study's report, read once per study; a study without a
    /// report file is left out and named in the second list.
    pub fn frontal_reports(&self) -> Result<(Vec<(MimicImage, String)>, Vec<String>)> {
        let (mut out, mut missing) = (Vec::new(), Vec::new());
        let mut by_study: BTreeMap<String, Option<String>> = BTreeMap::new();
        for img in self.images()?.into_iter().filter(MimicImage::is_frontal) {
            let text = by_study.entry(img.study_id.clone()).or_insert_with(|| match self.report(&img.subject_id, &img.study_id) {
                Ok(t) => Some(t),
                Err(e) => {
                    missing.push(format!("{e:#}"));
                    None
                }
            });
            if let Some(t) = text {
                out.push((img.clone(), t.clone()));
            }
        }
        Ok((out, missing))
    }

    /// The report of a study (`files/pNN/pNNNNNNNN/sNNNNNNNN.txt`, or `.txt.gz`).
    pub fn report(&self, subject_id: &str, study_id: &str) -> Result<String> {
        let dir = self.study_dir(subject_id, study_id);
        let txt = dir.with_extension("txt");
        let bytes = read_maybe_gz(&txt)?;
        String::from_utf8(bytes).with_context(|| format!("{}: the report is not UTF-8", txt.display()))
    }
}
