//! The severity statistics against scipy / sklearn. The literals come from:
//!
//! ```python
//! import numpy as np
//! from scipy import stats
//! from sklearn.metrics import r2_score, mean_absolute_error, mean_squared_error
//! x = np.array([0.1, 0.4, 0.4, 0.7, 0.2, 0.9, 0.4, 0.05])
//! y = np.array([1.0, 3.0, 2.5, 6.0, 1.0, 7.5, 2.0, 1.0])
//! stats.pearsonr(x, y)   # 0.9667577351084672, p 8.95613613239261e-05
//! stats.spearmanr(x, y)  # 0.95, p 0.0003008984375000009 (ties in x and in y)
//! a, b = np.polyfit(x, y, 1)  # 8.189973614775726, -0.22480211081794224
//! pred = a * x + b  # r2 0.9346205183920534, MAE 0.516688654353562, MSE 0.34732849604221644
//! pred2 = np.array([1.5, 2.0, 2.0, 5.0, 1.0, 9.0, 3.0, 0.0])  # r2 0.8411764705882353, MAE 0.8125, MSE 0.84375
//! stats.rankdata(x)  # [2, 5, 5, 7, 3, 8, 5, 1]
//! ```

use engine::eval::stats::*;

const X: [f64; 8] = [0.1, 0.4, 0.4, 0.7, 0.2, 0.9, 0.4, 0.05];
const Y: [f64; 8] = [1.0, 3.0, 2.5, 6.0, 1.0, 7.5, 2.0, 1.0];

fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol * b.abs().max(1e-300), "{a} vs {b}");
}

#[test]
fn correlations_and_p_values_as_scipy() {
    close(pearson(&X, &Y), 0.9667577351084672, 1e-12);
    close(correlation_p_value(pearson(&X, &Y), 8), 8.95613613239261e-05, 1e-6);
    assert_eq!(ranks(&X), vec![2.0, 5.0, 5.0, 7.0, 3.0, 8.0, 5.0, 1.0]);
    close(spearman(&X, &Y), 0.95, 1e-12);
    close(correlation_p_value(spearman(&X, &Y), 8), 0.0003008984375000009, 1e-6);
    // a negative correlation has the same p-value; a constant side has no r
    close(correlation_p_value(-0.95, 8), 0.0003008984375000009, 1e-6);
    assert!(pearson(&X, &[2.0; 8]).is_nan());
}

#[test]
fn line_r2_mae_mse_as_sklearn() {
    let (a, b) = linear_fit(&X, &Y);
    close(a, 8.189973614775726, 1e-10);
    close(b, -0.22480211081794224, 1e-9);
    let pred: Vec<f64> = X.iter().map(|x| a * x + b).collect();
    close(r2(&Y, &pred), 0.9346205183920534, 1e-10);
    close(mae(&Y, &pred), 0.516688654353562, 1e-10);
    close(mse(&Y, &pred), 0.34732849604221644, 1e-10);
    let pred2 = [1.5, 2.0, 2.0, 5.0, 1.0, 9.0, 3.0, 0.0];
    close(r2(&Y, &pred2), 0.8411764705882353, 1e-12);
    close(mae(&Y, &pred2), 0.8125, 1e-12);
    close(mse(&Y, &pred2), 0.84375, 1e-12);
}

#[test]
fn grouped_folds_keep_patients_together_and_are_seeded() {
    // 40 images of 17 patients, 1 to 4 images each
    let groups: Vec<String> = (0..40).map(|i| format!("p{}", (i * 7) % 17)).collect();
    let folds = group_kfold(&groups, 5, 3);
    assert_eq!(folds, group_kfold(&groups, 5, 3), "the same seed gives the same folds");
    assert_ne!(folds, group_kfold(&groups, 5, 4), "another seed shuffles");
    for g in &groups {
        let f: std::collections::BTreeSet<usize> = groups.iter().zip(&folds).filter(|(x, _)| *x == g).map(|(_, f)| *f).collect();
        assert_eq!(f.len(), 1, "patient {g} is in folds {f:?}");
    }
    let sizes: Vec<usize> = (0..5).map(|f| folds.iter().filter(|&&x| x == f).count()).collect();
    assert!(sizes.iter().all(|&s| (6..=10).contains(&s)), "fold sizes {sizes:?}");
    let test = group_shuffle_split(&groups, 0.5, 1);
    let test_patients: std::collections::BTreeSet<&String> = groups.iter().zip(&test).filter(|(_, t)| **t).map(|(g, _)| g).collect();
    assert_eq!(test_patients.len(), 9, "ceil(0.5 x 17) patients are test");
    assert!(groups.iter().zip(&test).all(|(g, t)| *t == test_patients.contains(g)));
}
