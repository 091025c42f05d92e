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
