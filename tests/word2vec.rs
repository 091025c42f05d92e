//! word2vec on the 3,955 OpenI reports gives sensible neighbours: among the
//! 22 attributes, left and right are each other's nearest, and so are upper
//! and lower (one thread, fixed seed: deterministic). Skips when the data
//! folder is absent.

use engine::text::vocab::Vocabulary;
use engine::text::word2vec::{corpus_from_reports, train_cpu, Vectors, W2vConfig};
use std::path::PathBuf;

fn nearest_attribute(v: &Vectors, vocab: &Vocabulary, name: &str) -> String {
    let a = v.attribute_vector(vocab, name).unwrap();
    vocab.names.iter().filter(|n| *n != name).filter_map(|n| v.attribute_vector(vocab, n).map(|b| (n.clone(), Vectors::cosine(&a, &b))))
        .max_by(|x, y| x.1.total_cmp(&y.1)).unwrap().0
}

#[test]
fn openi_vectors_pair_left_right_and_upper_lower() {
    let tgz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/openi/NLMCXR_reports.tgz");
    if !tgz.is_file() {
        eprintln!("SKIPPED: {} not found", tgz.display());
        return;
    }
    let (corpus, reports) = corpus_from_reports(&tgz, 5).unwrap();
    assert_eq!(reports, 3955);
    let cfg = W2vConfig { threads: 1, seed: 4, ..Default::default() };
    let t0 = std::time::Instant::now();
    let (v, curve) = train_cpu(&corpus, &cfg, &|_| {}).unwrap();
    println!("{} words, vocabulary {}, {:.0} words/s", corpus.total_words, corpus.words.len(), (cfg.epochs as u64 * corpus.total_words) as f64 / t0.elapsed().as_secs_f64());
    // the loss falls
    let (first, last) = (curve.first().unwrap().1, curve.last().unwrap().1);
    assert!(last < 0.8 * first, "loss {first} -> {last}");
    let vocab = Vocabulary::default_set();
    for (a, b) in [("left", "right"), ("right", "left"), ("upper", "lower"), ("lower", "upper")] {
        assert_eq!(nearest_attribute(&v, &vocab, a), b, "nearest attribute of {a}");
    }
    let neg = v.negatives(&vocab, 5, false);
    println!("negatives: {neg:?}");
    assert_eq!(neg["left"], "right");
    assert_eq!(neg["right"], "left");
}

/// The CPU reference of the `word2vec_sgns` op: one positive pair from zero
/// output vectors gives p = 0.5 (loss ln 2) and moves only the output row;
/// the second call then also moves the context row, by the updated output.
#[test]
fn word2vec_sgns_op_applies_the_sgns_update() {
    use engine::backend::prelude::*;
    let b = engine::Cpu::<f64>::new();
    let (dim, alpha) = (4, 0.1);
    let ctx = [0.1, -0.2, 0.3, 0.05];
    let mut syn0 = b.upload_f64(&[ctx.to_vec(), vec![0.0; 8]].concat()).unwrap();
    let mut syn1 = b.zeros(12).unwrap();
    let (pairs, table) = (b.upload_ids(&[0, 1]).unwrap(), b.upload_ids(&[2]).unwrap());
    let loss = b.word2vec_sgns(&mut syn0, &mut syn1, &pairs, &table, dim, 0, alpha as f32, 7).unwrap();
    assert!((loss - 2f64.ln()).abs() < 1e-12, "{loss}");
    let g = 0.5 * alpha as f32 as f64;
    let s1 = b.download_f64(&syn1).unwrap();
    for i in 0..dim {
        assert!((s1[dim + i] - g * ctx[i]).abs() < 1e-12 && s1[i] == 0.0 && s1[2 * dim + i] == 0.0);
    }
    assert_eq!(&b.download_f64(&syn0).unwrap()[..dim], &ctx[..], "the context moves by the old (zero) output vector");
    let loss2 = b.word2vec_sgns(&mut syn0, &mut syn1, &pairs, &table, dim, 0, alpha as f32, 7).unwrap();
    let f: f64 = ctx.iter().map(|c| g * c * c).sum();
    let p = 1.0 / (1.0 + (-f).exp());
    assert!((loss2 + p.ln()).abs() < 1e-12, "{loss2}");
    let s0 = b.download_f64(&syn0).unwrap();
    for i in 0..dim {
        assert!((s0[i] - (ctx[i] + (1.0 - p) * alpha as f32 as f64 * g * ctx[i])).abs() < 1e-12);
    }
    // negatives come from the table (here word 2 only): its output row moves away from the context
    b.word2vec_sgns(&mut syn0, &mut syn1, &pairs, &table, dim, 3, alpha as f32, 7).unwrap();
    assert!(b.download_f64(&syn1).unwrap()[2 * dim..].iter().zip(&ctx).all(|(o, c)| o * c < 0.0));
    // a word id outside the vocabulary is an error, not a panic
    assert!(b.word2vec_sgns(&mut syn0, &mut syn1, &b.upload_ids(&[0, 9]).unwrap(), &table, dim, 0, 0.1, 7).is_err());
}

/// The batched trainer (the GPU's) through the CPU's op: the loss falls.
#[test]
fn batched_word2vec_on_the_cpu_lowers_the_loss() {
    use engine::text::word2vec::{corpus_sentences, train_batched, Corpus};
    let mut rng = engine::rng::Rng::new(3);
    let sents: Vec<Vec<String>> = (0..300)
        .flat_map(|i| corpus_sentences(&engine::data::synth::phantom(&mut rng, format!("p{i}"), 32, i % 5 != 0).report))
        .collect();
    let corpus = Corpus::build(&sents, 5).unwrap();
    let cfg = W2vConfig { dim: 16, epochs: 5, threads: 1, seed: 2, ..Default::default() };
    let (v, curve) = train_batched(&corpus, &cfg, &engine::Cpu::<f32>::new(), &|_| {}).unwrap();
    assert_eq!(v.data.len(), corpus.words.len() * 16);
    let (first, last) = (curve.first().unwrap().1, curve.last().unwrap().1);
    assert!(last < 0.8 * first, "loss {first} -> {last}");
}
