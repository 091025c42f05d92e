//! `engine text extract`, `engine text word2vec`, `engine text neighbours`.

use super::extract::{Extractor, Status};
use super::reports::{read_corpus_reports, read_reports};
use super::vocab::Vocabulary;
use super::word2vec::{corpus_sentences, train_batched, train_cpu, Corpus, Vectors, W2vConfig};
use crate::backend::device::Device;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ExtractArgs {
    /// Reports: a folder (.txt / .txt.gz / .xml), an OpenI .tgz, a COVID-19 metadata .csv, one file, or a
    /// MIMIC-CXR-JPG root with the reports in files/ (one line per frontal image, named by its dicom_id).
    #[arg(long)]
    pub reports: PathBuf,
    /// One JSON line per report.
    #[arg(long, default_value = "attributes.jsonl")]
    pub out: PathBuf,
    /// Attribute vocabulary (canonical<TAB>forms); the shipped 22 by default.
    #[arg(long)]
    pub attributes: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The extract summary as a few readable lines.
pub fn extract_summary_text(s: &serde_json::Value) -> String {
    let mut t = format!("{} reports -> {}\n", s["reports"], s["out"].as_str().unwrap_or("?"));
    if let Some(m) = s["status"].as_object() {
        t += &format!("pneumonia: {}\n", m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "));
    }
    t += &format!("affirmed with at least one attribute: {}\n", s["pneumonia_affirmed_with_attributes"]);
    let freq: Vec<String> = s["attribute_frequencies_affirmed"].as_array().map(|a| a.iter().map(|p| format!("{} {}", p[0].as_str().unwrap_or("?"), p[1])).collect()).unwrap_or_default();
    t += &format!("attributes (affirmed reports): {}\n", freq.join(", "));
    for (k, label) in [("skipped_files", "skipped"), ("not_utf8_files", "not UTF-8 (replaced)")] {
        if let Some(a) = s[k].as_array().filter(|a| !a.is_empty()) {
            t += &format!("{label}: {} file(s), first {}\n", a.len(), a[0]);
        }
    }
    t
}

/// The word2vec summary as a few readable lines.
pub fn word2vec_summary_text(s: &serde_json::Value) -> String {
    let mut t = format!("{} words of {} reports, vocabulary {}, {} epochs on {} ({} threads): {:.0} words/s, {:.1} s\n",
        s["words"], s["reports"], s["vocabulary"], s["epochs"], s["device"].as_str().unwrap_or("?"), s["threads"],
        s["words_per_second"].as_f64().unwrap_or(0.0), s["seconds"].as_f64().unwrap_or(0.0));
    t += &format!("loss {:.4} -> {:.4}\n", s["loss_first"].as_f64().unwrap_or(f64::NAN), s["loss_last"].as_f64().unwrap_or(f64::NAN));
    if let Some(m) = s["negatives"].as_object() {
        t += &format!("negative attributes: {}\n", m.iter().map(|(k, v)| format!("{k}->{}", v.as_str().unwrap_or("?"))).collect::<Vec<_>>().join(", "));
    }
    t += &format!("saved {}\n", s["out"].as_str().unwrap_or("?"));
    t
}

pub fn extract(a: &ExtractArgs) -> Result<serde_json::Value> {
    let vocab = Vocabulary::load(a.attributes.as_deref())?;
    let ex = Extractor::new(vocab);
    let (reports, notes) = read_reports(&a.reports)?;
    let mut lines = Vec::new();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut freq: BTreeMap<String, usize> = BTreeMap::new();
    let mut positive_with_attributes = 0;
    for r in &reports {
        let e = ex.extract(&r.text);
        *by_status.entry(format!("{:?}", e.status).to_lowercase()).or_default() += 1;
        if e.status == Status::Affirmed {
            for at in &e.attributes {
                *freq.entry(at.clone()).or_default() += 1;
            }
            if !e.attributes.is_empty() {
                positive_with_attributes += 1;
            }
        }
        writeln!(lines, "{}", json!({ "id": r.id, "status": e.status, "attributes": e.attributes, "spans": e.spans, "mentions": e.mentions, "empty": r.text.trim().is_empty() }))?;
    }
    crate::weights::write_atomic(&a.out, &lines)?;
    let mut freq_sorted: Vec<(String, usize)> = freq.into_iter().collect();
    freq_sorted.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    Ok(json!({
        "reports": reports.len(), "status": by_status, "pneumonia_affirmed_with_attributes": positive_with_attributes,
        "attribute_frequencies_affirmed": freq_sorted.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "skipped_files": notes.skipped, "not_utf8_files": notes.not_utf8, "out": a.out,
    }))
}

#[derive(clap::Args, Debug)]
pub struct Word2vecArgs {
    /// Reports (as for extract) or a plain-text corpus file.
    #[arg(long)]
    pub corpus: PathBuf,
    #[arg(long, default_value = "w2v.safetensors")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 200)]
    pub dim: usize,
    #[arg(long, default_value_t = 5)]
    pub window: usize,
    #[arg(long, default_value_t = 5)]
    pub negative: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub sample: f64,
    #[arg(long, default_value_t = 5)]
    pub min_count: u64,
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    #[arg(long, default_value_t = 0.025)]
    pub alpha: f32,
    /// CPU threads (default: all).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Look for each attribute's negative among the attributes only (default: the whole vocabulary).
    #[arg(long)]
    pub negatives_within_attributes: bool,
    #[arg(long)]
    pub attributes: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the tokenised corpus (one sentence per line) to this file,
    /// e.g. to train gensim or word2vec.c on exactly the same words.
    #[arg(long)]
    pub dump_corpus: Option<PathBuf>,
}

pub fn word2vec(device: &Device, a: &Word2vecArgs) -> Result<serde_json::Value> {
    let vocab = Vocabulary::load(a.attributes.as_deref())?;
    let reports = read_corpus_reports(&a.corpus)?;
    let sents: Vec<Vec<String>> = reports.iter().flat_map(|r| corpus_sentences(&r.full)).collect();
    if sents.is_empty() {
        bail!("{}: no text to train on", a.corpus.display());
    }
    if let Some(p) = &a.dump_corpus {
        let text: String = sents.iter().map(|s| s.join(" ") + "\n").collect();
        crate::weights::write_atomic(p, text.as_bytes())?;
    }
    let corpus = Corpus::build(&sents, a.min_count).with_context(|| format!("corpus {}", a.corpus.display()))?;
    let cfg = W2vConfig {
        dim: a.dim, window: a.window, negative: a.negative, sample: a.sample, min_count: a.min_count, epochs: a.epochs,
        alpha: a.alpha, min_alpha: 1e-4, threads: a.threads.unwrap_or_else(rayon::current_num_threads), seed: a.seed,
    };
    let total = cfg.epochs as u64 * corpus.total_words;
    let bar = crate::progress::bar(total, "words");
    let progress = |done: u64| bar.set_position(done.min(total));
    let t0 = std::time::Instant::now();
    let (vectors, curve) = match device {
        Device::Cuda(cu) => train_batched(&corpus, &cfg, cu, &progress)?,
        Device::Cpu(_) => train_cpu(&corpus, &cfg, &progress)?,
    };
    let secs = t0.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let negatives = vectors.negatives(&vocab, cfg.min_count, a.negatives_within_attributes);
    vectors.save(&a.out, &cfg, &vocab, &negatives)?;
    Ok(json!({
        "reports": reports.len(), "words": corpus.total_words, "vocabulary": corpus.words.len(), "epochs": cfg.epochs,
        "seconds": secs, "words_per_second": total as f64 / secs, "device": device.name(), "threads": cfg.threads,
        "loss_first": curve.first().map(|p| p.1), "loss_last": curve.last().map(|p| p.1), "negatives": negatives, "out": a.out,
    }))
}

#[derive(clap::Args, Debug)]
pub struct NeighboursArgs {
    /// Vectors from `engine text word2vec`.
    #[arg(long)]
    pub vectors: PathBuf,
    pub word: String,
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
}

pub fn neighbours(a: &NeighboursArgs) -> Result<Vec<(String, f32)>> {
    let (v, _) = Vectors::load(&a.vectors)?;
    let w = a.word.to_lowercase();
    let i = v.index(&w).with_context(|| format!("{w:?} is not in the vocabulary of {} ({} words)", a.vectors.display(), v.words.len()))?;
    Ok(v.nearest(&v.row(i).to_vec(), a.k, &|x| x == w))
}
