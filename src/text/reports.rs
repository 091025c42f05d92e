//! Report readers: MIMIC-CXR report text files (FINDINGS and IMPRESSION,
//! de-identification placeholders removed; `.txt` or `.txt.gz`; a
//! MIMIC-CXR-JPG root gives one report per frontal image, named by it), OpenI / Indiana XML reports (one
//! file, a folder, or the `.tgz` archive read directly), the `clinical_notes`
//! column of the COVID-19 metadata CSV, the reports of `engine data synth`,
//! and plain text. Bytes that are not UTF-8 are replaced (and counted);
//! a malformed file is skipped with a warning naming it.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Report {
    pub id: String,
    /// FINDINGS and IMPRESSION (the whole text when it has neither).
    pub text: String,
    /// Every section (the word2vec corpus).
    pub full: String,
}

/// What a read found besides the reports.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ReadNotes {
    /// Files skipped, with why.
    pub skipped: Vec<String>,
    /// Files whose bytes were not all UTF-8.
    pub not_utf8: Vec<String>,
}

fn text_of(bytes: &[u8], name: &str, notes: &mut ReadNotes) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => {
            notes.not_utf8.push(name.to_string());
            String::from_utf8_lossy(bytes).to_string()
        }
    }
}

fn is_heading(line: &str) -> Option<(String, String)> {
    let (head, rest) = line.split_once(':')?;
    let h = head.trim();
    if !h.is_empty() && h.len() <= 40 && h.chars().all(|c| c.is_ascii_uppercase() || c == ' ' || c == '/' || c == '_') && h.chars().any(|c| c.is_ascii_uppercase()) {
        Some((h.to_string(), rest.to_string()))
    } else {
        None
    }
}

/// A free-text report (MIMIC-CXR style): the FINDINGS and IMPRESSION
/// sections, or the whole text when it has neither.
pub fn parse_text_report(id: &str, raw: &str) -> Report {
    let raw = raw.replace("___", " ");
    let mut wanted = String::new();
    let mut current: Option<String> = None;
    for line in raw.lines() {
        if let Some((head, rest)) = is_heading(line) {
            current = Some(head);
            if matches!(current.as_deref(), Some("FINDINGS") | Some("IMPRESSION")) {
                wanted.push_str(rest.trim());
                wanted.push('\n');
            }
            continue;
        }
        if matches!(current.as_deref(), Some("FINDINGS") | Some("IMPRESSION")) {
            wanted.push_str(line.trim());
            wanted.push('\n');
        }
    }
    let full = raw.trim().to_string();
    let text = if wanted.trim().is_empty() { full.clone() } else { wanted.trim().to_string() };
    Report { id: id.to_string(), text, full }
}

/// One OpenI XML report: AbstractText sections by Label.
pub fn parse_openi_xml(id: &str, xml: &str) -> Result<Report> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| anyhow::anyhow!("malformed XML: {e}"))?;
    let (mut wanted, mut full) = (Vec::new(), Vec::new());
    for n in doc.descendants().filter(|n| n.has_tag_name("AbstractText")) {
        let label = n.attribute("Label").unwrap_or("");
        let t: String = n.descendants().filter(|d| d.is_text()).filter_map(|d| d.text()).collect::<Vec<_>>().join(" ");
        let t = t.trim().to_string();
        if t.is_empty() {
            continue;
        }
        if matches!(label, "FINDINGS" | "IMPRESSION") {
            wanted.push(t.clone());
        }
        full.push(t);
    }
    let id = doc.descendants().find(|n| n.has_tag_name("uId")).and_then(|n| n.attribute("id")).unwrap_or(id).to_string();
    Ok(Report { id, text: wanted.join("\n"), full: full.join("\n") })
}

/// Reads every report under `path` (see the module documentation).
pub fn read_reports(path: &Path) -> Result<(Vec<Report>, ReadNotes)> {
    let mut notes = ReadNotes::default();
    let mut out = Vec::new();
    if crate::data::mimic::Mimic::is_root(path) {
        // one report per frontal image, named by the image (dicom_id) as the images are
        let (reports, missing) = crate::data::mimic::Mimic::new(path)?.frontal_reports()?;
        notes.skipped.extend(missing);
        for (img, raw) in reports {
            out.push(parse_text_report(&crate::data::truth::image_key(&img.dicom_id), &raw));
        }
    } else if path.is_dir() {
        let mut files: Vec<_> = walk(path)?;
        files.sort();
        for f in files {
            read_file(&f, &mut out, &mut notes)?;
        }
    } else if path.is_file() {
        read_file(path, &mut out, &mut notes)?;
    } else {
        bail!("{}: no such file or folder", path.display());
    }
    Ok((out, notes))
}

/// The reports of a word2vec corpus: as `read_reports`, but a
/// MIMIC-CXR-JPG root's studies once each, not once per frontal image.
pub fn read_corpus_reports(path: &Path) -> Result<Vec<Report>> {
    let studies = path.join("files");
    Ok(read_reports(if crate::data::mimic::Mimic::is_root(path) { &studies } else { path })?.0)
}

fn walk(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?.flatten() {
        let p = e.path();
        if p.is_dir() {
            v.extend(walk(&p)?);
        } else {
            v.push(p);
        }
    }
    Ok(v)
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default()
}

fn read_file(p: &Path, out: &mut Vec<Report>, notes: &mut ReadNotes) -> Result<()> {
    let name = p.display().to_string();
    let lower = name.to_lowercase();
    if lower.ends_with(".tgz") || lower.ends_with(".tar.gz") {
        let f = std::fs::File::open(p).with_context(|| format!("cannot read {name}"))?;
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        for entry in ar.entries().with_context(|| format!("{name}: not a tar.gz archive"))? {
            let mut e = entry.with_context(|| format!("{name}: damaged archive"))?;
            let ep = e.path().map(|p| p.to_path_buf()).unwrap_or_default();
            if ep.extension().is_none_or(|x| x != "xml") {
                continue;
            }
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).with_context(|| format!("{name}: damaged entry {}", ep.display()))?;
            let ename = format!("{name}:{}", ep.display());
            let xml = text_of(&bytes, &ename, notes);
            match parse_openi_xml(&stem(&ep), &xml) {
                Ok(r) => out.push(r),
                Err(e) => notes.skipped.push(format!("{ename}: {e:#}")),
            }
        }
    } else if lower.ends_with(".xml") {
        let bytes = std::fs::read(p).with_context(|| format!("cannot read {name}"))?;
        let xml = text_of(&bytes, &name, notes);
        match parse_openi_xml(&stem(p), &xml) {
            Ok(r) => out.push(r),
            Err(e) => notes.skipped.push(format!("{name}: {e:#}")),
        }
    } else if lower.ends_with(".csv") {
        let mut rdr = csv::Reader::from_path(p).with_context(|| format!("cannot read {name}"))?;
        let headers = rdr.headers().with_context(|| format!("{name}: no header row"))?.clone();
        let Some(col) = headers.iter().position(|h| h == "clinical_notes") else {
            notes.skipped.push(format!("{name}: no clinical_notes column"));
            return Ok(());
        };
        let id_col = headers.iter().position(|h| h == "filename").or_else(|| headers.iter().position(|h| h == "patientid"));
        for (i, rec) in rdr.byte_records().enumerate() {
            let rec = rec.with_context(|| format!("{name}: line {} is not valid CSV", i + 2))?;
            let note = text_of(rec.get(col).unwrap_or(b""), &format!("{name}:{}", i + 2), notes);
            if note.trim().is_empty() {
                continue;
            }
            let id = id_col.and_then(|c| rec.get(c)).map(|b| String::from_utf8_lossy(b).to_string()).unwrap_or_else(|| format!("row{}", i + 2));
            out.push(Report { id, text: note.trim().to_string(), full: note.trim().to_string() });
        }
    } else if lower.ends_with(".txt.gz") {
        // MIMIC-CXR ships its reports gzipped too
        match crate::data::mimic::read_maybe_gz(p) {
            Ok(bytes) => {
                let raw = text_of(&bytes, &name, notes);
                out.push(parse_text_report(&stem(&p.with_extension("")), &raw));
            }
            Err(e) => notes.skipped.push(format!("{name}: {e:#}")),
        }
    } else if lower.ends_with(".txt") || !lower.rsplit('/').next().unwrap_or("").contains('.') {
        let bytes = std::fs::read(p).with_context(|| format!("cannot read {name}"))?;
        let raw = text_of(&bytes, &name, notes);
        out.push(parse_text_report(&stem(p), &raw));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mimic_sections_and_reports_without_sections() {
        let r = parse_text_report("s1", "EXAMINATION: CHEST\nINDICATION: ___ with fever\nFINDINGS: Patchy opacity in the\n right lower lobe.\nIMPRESSION: Pneumonia.\n");
        assert_eq!(r.text, "Patchy opacity in the\nright lower lobe.\nPneumonia.");
        assert!(r.full.contains("fever") && !r.full.contains("___"));
        let r = parse_text_report("s2", "Mild bibasilar opacities.");
        assert_eq!(r.text, "Mild bibasilar opacities.");
        assert_eq!(parse_text_report("e", "").text, "");
    }

    #[test]
    fn openi_xml_and_malformed_xml() {
        let x = r#"<eCitation><uId id="CXR1"/><Abstract><AbstractText Label="INDICATION">cough</AbstractText><AbstractText Label="FINDINGS">Left basilar opacity.</AbstractText><AbstractText Label="IMPRESSION">Pneumonia.</AbstractText></Abstract></eCitation>"#;
        let r = parse_openi_xml("f", x).unwrap();
        assert_eq!((r.id.as_str(), r.text.as_str()), ("CXR1", "Left basilar opacity.\nPneumonia."));
        assert!(r.full.starts_with("cough"));
        let e = parse_openi_xml("f", "<eCitation><Abstract>").unwrap_err();
        assert!(format!("{e}").contains("malformed XML"));
    }
}
