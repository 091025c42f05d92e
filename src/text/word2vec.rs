//! word2vec skip-gram with negative sampling (SPEC 2.6, after word2vec.c):
//! frequency subsampling, dynamic window, a unigram^0.75 noise table, a
//! learning rate decaying linearly with the words processed, and Hogwild
//! threads on the CPU (the shared weights are read and written with relaxed
//! atomics; the arithmetic runs on thread-local copies). The CUDA backend
//! runs the same updates as a kernel over batches of (context, target)
//! pairs (`cuda/word2vec.cu`). Vectors are saved as safetensors with the
//! vocabulary, and each attribute's nearest word as its negative (SPEC 2.7).

use super::tokenize::{clean, sentences, tokens};
use super::vocab::Vocabulary;
use crate::backend::cpu::sigmoid;
use crate::backend::Backend;
use anyhow::{bail, ensure, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct W2vConfig {
    pub dim: usize,
    pub window: usize,
    pub negative: usize,
    pub sample: f64,
    pub min_count: u64,
    pub epochs: usize,
    pub alpha: f32,
    pub min_alpha: f32,
    pub threads: usize,
    pub seed: u64,
}

impl Default for W2vConfig {
    fn default() -> Self {
        W2vConfig { dim: 200, window: 5, negative: 5, sample: 1e-3, min_count: 5, epochs: 5, alpha: 0.025, min_alpha: 1e-4, threads: 2, seed: 1 }
    }
}

/// Word ids of every sentence, with the vocabulary (by descending count).
pub struct Corpus {
    pub words: Vec<String>,
    pub counts: Vec<u64>,
    pub sentences: Vec<Vec<u32>>,
    pub total_words: u64,
}

/// Words of a text for the corpus: line by line (a corpus file has one
/// sentence per line), cleaned, split in sentences, tokens without punctuation.
pub fn corpus_sentences(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .flat_map(|line| sentences(&clean(line)))
        .map(|s| tokens(&s).into_iter().filter(|t| t.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect()
}

impl Corpus {
    pub fn build(sents: &[Vec<String>], min_count: u64) -> Result<Self> {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for s in sents {
            for w in s {
                *counts.entry(w.as_str()).or_default() += 1;
            }
        }
        let mut vocab: Vec<(&str, u64)> = counts.into_iter().filter(|&(_, c)| c >= min_count).collect();
        vocab.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        ensure!(!vocab.is_empty(), "the corpus has no word seen at least {min_count} times");
        let index: HashMap<&str, u32> = vocab.iter().enumerate().map(|(i, (w, _))| (*w, i as u32)).collect();
        let sentences: Vec<Vec<u32>> = sents.iter().map(|s| s.iter().filter_map(|w| index.get(w.as_str()).copied()).collect::<Vec<_>>()).filter(|s: &Vec<u32>| !s.is_empty()).collect();
        let total_words = sentences.iter().map(|s| s.len() as u64).sum();
        Ok(Corpus { words: vocab.iter().map(|(w, _)| w.to_string()).collect(), counts: vocab.iter().map(|(_, c)| *c).collect(), sentences, total_words })
    }

    /// Probability of keeping one occurrence of word `w` (word2vec.c's rule).
    pub fn keep_probability(&self, w: usize, sample: f64) -> f64 {
        if sample <= 0.0 {
            return 1.0;
        }
        let f = self.counts[w] as f64 / self.total_words as f64;
        (((f / sample).sqrt() + 1.0) * sample / f).min(1.0)
    }

    /// Noise table: word ids in proportion to count^0.75.
    pub fn noise_table(&self) -> Vec<u32> {
        // about 1,000 slots per word (word2vec.c: 1e8 in all), small enough to stay in cache
        let size = (self.words.len() * 1000).clamp(100_000, 100_000_000);
        let pow: Vec<f64> = self.counts.iter().map(|&c| (c as f64).powf(0.75)).collect();
        let total: f64 = pow.iter().sum();
        let mut table = Vec::with_capacity(size);
        let (mut i, mut cum) = (0usize, pow[0] / total);
        for a in 0..size {
            table.push(i as u32);
            if a as f64 / size as f64 > cum && i + 1 < pow.len() {
                i += 1;
                cum += pow[i] / total;
            }
        }
        table
    }
}

/// word2vec.c's generator (per thread).
#[derive(Clone)]
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(25_214_903_917).wrapping_add(11);
        self.0
    }
    pub fn uniform(&mut self) -> f64 {
        (self.next() & 0xFFFF) as f64 / 65536.0
    }
}

/// The (context, centre) pairs of one sentence after subsampling and the
/// dynamic window, appended to `out` (used by both backends).
pub fn sentence_pairs(sent: &[u32], cfg: &W2vConfig, keep: &[f64], rng: &mut Lcg, out: &mut Vec<(u32, u32)>) -> usize {
    let kept: Vec<u32> = sent.iter().copied().filter(|&w| keep[w as usize] >= 1.0 || keep[w as usize] >= rng.uniform()).collect();
    for (pos, &word) in kept.iter().enumerate() {
        let b = (rng.next() % cfg.window as u64) as usize;
        let radius = cfg.window - b;
        for ctx in pos.saturating_sub(radius)..(pos + radius + 1).min(kept.len()) {
            if ctx != pos {
                out.push((kept[ctx], word));
            }
        }
    }
    sent.len()
}

pub const MAX_EXP: f32 = 6.0;

/// Dot product with 8 independent partial sums, so that it vectorises (a
/// plain `sum()` must add in order and runs one element at a time).
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}


/// Trained input vectors (syn0) with their words.
pub struct Vectors {
    pub words: Vec<String>,
    pub counts: Vec<u64>,
    pub dim: usize,
    pub data: Vec<f32>,
}

/// A loss curve point: words processed, mean loss per (context, target) pair since the last point.
pub type LossPoint = (u64, f64);

fn load(v: &[AtomicU32], dst: &mut [f32]) {
    for (d, a) in dst.iter_mut().zip(v) {
        *d = f32::from_bits(a.load(Ordering::Relaxed));
    }
}

fn store(v: &[AtomicU32], src: &[f32]) {
    for (a, s) in v.iter().zip(src) {
        a.store(s.to_bits(), Ordering::Relaxed);
    }
}

/// Initial weights: syn0 uniform in (-0.5/d, 0.5/d), syn1neg zero.
pub fn init_weights(vocab: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Lcg(seed);
    let syn0 = (0..vocab * dim).map(|_| ((rng.next() & 0xFFFF) as f32 / 65536.0 - 0.5) / dim as f32).collect();
    (syn0, vec![0.0; vocab * dim])
}

/// The learning rate after `done` of `total` words (linear decay, floor min_alpha).
pub fn alpha_at(cfg: &W2vConfig, done: u64, total: u64) -> f32 {
    (cfg.alpha * (1.0 - done as f32 / (total as f32 + 1.0))).max(cfg.min_alpha)
}

/// Multi-threaded CPU training. `progress(words_done)` is called as it goes.
pub fn train_cpu(c: &Corpus, cfg: &W2vConfig, progress: &(dyn Fn(u64) + Sync)) -> Result<(Vectors, Vec<LossPoint>)> {
    let (v, d) = (c.words.len(), cfg.dim);
    ensure!(d > 0 && cfg.window > 0 && cfg.epochs > 0, "word2vec: dim, window and epochs must be positive");
    let (s0, s1) = init_weights(v, d, cfg.seed);
    let syn0: Vec<AtomicU32> = s0.into_iter().map(|x| AtomicU32::new(x.to_bits())).collect();
    let syn1: Vec<AtomicU32> = s1.into_iter().map(|x| AtomicU32::new(x.to_bits())).collect();
    let table = c.noise_table();
    let keep: Vec<f64> = (0..v).map(|w| c.keep_probability(w, cfg.sample)).collect();
    let total = cfg.epochs as u64 * c.total_words;
    let done = AtomicU64::new(0);
    let curve = std::sync::Mutex::new(Vec::new());
    let threads = cfg.threads.max(1);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (syn0, syn1, table, keep, done, curve) = (&syn0, &syn1, &table, &keep, &done, &curve);
            scope.spawn(move || {
                let mut rng = Lcg(cfg.seed.wrapping_add(t as u64 * 7919));
                let (mut ctx, mut out, mut neu1e) = (vec![0f32; d], vec![0f32; d], vec![0f32; d]);
                let mut pairs = Vec::new();
                let row = |i: u32| i as usize * d..(i as usize + 1) * d;
                let (mut loss, mut n_loss, mut local_words) = (0f64, 0u64, 0u64);
                for _epoch in 0..cfg.epochs {
                    for sent in c.sentences.iter().skip(t).step_by(threads) {
                        pairs.clear();
                        local_words += sentence_pairs(sent, cfg, keep, &mut rng, &mut pairs) as u64;
                        let alpha = alpha_at(cfg, done.load(Ordering::Relaxed), total);
                        for &(context, word) in &pairs {
                            load(&syn0[row(context)], &mut ctx);
                            neu1e.iter_mut().for_each(|x| *x = 0.0);
                            for k in 0..=cfg.negative {
                                let (target, label) = if k == 0 {
                                    (word, 1.0f32)
                                } else {
                                    let t = table[(rng.next() >> 16) as usize % table.len()];
                                    if t == word {
                                        continue;
                                    }
                                    (t, 0.0)
                                };
                                load(&syn1[row(target)], &mut out);
                                let f = dot8(&ctx, &out);
                                let p = if f > MAX_EXP { 1.0 } else if f < -MAX_EXP { 0.0 } else { sigmoid(f) };
                                loss -= (if label > 0.0 { p } else { 1.0 - p }).max(1e-7).ln() as f64;
                                n_loss += 1;
                                let g = (label - p) * alpha;
                                for i in 0..d {
                                    neu1e[i] += g * out[i];
                                    out[i] += g * ctx[i];
                                }
                                store(&syn1[row(target)], &out);
                            }
                            for i in 0..d {
                                ctx[i] += neu1e[i];
                            }
                            store(&syn0[row(context)], &ctx);
                        }
                        if local_words >= 10_000 {
                            let now = done.fetch_add(local_words, Ordering::Relaxed) + local_words;
                            curve.lock().unwrap().push((now, loss / n_loss.max(1) as f64));
                            (loss, n_loss, local_words) = (0.0, 0, 0);
                            progress(now);
                        }
                    }
                }
                let now = done.fetch_add(local_words, Ordering::Relaxed) + local_words;
                if n_loss > 0 {
                    curve.lock().unwrap().push((now, loss / n_loss as f64));
                }
                progress(now);
            });
        }
    });
    let mut curve = curve.into_inner().unwrap();
    curve.sort_by_key(|p| p.0);
    let data = syn0.iter().map(|a| f32::from_bits(a.load(Ordering::Relaxed))).collect();
    Ok((Vectors { words: c.words.clone(), counts: c.counts.clone(), dim: d, data }, curve))
}

/// Training through the backend's `word2vec_sgns` (the GPU's trainer): the
/// host makes the (context, centre) pairs of about 1,000 words at a time
/// (subsampling, dynamic window), the backend applies their updates (on CUDA
/// in parallel, added atomically: a small minibatch); the learning rate
/// decays per batch. Larger batches stall: every pair of a launch reads the
/// same, not yet updated vectors.
pub fn train_batched<B: Backend>(c: &Corpus, cfg: &W2vConfig, b: &B, progress: &(dyn Fn(u64) + Sync)) -> Result<(Vectors, Vec<LossPoint>)> {
    let (v, d) = (c.words.len(), cfg.dim);
    ensure!(d > 0 && cfg.window > 0 && cfg.epochs > 0, "word2vec: dim, window and epochs must be positive");
    let (s0, s1) = init_weights(v, d, cfg.seed);
    let (mut syn0, mut syn1) = (b.upload(&s0)?, b.upload(&s1)?);
    let table = b.upload_ids(&c.noise_table())?;
    let keep: Vec<f64> = (0..v).map(|w| c.keep_probability(w, cfg.sample)).collect();
    let total = cfg.epochs as u64 * c.total_words;
    let mut rng = Lcg(cfg.seed);
    let (mut done, mut batch_words, mut launches) = (0u64, 0u64, 0u64);
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    let mut curve = Vec::new();
    // loss summed over launches until 10,000 words, like the CPU's curve
    let (mut loss_sum, mut loss_n, mut since) = (0f64, 0usize, 0u64);
    let mut flush = |pairs: &mut Vec<(u32, u32)>, words: u64, done: &mut u64, launches: &mut u64, last: bool| -> Result<()> {
        if !pairs.is_empty() {
            let flat: Vec<u32> = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
            let dp = b.upload_ids(&flat)?;
            let alpha = alpha_at(cfg, *done, total);
            loss_sum += b.word2vec_sgns(&mut syn0, &mut syn1, &dp, &table, d, cfg.negative, alpha, cfg.seed ^ *launches)?;
            loss_n += pairs.len() * (cfg.negative + 1);
            *launches += 1;
        }
        *done += words;
        since += words;
        if (since >= 10_000 || last) && loss_n > 0 {
            curve.push((*done, loss_sum / loss_n as f64));
            (loss_sum, loss_n, since) = (0.0, 0, 0);
            progress(*done);
        }
        pairs.clear();
        Ok(())
    };
    for _epoch in 0..cfg.epochs {
        for sent in &c.sentences {
            batch_words += sentence_pairs(sent, cfg, &keep, &mut rng, &mut pairs) as u64;
            if batch_words >= 1_000 {
                flush(&mut pairs, batch_words, &mut done, &mut launches, false)?;
                batch_words = 0;
            }
        }
    }
    flush(&mut pairs, batch_words, &mut done, &mut launches, true)?;
    let data = b.download(&syn0)?;
    Ok((Vectors { words: c.words.clone(), counts: c.counts.clone(), dim: d, data }, curve))
}

impl Vectors {
    pub fn index(&self, word: &str) -> Option<usize> {
        self.words.iter().position(|w| w == word)
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (na * nb).max(1e-12)
    }

    /// The `k` nearest words of a vector by cosine, skipping `exclude`.
    pub fn nearest(&self, v: &[f32], k: usize, exclude: &dyn Fn(&str) -> bool) -> Vec<(String, f32)> {
        let mut all: Vec<(usize, f32)> = (0..self.words.len()).filter(|&i| !exclude(&self.words[i])).map(|i| (i, Self::cosine(v, self.row(i)))).collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.into_iter().take(k).map(|(i, c)| (self.words[i].clone(), c)).collect()
    }

    /// An attribute's vector: its canonical word's, or the mean of its
    /// surface forms' when the canonical word is rare or absent.
    pub fn attribute_vector(&self, vocab: &Vocabulary, name: &str) -> Option<Vec<f32>> {
        if let Some(i) = self.index(name) {
            return Some(self.row(i).to_vec());
        }
        let rows: Vec<&[f32]> = vocab.forms_of(name).iter().filter_map(|f| self.index(f)).map(|i| self.row(i)).collect();
        if rows.is_empty() {
            return None;
        }
        Some((0..self.dim).map(|j| rows.iter().map(|r| r[j]).sum::<f32>() / rows.len() as f32).collect())
    }

    /// SPEC 2.7: each attribute's nearest word that is not one of its own
    /// forms, alphabetic, seen at least `min_count` times (`within`: search
    /// only the attribute names).
    pub fn negatives(&self, vocab: &Vocabulary, min_count: u64, within_attributes: bool) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for name in &vocab.names {
            let Some(v) = self.attribute_vector(vocab, name) else { continue };
            let own: Vec<&str> = vocab.forms.iter().filter(|(_, a)| a.contains(name)).map(|(f, _)| f.as_str()).collect();
            let skip = |w: &str| {
                w == name || own.contains(&w) || !w.chars().all(|c| c.is_ascii_alphabetic())
                    || self.index(w).is_none_or(|i| self.counts[i] < min_count)
                    || (within_attributes && !vocab.names.iter().any(|n| n == w))
            };
            if let Some((w, _)) = self.nearest(&v, 1, &skip).into_iter().next() {
                out.insert(name.clone(), w);
            }
        }
        out
    }

    /// Saves vectors, vocabulary, configuration, attribute and negative vectors.
    pub fn save(&self, path: &std::path::Path, cfg: &W2vConfig, vocab: &Vocabulary, negatives: &BTreeMap<String, String>) -> Result<()> {
        let mut tensors = vec![("vectors".to_string(), vec![self.words.len(), self.dim], self.data.clone())];
        let (mut names, mut attr, mut neg) = (Vec::new(), Vec::new(), Vec::new());
        for name in &vocab.names {
            let (Some(a), Some(nw)) = (self.attribute_vector(vocab, name), negatives.get(name)) else { continue };
            let n = self.row(self.index(nw).expect("negatives are vocabulary words")).to_vec();
            names.push(name.clone());
            attr.extend(a);
            neg.extend(n);
        }
        if !names.is_empty() {
            tensors.push(("attribute_vectors".to_string(), vec![names.len(), self.dim], attr));
            tensors.push(("negative_vectors".to_string(), vec![names.len(), self.dim], neg));
        }
        let mut meta = BTreeMap::new();
        meta.insert("vocab".to_string(), serde_json::to_string(&self.words)?);
        meta.insert("counts".to_string(), serde_json::to_string(&self.counts)?);
        meta.insert("config".to_string(), serde_json::to_string(cfg)?);
        meta.insert("attributes".to_string(), serde_json::to_string(&names)?);
        meta.insert("negatives".to_string(), serde_json::to_string(negatives)?);
        crate::weights::write(path, &tensors, crate::weights::StoreDtype::F32, &meta)
    }

    pub fn load(path: &std::path::Path) -> Result<(Self, crate::weights::TensorFile)> {
        let f = crate::weights::read(path)?;
        let t = f.get("vectors")?;
        ensure!(t.shape.len() == 2, "{}: vectors must be [words, dim], got {:?}", path.display(), t.shape);
        let words: Vec<String> = f.meta("vocab")?;
        let counts: Vec<u64> = f.meta("counts").unwrap_or_else(|_| vec![0; words.len()]);
        if words.len() != t.shape[0] {
            bail!("{}: {} words for {} vectors", path.display(), words.len(), t.shape[0]);
        }
        Ok((Vectors { words, counts, dim: t.shape[1], data: t.data.clone() }, f))
    }
}

/// Reads the corpus of a reports path (every section of every report).
pub fn corpus_from_reports(path: &std::path::Path, min_count: u64) -> Result<(Corpus, usize)> {
    let reports = super::reports::read_corpus_reports(path)?;
    let sents: Vec<Vec<String>> = reports.iter().flat_map(|r| corpus_sentences(&r.full)).collect();
    let c = Corpus::build(&sents, min_count).with_context(|| format!("corpus {}", path.display()))?;
    Ok((c, reports.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_keep_probabilities() {
        // SPEC section 7: with t = 1e-3, f = 0.0026 -> 1.0, f = 0.00746 -> about 0.5, f = 1 -> about 0.033
        let c = |count: u64, total: u64| Corpus { words: vec!["a".into()], counts: vec![count], sentences: vec![], total_words: total };
        assert_eq!(c(26, 10_000).keep_probability(0, 1e-3), 1.0);
        assert!((c(746, 100_000).keep_probability(0, 1e-3) - 0.5).abs() < 0.01);
        assert!((c(1000, 1000).keep_probability(0, 1e-3) - 0.0326).abs() < 0.001);
    }
}
