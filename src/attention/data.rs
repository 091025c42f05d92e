//! Training samples of the attention model: each image's cached ROIs joined
//! with the attributes its report states and their word vectors; batches as
//! tensors; a seeded split by patient.

use crate::localizer::rois::{ImageRois, FEATURE_DIM};
use crate::rng::Rng;
use crate::text::extract::Status;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Attribute names and their vectors (and negatives) from `engine text word2vec`.
pub struct AttributeVectors {
    pub names: Vec<String>,
    pub dim: usize,
    pub vectors: Vec<f32>,
    pub negatives: Vec<f32>,
}

impl AttributeVectors {
    pub fn load(path: &Path) -> Result<Self> {
        let f = crate::weights::read(path)?;
        let names: Vec<String> = f.meta("attributes")?;
        let v = f.get("attribute_vectors")?;
        let n = f.get("negative_vectors")?;
        if v.shape.len() != 2 || v.shape[0] != names.len() || n.shape != v.shape {
            bail!("{}: attribute_vectors {:?} / negative_vectors {:?} do not fit {} attributes", path.display(), v.shape, n.shape, names.len());
        }
        Ok(AttributeVectors { dim: v.shape[1], names, vectors: v.data.clone(), negatives: n.data.clone() })
    }
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
}

/// Per report id: status and attributes (from `engine text extract` JSON lines).
pub fn read_attributes(path: &Path) -> Result<HashMap<String, (Status, Vec<String>)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{}: line {} is not JSON", path.display(), i + 1))?;
        let id = v["id"].as_str().with_context(|| format!("{}: line {} has no id", path.display(), i + 1))?.to_string();
        let status: Status = serde_json::from_value(v["status"].clone()).with_context(|| format!("{}: line {}: bad status", path.display(), i + 1))?;
        let attrs = v["attributes"].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default();
        out.insert(id, (status, attrs));
    }
    Ok(out)
}

/// `id,patient` pairs of a CSV (header required; other columns ignored).
pub fn read_patients(path: &Path) -> Result<HashMap<String, String>> {
    let mut rdr = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let h = rdr.headers().with_context(|| format!("{}: no header row", path.display()))?.clone();
    let col = |n: &str| h.iter().position(|x| x.trim() == n).with_context(|| format!("{}: missing column {n} (expected id,patient)", path.display()));
    let (ci, cp) = (col("id")?, col("patient")?);
    let mut out = HashMap::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: line {} is not valid CSV", path.display(), i + 2))?;
        out.insert(rec.get(ci).unwrap_or("").trim().to_string(), rec.get(cp).unwrap_or("").trim().to_string());
    }
    Ok(out)
}

/// One training sample.
#[derive(Clone)]
pub struct Sample {
    pub rois: ImageRois,
    /// Indices into the attribute vocabulary (sorted).
    pub attributes: Vec<usize>,
}

/// Samples with a pneumonia status in `keep` and at least one known attribute.
pub fn join(rois: Vec<ImageRois>, attrs: &HashMap<String, (Status, Vec<String>)>, vectors: &AttributeVectors, keep: &[Status]) -> Vec<Sample> {
    rois.into_iter()
        .filter_map(|r| {
            let (status, names) = attrs.get(&r.id)?;
            if !keep.contains(status) {
                return None;
            }
            let mut idx: Vec<usize> = names.iter().filter_map(|n| vectors.index(n)).collect();
            idx.sort_unstable();
            idx.dedup();
            if idx.is_empty() { None } else { Some(Sample { rois: r, attributes: idx }) }
        })
        .collect()
}

/// Seeded split by patient (`patient_of` maps an id to its patient): fractions
/// for validation and test; the rest trains.
pub fn split_by_patient(samples: Vec<Sample>, patient_of: &dyn Fn(&str) -> String, val: f64, test: f64, seed: u64) -> (Vec<Sample>, Vec<Sample>, Vec<Sample>) {
    let mut patients: Vec<String> = samples.iter().map(|s| patient_of(&s.rois.id)).collect();
    patients.sort();
    patients.dedup();
    let mut rng = Rng::new(seed);
    rng.shuffle(&mut patients);
    let n = patients.len();
    let n_test = ((n as f64 * test).round() as usize).min(n);
    let n_val = ((n as f64 * val).round() as usize).min(n - n_test);
    let group: BTreeMap<String, usize> = patients.iter().enumerate().map(|(i, p)| (p.clone(), if i < n_test { 2 } else if i < n_test + n_val { 1 } else { 0 })).collect();
    let (mut tr, mut va, mut te) = (Vec::new(), Vec::new(), Vec::new());
    for s in samples {
        match group[&patient_of(&s.rois.id)] {
            2 => te.push(s),
            1 => va.push(s),
            _ => tr.push(s),
        }
    }
    (tr, va, te)
}

/// The split a table gives (MIMIC-CXR's `train` / `validate` / `test`,
/// itself by patient); `split_of` gives each sample's entry.
pub fn split_by_table(samples: Vec<Sample>, split_of: &dyn Fn(&str) -> Option<String>) -> Result<(Vec<Sample>, Vec<Sample>, Vec<Sample>)> {
    let (mut tr, mut va, mut te) = (Vec::new(), Vec::new(), Vec::new());
    for s in samples {
        match split_of(&s.rois.id).as_deref() {
            Some("train") => tr.push(s),
            Some("validate") => va.push(s),
            Some("test") => te.push(s),
            other => bail!("image {}: split {other:?} (expected train, validate or test)", s.rois.id),
        }
    }
    Ok((tr, va, te))
}

/// Host tensors of a batch.
pub struct HostBatch {
    pub b: usize,
    pub n: usize,
    pub nn: usize,
    pub m: usize,
    pub r: Vec<f32>,
    pub g: Vec<f32>,
    pub s: Vec<f32>,
    pub rn: Vec<f32>,
    pub gn: Vec<f32>,
    pub sn: Vec<f32>,
    /// `[B, M, d]` attribute vectors, zero in padded slots
    pub mv: Vec<f32>,
    pub mnv: Vec<f32>,
    pub mask: Vec<f32>,
    /// `[B, K]` multi-hot
    pub y: Vec<f32>,
}

pub fn make_batch(items: &[&Sample], vectors: &AttributeVectors) -> HostBatch {
    let b = items.len();
    let n = items[0].rois.pos.len();
    let nn = items[0].rois.neg.len();
    let m = items.iter().map(|s| s.attributes.len()).max().unwrap_or(1).max(1);
    let (d, k) = (vectors.dim, vectors.names.len());
    let mut hb = HostBatch {
        b, n, nn, m, r: Vec::with_capacity(b * n * FEATURE_DIM), g: Vec::new(), s: Vec::new(), rn: Vec::new(), gn: Vec::new(), sn: Vec::new(),
        mv: vec![0.0; b * m * d], mnv: vec![0.0; b * m * d], mask: vec![0.0; b * m], y: vec![0.0; b * k],
    };
    for (i, s) in items.iter().enumerate() {
        hb.r.extend(&s.rois.pos.features);
        hb.g.extend(&s.rois.pos.boxes);
        hb.s.extend(&s.rois.pos.scores);
        hb.rn.extend(&s.rois.neg.features);
        hb.gn.extend(&s.rois.neg.boxes);
        hb.sn.extend(&s.rois.neg.scores);
        for (j, &a) in s.attributes.iter().enumerate() {
            hb.mv[(i * m + j) * d..(i * m + j + 1) * d].copy_from_slice(&vectors.vectors[a * d..(a + 1) * d]);
            hb.mnv[(i * m + j) * d..(i * m + j + 1) * d].copy_from_slice(&vectors.negatives[a * d..(a + 1) * d]);
            hb.mask[i * m + j] = 1.0;
            hb.y[i * k + a] = 1.0;
        }
    }
    hb
}

/// Macro ROC-AUC over the columns that have both classes (Mann-Whitney, ties count half).
pub fn macro_auc(probs: &[f32], y: &[f32], k: usize) -> Option<f64> {
    let n = y.len() / k;
    let mut aucs = Vec::new();
    for c in 0..k {
        let pos: Vec<f32> = (0..n).filter(|&i| y[i * k + c] > 0.5).map(|i| probs[i * k + c]).collect();
        let neg: Vec<f32> = (0..n).filter(|&i| y[i * k + c] <= 0.5).map(|i| probs[i * k + c]).collect();
        if pos.is_empty() || neg.is_empty() {
            continue;
        }
        let mut wins = 0.0;
        for &p in &pos {
            for &q in &neg {
                wins += if p > q { 1.0 } else if p == q { 0.5 } else { 0.0 };
            }
        }
        aucs.push(wins / (pos.len() * neg.len()) as f64);
    }
    if aucs.is_empty() { None } else { Some(aucs.iter().sum::<f64>() / aucs.len() as f64) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str) -> Sample {
        Sample { rois: ImageRois { id: id.to_string(), ..Default::default() }, attributes: vec![0] }
    }

    #[test]
    fn split_keeps_a_patients_images_together() {
        let samples: Vec<Sample> = (0..60).map(|i| sample(&format!("img{i}"))).collect();
        let patient = |id: &str| format!("p{}", id[3..].parse::<usize>().unwrap() / 3);
        let (tr, va, te) = split_by_patient(samples, &patient, 0.1, 0.1, 4);
        assert_eq!(tr.len() + va.len() + te.len(), 60);
        assert!(!va.is_empty() && !te.is_empty());
        let group = |set: &[Sample]| set.iter().map(|s| patient(&s.rois.id)).collect::<std::collections::HashSet<_>>();
        let (a, b, c) = (group(&tr), group(&va), group(&te));
        assert!(a.is_disjoint(&b) && a.is_disjoint(&c) && b.is_disjoint(&c), "a patient in two sets");
    }

    #[test]
    fn auc_of_perfect_random_and_inverted_scores() {
        let y = [1.0, 0.0, 1.0, 0.0];
        assert_eq!(macro_auc(&[0.9, 0.1, 0.8, 0.2], &y, 1), Some(1.0));
        assert_eq!(macro_auc(&[0.1, 0.9, 0.2, 0.8], &y, 1), Some(0.0));
        assert_eq!(macro_auc(&[0.5, 0.5, 0.5, 0.5], &y, 1), Some(0.5));
        assert_eq!(macro_auc(&[0.5, 0.5], &[1.0, 1.0], 1), None);
    }
}
