//! `engine eval severity`: the paper's Table 2 on the COVID-19 X-rays with
//! expert severity scores (SPEC 5.5). Features per image: the attention
//! model's attribute probabilities (P(severe), P(mild), any `--attribute`),
//! predicted from the image alone, and a floor any learned feature must
//! beat: the mean intensity inside the lung mask, z-scored against the
//! whole image. For the geographic (0-8) and the opacity (0-6) score:
//! - the paper's protocol: 5-fold cross-validation grouped by patient
//!   (shuffled, seeded); per fold a line y / max = a p + b fitted on four
//!   folds, R², MAE, MSE on the fifth, Pearson and Spearman of (p, y) on it;
//!   mean ± std over folds; p-values of the correlations on all images;
//! - Cohen et al.'s: least squares on the feature, 50 random 50/50 splits by
//!   patient, R², Pearson of (prediction, y), MAE, MSE on the test half (raw
//!   score), mean ± std.
//! Output: a Markdown table, `severity.json`, `per_image.csv`, and a scatter
//! plot per feature and score (Fig. 4); images, masks and score rows that
//! cannot be used are named and counted.

use super::stats::*;
use crate::backend::Backend;
use crate::data::image::{load, Gray};
use crate::data::severity::{read_patients, read_scores, Scores};
use crate::localizer::Localizer;
use anyhow::{ensure, Context, Result};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args, Clone, Debug)]
pub struct SeverityArgs {
    /// Folder of the scored images (named as in the scores file).
    #[arg(long)]
    pub images: PathBuf,
    /// covid-severity-scores.csv (`##` comments, filename, geographic_mean, opacity_mean).
    #[arg(long)]
    pub scores: PathBuf,
    /// The collection's metadata.csv (patientid, filename): folds keep a patient's images together.
    /// Without it every image is its own patient.
    #[arg(long)]
    pub metadata: Option<PathBuf>,
    /// Lung masks named as the images (any image format): adds the lung-brightness floor.
    #[arg(long)]
    pub masks: Option<PathBuf>,
    /// The attention model (model.safetensors of `engine train`).
    #[arg(long)]
    pub attention: Option<PathBuf>,
    /// Attributes whose probability is a feature.
    #[arg(long, default_values_t = ["severe".to_string(), "mild".to_string()])]
    pub attribute: Vec<String>,
    /// Output folder (severity.json, per_image.csv).
    #[arg(long, default_value = "severity")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Random 50/50 patient splits of Cohen et al.'s protocol.
    #[arg(long, default_value_t = 50)]
    pub splits: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Stop on the first image that cannot be read instead of skipping it.
    #[arg(long)]
    pub strict: bool,
}

/// The floor feature name.
pub const LUNG_BRIGHTNESS: &str = "lung brightness (floor)";

/// Mean intensity inside the mask (> half its maximum) minus the image's
/// mean, over the image's standard deviation.
pub fn lung_brightness(img: &Gray, mask: &Gray) -> Result<f64> {
    ensure!((img.width, img.height) == (mask.width, mask.height), "mask is {}x{}, image {}x{}", mask.width, mask.height, img.width, img.height);
    let hi = mask.data.iter().copied().fold(0.0f32, f32::max);
    ensure!(hi > 0.0, "the mask is empty");
    let n = img.data.len() as f64;
    let mean = img.data.iter().map(|&v| v as f64).sum::<f64>() / n;
    let sd = (img.data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    let inside: Vec<f64> = img.data.iter().zip(&mask.data).filter(|(_, &m)| m > hi / 2.0).map(|(&v, _)| v as f64).collect();
    ensure!(sd > 0.0, "the image is constant");
    Ok((inside.iter().sum::<f64>() / inside.len() as f64 - mean) / sd)
}

fn mean_sd(v: &[f64]) -> serde_json::Value {
    let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt();
    json!({ "mean": m, "std": sd, "n": v.len() })
}

/// Both protocols for one feature and one score (`max`: the score's top).
pub fn protocols(x: &[f64], y: &[f64], groups: &[String], max: f64, folds: usize, splits: usize, seed: u64) -> serde_json::Value {
    let fold = group_kfold(groups, folds, seed);
    let (mut r2s, mut maes, mut mses, mut ps, mut ss) = (vec![], vec![], vec![], vec![], vec![]);
    let yn: Vec<f64> = y.iter().map(|v| v / max).collect();
    for f in 0..folds {
        let pick = |test: bool, v: &[f64]| -> Vec<f64> { v.iter().zip(&fold).filter(|(_, &k)| (k == f) == test).map(|(a, _)| *a).collect() };
        let (xt, yt) = (pick(false, x), pick(false, &yn));
        let (xv, yv) = (pick(true, x), pick(true, &yn));
        if xv.is_empty() || xt.len() < 2 {
            continue;
        }
        let (a, b) = linear_fit(&xt, &yt);
        let pred: Vec<f64> = xv.iter().map(|v| a * v + b).collect();
        r2s.push(r2(&yv, &pred));
        maes.push(mae(&yv, &pred));
        mses.push(mse(&yv, &pred));
        ps.push(pearson(&xv, &yv));
        ss.push(spearman(&xv, &yv));
    }
    let (mut cr2, mut cr, mut cmae, mut cmse) = (vec![], vec![], vec![], vec![]);
    for s in 0..splits {
        let test = group_shuffle_split(groups, 0.5, seed.wrapping_add(s as u64 + 1));
        let pick = |t: bool, v: &[f64]| -> Vec<f64> { v.iter().zip(&test).filter(|(_, &k)| k == t).map(|(a, _)| *a).collect() };
        let (a, b) = linear_fit(&pick(false, x), &pick(false, y));
        let (xv, yv) = (pick(true, x), pick(true, y));
        let pred: Vec<f64> = xv.iter().map(|v| a * v + b).collect();
        cr2.push(r2(&yv, &pred));
        cr.push(pearson(&pred, &yv));
        cmae.push(mae(&yv, &pred));
        cmse.push(mse(&yv, &pred));
    }
    let (p, s) = (pearson(x, y), spearman(x, y));
    json!({
        "images": x.len(),
        "all_images": { "pearson": p, "pearson_p": correlation_p_value(p, x.len()), "spearman": s, "spearman_p": correlation_p_value(s, x.len()) },
        "paper_5fold": { "pearson": mean_sd(&ps), "spearman": mean_sd(&ss), "r2": mean_sd(&r2s), "mae": mean_sd(&maes), "mse": mean_sd(&mses), "target": format!("score / {max}") },
        "cohen_50_splits": { "pearson": mean_sd(&cr), "r2": mean_sd(&cr2), "mae": mean_sd(&cmae), "mse": mean_sd(&cmse), "target": "raw score" },
    })
}

/// One image's features (NaN where one could not be computed).
struct Row {
    file: String,
    patient: String,
    scores: Scores,
    features: Vec<f64>,
}

pub fn run<B: Backend>(b: B, a: &SeverityArgs) -> Result<serde_json::Value> {
    crate::ensure_arg!(a.folds >= 2, "--folds {} must be at least 2", a.folds);
    let (scores, mut problems) = read_scores(&a.scores)?;
    let patients = match &a.metadata {
        Some(p) => read_patients(p)?,
        None => Default::default(),
    };
    let loc = a.attention.as_deref().map(|p| Localizer::load_bundle(&b, p)).transpose()?;
    let attr_index: Vec<usize> = match &loc {
        Some(l) => {
            let names = &l.attention()?.meta.attributes;
            a.attribute.iter().map(|n| names.iter().position(|x| x == n).with_context(|| format!("attribute {n:?} is not one of the model's: {}", names.join(", ")))).collect::<Result<_>>()?
        }
        None => Vec::new(),
    };
    let mut names: Vec<String> = if loc.is_some() { a.attribute.iter().map(|n| format!("P({n})")).collect() } else { Vec::new() };
    if a.masks.is_some() {
        names.push(LUNG_BRIGHTNESS.into());
    }
    ensure!(!names.is_empty(), "give --attention, --masks or both");
    let mut items: Vec<(String, PathBuf, Scores)> = Vec::new();
    for (file, s) in &scores {
        let p = a.images.join(file);
        if p.is_file() {
            items.push((file.clone(), p, s.clone()));
        } else {
            problems.push(format!("{}: score row of {file}: no image {}", a.scores.display(), p.display()));
        }
    }
    ensure!(!items.is_empty(), "no image of {} is in {}", a.scores.display(), a.images.display());
    let mut no_patient = 0;
    let (mut rows, mut skipped) = (Vec::new(), Vec::new());
    let bar = crate::progress::bar(items.len() as u64, "images");
    crate::folder::each_batch(&items, |i| i.1.as_path(), a.batch, a.strict, &mut skipped, &mut |k| bar.inc(k as u64), |imgs| {
        let mut probs: Vec<Vec<f64>> = vec![Vec::new(); imgs.len()];
        if let Some(l) = &loc {
            let refs: Vec<(&str, &Gray)> = imgs.iter().map(|(it, g)| (it.0.as_str(), g)).collect();
            let (_, preds) = l.locate(&refs, 0.5, 1)?;
            for (p, pred) in probs.iter_mut().zip(preds) {
                *p = attr_index.iter().map(|&k| pred.probs[k] as f64).collect();
            }
        }
        for ((it, img), mut f) in imgs.into_iter().zip(probs) {
            if let Some(dir) = &a.masks {
                let m = dir.join(&it.0);
                let v = load(&m).and_then(|mask| lung_brightness(&img, &mask)).with_context(|| format!("mask {}", m.display()));
                match v {
                    Ok(v) => f.push(v),
                    Err(e) => {
                        problems.push(format!("{}: {e:#} (no lung-brightness value)", it.0));
                        f.push(f64::NAN);
                    }
                }
            }
            let patient = patients.get(&it.0).cloned().unwrap_or_else(|| {
                no_patient += 1;
                it.0.clone()
            });
            rows.push(Row { file: it.0.clone(), patient, scores: it.2.clone(), features: f });
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    ensure!(rows.len() >= 4, "only {} usable images: too few for the statistics", rows.len());
    if a.metadata.is_some() && no_patient > 0 {
        problems.push(format!("{no_patient} image(s) not in {}: each counted as its own patient", a.metadata.as_ref().map_or(String::new(), |p| p.display().to_string())));
    }
    for p in &problems {
        eprintln!("engine: warning: {p}");
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let (mut results, mut plots) = (Vec::new(), Vec::new());
    for (k, name) in names.iter().enumerate() {
        let ok: Vec<&Row> = rows.iter().filter(|r| r.features[k].is_finite()).collect();
        let x: Vec<f64> = ok.iter().map(|r| r.features[k]).collect();
        let groups: Vec<String> = ok.iter().map(|r| r.patient.clone()).collect();
        let geo: Vec<f64> = ok.iter().map(|r| r.scores.geographic).collect();
        let opa: Vec<f64> = ok.iter().map(|r| r.scores.opacity).collect();
        // the paper's Fig. 4: the feature against the expert score, one PNG per pair
        for (score, y, max) in [("geographic", &geo, 8.0), ("opacity", &opa, 6.0)] {
            let slug: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect::<String>().trim_matches('_').replace("__", "_");
            let path = a.out.join(format!("{slug}_{score}.png"));
            let points: Vec<(f64, f64)> = y.iter().copied().zip(x.iter().copied()).collect();
            let x_label = format!("expert {score} score (0-{max}, mean of 3 raters)");
            super::plot::scatter(&super::plot::Scatter { title: &format!("{name} against the {score} score"), x_label: &x_label, y_label: name,
                x_max: max, points: &points, r: pearson(&x, y) }, &path)?;
            plots.push(path.display().to_string());
        }
        results.push(json!({ "feature": name,
            "geographic": protocols(&x, &geo, &groups, 8.0, a.folds, a.splits, a.seed),
            "opacity": protocols(&x, &opa, &groups, 6.0, a.folds, a.splits, a.seed) }));
    }
    let mut patients_seen: Vec<&String> = rows.iter().map(|r| &r.patient).collect();
    patients_seen.sort();
    patients_seen.dedup();
    let report = json!({
        "images": rows.len(), "patients": patients_seen.len(), "score_rows": scores.len(), "left_out": skipped.len() + problems.len(),
        "skipped_images": skipped, "problems": problems,
        "folds": a.folds, "splits": a.splits, "seed": a.seed, "device": b.name(), "model": a.attention.as_ref().map(|p| p.display().to_string()),
        "features": results, "plots": plots,
    });
    crate::folder::write_json(&a.out.join("severity.json"), &report)?;
    let mut csv = format!("image,patient,geographic_mean,opacity_mean,{}\n", names.join(","));
    for r in &rows {
        let f: Vec<String> = r.features.iter().map(|v| if v.is_finite() { format!("{v:.6}") } else { String::new() }).collect();
        csv += &format!("{},{},{},{},{}\n", r.file, r.patient, r.scores.geographic, r.scores.opacity, f.join(","));
    }
    crate::weights::write_atomic(&a.out.join("per_image.csv"), csv.as_bytes())?;
    Ok(report)
}

/// The report in the layout of the paper's Table 2 (geographic extent), then
/// the opacity score and Cohen et al.'s protocol.
pub fn table(r: &serde_json::Value) -> String {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let ms = |v: &serde_json::Value| format!("{:.3} ± {:.3}", f(&v["mean"]), f(&v["std"]));
    let mut s = format!("{} images of {} patients ({} rows, images or masks left out, named in severity.json); {}-fold cross-validation by patient, mean ± std over folds; p-values on all images\n",
        r["images"], r["patients"], r["left_out"], r["folds"]);
    for score in ["geographic", "opacity"] {
        s += &format!("\n{score} score (target / {}):\n\n| feature | n | Pearson | Spearman | R² | MAE | MSE | Pearson, all images (p) | Spearman, all images (p) |\n|---|---|---|---|---|---|---|---|---|\n",
            if score == "geographic" { 8 } else { 6 });
        for feat in r["features"].as_array().into_iter().flatten() {
            let (p, all) = (&feat[score]["paper_5fold"], &feat[score]["all_images"]);
            s += &format!("| {} | {} | {} | {} | {} | {} | {} | {:.3} ({:.1e}) | {:.3} ({:.1e}) |\n", feat["feature"].as_str().unwrap_or("?"), feat[score]["images"],
                ms(&p["pearson"]), ms(&p["spearman"]), ms(&p["r2"]), ms(&p["mae"]), ms(&p["mse"]), f(&all["pearson"]), f(&all["pearson_p"]), f(&all["spearman"]), f(&all["spearman_p"]));
        }
        if score == "geographic" {
            s += "| the paper's Table 2, P(severe) | 94 | 0.82 | 0.84 | | 0.14 (SPEC 5.5) | 0.032 (SPEC 5.5) | (< 1e-10) | (< 1e-10) |\n";
            s += "| the paper's Table 2, P(mild) | 94 | -0.75 | -0.84 | | | | (< 1e-10) | (< 1e-10) |\n";
        }
    }
    s += &format!("\nCohen et al.'s protocol ({} random 50/50 splits by patient, least squares, raw score; their headline: geographic MAE 1.14, opacity MAE 0.78):\n\n\
        | feature | score | Pearson (prediction, y) | R² | MAE | MSE |\n|---|---|---|---|---|---|\n", r["splits"]);
    for feat in r["features"].as_array().into_iter().flatten() {
        for score in ["geographic", "opacity"] {
            let c = &feat[score]["cohen_50_splits"];
            s += &format!("| {} | {score} | {} | {} | {} | {} |\n", feat["feature"].as_str().unwrap_or("?"), ms(&c["pearson"]), ms(&c["r2"]), ms(&c["mae"]), ms(&c["mse"]));
        }
    }
    s
}
