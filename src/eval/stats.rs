//! Statistics of the severity evaluation (SPEC 5.5): Pearson and Spearman
//! correlations with their two-sided p-values (Student's t with n - 2
//! degrees of freedom, from `statrs`, as scipy computes them), the
//! least-squares line, R² / MAE / MSE as sklearn defines them, and splits
//! grouped by patient (k folds, or a random share) that are seeded.

use super::metrics::mean;
use crate::rng::Rng;
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Pearson's r (NaN when either side is constant or n < 2).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if x.len() < 2 || sxx == 0.0 || syy == 0.0 { f64::NAN } else { (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0) }
}

/// 1-based ranks, ties given their average rank (scipy's `rankdata`).
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        for &k in &idx[i..=j] {
            out[k] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    out
}

/// Spearman's rho: Pearson's r of the ranks.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

/// Two-sided p-value of a correlation `r` over `n` pairs: t = r sqrt((n - 2) / (1 - r²)).
pub fn correlation_p_value(r: f64, n: usize) -> f64 {
    if n < 3 || !r.is_finite() {
        return f64::NAN;
    }
    if r.abs() >= 1.0 {
        return 0.0;
    }
    let df = (n - 2) as f64;
    let t = r * (df / (1.0 - r * r)).sqrt();
    match StudentsT::new(0.0, 1.0, df) {
        Ok(d) => 2.0 * d.cdf(-t.abs()),
        Err(_) => f64::NAN,
    }
}

/// Least-squares line y = a x + b.
pub fn linear_fit(x: &[f64], y: &[f64]) -> (f64, f64) {
    let (mx, my) = (mean(x), mean(y));
    let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let a = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (a, my - a * mx)
}

/// sklearn's `r2_score`: 1 - SS_res / SS_tot.
pub fn r2(y: &[f64], pred: &[f64]) -> f64 {
    let my = mean(y);
    let res: f64 = y.iter().zip(pred).map(|(a, p)| (a - p) * (a - p)).sum();
    let tot: f64 = y.iter().map(|a| (a - my) * (a - my)).sum();
    if tot > 0.0 { 1.0 - res / tot } else { f64::NAN }
}

pub fn mae(y: &[f64], pred: &[f64]) -> f64 {
    mean(&y.iter().zip(pred).map(|(a, p)| (a - p).abs()).collect::<Vec<_>>())
}

pub fn mse(y: &[f64], pred: &[f64]) -> f64 {
    mean(&y.iter().zip(pred).map(|(a, p)| (a - p) * (a - p)).collect::<Vec<_>>())
}

/// The distinct groups in a seeded random order.
fn shuffled_groups(groups: &[String], seed: u64) -> Vec<String> {
    let mut g: Vec<String> = groups.to_vec();
    g.sort();
    g.dedup();
    let mut rng = Rng::new(seed);
    rng.shuffle(&mut g);
    g
}

/// The fold (0..k) of each item: the groups, shuffled with `seed`, each go
/// whole to the fold that holds the fewest items so far, so no group is in
/// two folds and the folds are as even as the groups allow.
pub fn group_kfold(groups: &[String], k: usize, seed: u64) -> Vec<usize> {
    let mut size = vec![0usize; k.max(1)];
    let mut fold_of = std::collections::HashMap::new();
    for g in shuffled_groups(groups, seed) {
        let n = groups.iter().filter(|x| **x == g).count();
        let f = (0..size.len()).min_by_key(|&f| (size[f], f)).unwrap_or(0);
        size[f] += n;
        fold_of.insert(g, f);
    }
    groups.iter().map(|g| fold_of[g]).collect()
}

/// Whether each item is in the test half of a random split by group
/// (sklearn's GroupShuffleSplit: ceil(share x groups) groups are test).
pub fn group_shuffle_split(groups: &[String], test_share: f64, seed: u64) -> Vec<bool> {
    let order = shuffled_groups(groups, seed);
    let n_test = ((order.len() as f64 * test_share).ceil() as usize).min(order.len());
    let test: std::collections::HashSet<&String> = order[..n_test].iter().collect();
    groups.iter().map(|g| test.contains(g)).collect()
}
