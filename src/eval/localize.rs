//! `engine eval localize`: the paper's Table 1 on any boxed images. Every
//! method runs on the same images in one pass: the supervised detector (its
//! highest-score box), the attention model (highest alpha after NMS), an
//! optional second attention bundle (the ablation row), CAM and Grad-CAM of
//! a classifier (the map upsampled bilinearly to the image, the box of the
//! largest region above 20 % / 15 % of its maximum), and for context the best of each image's ROIs (a bound for
//! any ranking) and a random ROI (its expectation). Metrics (SPEC 5.1, 5.2) with 95 % bootstrap intervals over
//! images and a paired bootstrap of "attention model minus detector".
//! Output: a Markdown table on stdout, `eval.json`, `per_image.csv`, and with
//! `--draw` one PNG per image (truth green, each method's top box in its colour)
//! and a contact sheet of the first 16 boxed images; with a classifier also
//! each image's CAM and Grad-CAM blended in red (`<id>_cam.png`, `<id>_grad_cam.png`).

use super::metrics::*;
use crate::backend::Backend;
use crate::data::image::Gray;
use crate::data::truth::{image_key, read_truth, Truth};
use crate::draw::{Canvas, CYAN, GREEN, RED, YELLOW};
use crate::geometry::boxes::BoxF;
use crate::localizer::postprocess::PostProcess;
use crate::localizer::Localizer;
use crate::rng::Rng;
use anyhow::{ensure, Context, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Clone, Debug)]
pub struct LocalizeArgs {
    /// An image file or a folder of them (PNG, JPEG, DICOM), named as in the truth file.
    #[arg(long)]
    pub images: PathBuf,
    /// Truth boxes: RSNA CSV, NIH BBox_List_2017.csv, a box table (image,x,y,width,height[,label][,source]) or truth.jsonl.
    #[arg(long)]
    pub truth: PathBuf,
    /// Keep only truth boxes with this label (e.g. Pneumonia; unlabelled boxes, RSNA and truth.jsonl, are kept); images keep their entry.
    #[arg(long)]
    pub finding: Option<String>,
    /// The supervised detector (model.safetensors of `engine detector train`); default: the attention bundle's detector.
    #[arg(long)]
    pub detector: Option<PathBuf>,
    /// The attention model (model.safetensors of `engine train`).
    #[arg(long)]
    pub attention: Option<PathBuf>,
    /// A second attention bundle, e.g. trained with --no-classification (the paper's ablation row).
    #[arg(long)]
    pub ablation: Option<PathBuf>,
    /// The classifier of `engine classifier train`: adds the CAM and Grad-CAM rows.
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// Heatmap threshold as a fraction of its maximum (default: 0.2 for CAM, 0.15 for Grad-CAM, as their papers).
    #[arg(long)]
    pub cam_threshold: Option<f32>,
    /// Output folder (eval.json, per_image.csv).
    #[arg(long, default_value = "eval")]
    pub out: PathBuf,
    /// Folder for one PNG per image with every method's top box.
    #[arg(long)]
    pub draw: Option<PathBuf>,
    /// Share of the images that choose the score threshold of the RSNA and ChestX-ray8 metrics (not reported on).
    #[arg(long, default_value_t = 0.2)]
    pub val_split: f64,
    /// Bootstrap resamples for the 95 % intervals.
    #[arg(long, default_value_t = 1000)]
    pub resamples: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Stop on an unreadable image or a box outside its image instead of skipping it.
    #[arg(long)]
    pub strict: bool,
}

/// One method's ranked boxes (image pixels) and their scores, per image.
#[derive(Clone, Debug, Default)]
struct Ranked {
    boxes: Vec<BoxF>,
    scores: Vec<f32>,
}

#[derive(Clone, Debug, Default)]
struct ImageResult {
    id: String,
    path: String,
    size: (usize, usize),
    truth: Vec<BoxF>,
    methods: BTreeMap<String, Ranked>,
    /// Best IoU of every ROI of the attention model's set.
    roi_ious: Vec<f32>,
    /// CAM and Grad-CAM on layer4's grid (`[h, w]`), for the overlays.
    heatmaps: Option<Heatmaps>,
}

#[derive(Clone, Debug)]
struct Heatmaps {
    cam: Vec<f32>,
    grad_cam: Vec<f32>,
    w: usize,
    h: usize,
}

const DETECTOR: &str = "detector";
const ATTENTION: &str = "attention model";
const ABLATION: &str = "attention model (ablation)";
const CAM: &str = "CAM";
const GRAD_CAM: &str = "Grad-CAM";

fn scale(b: &BoxF, w: usize, h: usize) -> BoxF {
    [b[0] * w as f32, b[1] * h as f32, b[2] * w as f32, b[3] * h as f32]
}

/// Runs every method on every image of `a.images` that the truth lists.
fn collect<B: Backend>(b: &B, a: &LocalizeArgs, truth: &Truth) -> Result<(Vec<ImageResult>, Vec<String>)> {
    let classifier = a.classifier.as_deref().map(|p| CamModel::load(b, p)).transpose()?;
    let attention = a.attention.as_deref().map(|p| Localizer::load_bundle(b, p)).transpose()?;
    let ablation = a.ablation.as_deref().map(|p| Localizer::load_bundle(b, p)).transpose()?;
    let detector = match &a.detector {
        Some(p) => Some(Localizer::load_detector(b, p)?),
        None => None,
    };
    let files: Vec<PathBuf> = crate::folder::image_files(&a.images)?.into_iter().filter(|p| truth.images.contains_key(&image_key(&p.to_string_lossy()))).collect();
    ensure!(!files.is_empty(), "no image of {} is listed in {}", a.images.display(), a.truth.display());
    // every box ranked (the top box is the highest score however low); the RSNA and ChestX-ray8 metrics threshold later
    let pp = PostProcess { score_thresh: 0.0, detections_per_image: 100, ..Default::default() };
    let bar = crate::progress::bar(files.len() as u64, "images");
    let (mut results, mut skipped) = (Vec::new(), Vec::new());
    crate::folder::each_batch(&files, |p| p.as_path(), a.batch, a.strict, &mut skipped, &mut |k| bar.inc(k as u64), |imgs| {
        let ids: Vec<String> = imgs.iter().map(|(p, _)| image_key(&p.to_string_lossy())).collect();
        let refs: Vec<(&str, &Gray)> = ids.iter().zip(&imgs).map(|(id, (_, g))| (id.as_str(), g)).collect();
        let grays: Vec<&Gray> = imgs.iter().map(|(_, g)| g).collect();
        let mut batch: Vec<ImageResult> = imgs.iter().zip(&ids).map(|((p, g), id)| ImageResult {
            id: id.clone(), path: p.display().to_string(), size: (g.width, g.height), truth: truth.boxes_in(id, g.width, g.height), ..Default::default()
        }).collect();
        if let Some(det) = detector.as_ref().or(attention.as_ref()) {
            for (r, d) in batch.iter_mut().zip(det.detections(&grays, &pp)?) {
                r.methods.insert(DETECTOR.into(), Ranked { boxes: d.boxes, scores: d.scores });
            }
        }
        if let Some(cls) = &classifier {
            for (r, (cam_boxes, grad_boxes, maps)) in batch.iter_mut().zip(heatmap_boxes(b, cls, &grays, a.cam_threshold)?) {
                r.methods.insert(CAM.into(), cam_boxes);
                r.methods.insert(GRAD_CAM.into(), grad_boxes);
                r.heatmaps = Some(maps);
            }
        }
        for (loc, name) in [(&attention, ATTENTION), (&ablation, ABLATION)] {
            let Some(loc) = loc else { continue };
            let (rois, preds) = loc.locate(&refs, 0.5, 100)?;
            for ((r, p), roi) in batch.iter_mut().zip(preds).zip(rois) {
                let (w, h) = r.size;
                r.methods.insert(name.into(), Ranked { boxes: p.boxes.iter().map(|b| scale(b, w, h)).collect(), scores: p.alpha });
                if name == ATTENTION {
                    r.roi_ious = roi.pos.box_rows().iter().map(|b| best_iou(&scale(b, w, h), &r.truth)).collect();
                }
            }
        }
        for r in &batch {
            if let Err(e) = crate::data::rsna::check_boxes_inside(&r.id, &r.truth, r.size.0, r.size.1) {
                ensure!(!a.strict, "{e:#} (--strict)");
                eprintln!("engine: warning: {e:#}");
            }
        }
        results.extend(batch);
        Ok(())
    })?;
    bar.finish_and_clear();
    Ok((results, skipped))
}

/// The classifier of the CAM rows with what every batch needs, made once:
/// its frozen batch-norm constants and its class weights on the host.
struct CamModel<B: Backend> {
    params: crate::params::ParamSet<B>,
    size: usize,
    bn: crate::nn::FrozenBn<B>,
    fc: Vec<f32>,
}

impl<B: Backend> CamModel<B> {
    fn load(b: &B, path: &Path) -> Result<Self> {
        let (params, meta) = crate::localizer::bundle::load_classifier(b, path)?;
        let bn = crate::nn::FrozenBn::from_params(b, &params, 1e-5)?;
        let fc = params.get("fc.weight")?.value.to_host(b)?;
        Ok(CamModel { params, size: meta.image_size, bn, fc })
    }
}

/// Boxes of every region of each image's CAM and Grad-CAM (largest first,
/// scored by their share of the map), in the image's pixels.
fn heatmap_boxes<B: Backend>(b: &B, cls: &CamModel<B>, imgs: &[&Gray], threshold: Option<f32>) -> Result<Vec<(Ranked, Ranked, Heatmaps)>> {
    use super::heatmap::{regions, upsample_bilinear, Threshold};
    use crate::nn::classifier::{cam, forward, grad_cam, FEATURES};
    let (params, size, fc) = (&cls.params, cls.size, &cls.fc);
    let x: Vec<f32> = imgs.iter().flat_map(|g| crate::data::image::to_input(g, size, &[], false).0).collect();
    let mut g = crate::autograd::Graph::no_grad(b.clone());
    let xv = g.input(crate::tensor::Tensor::from_host(b, &x, &[imgs.len(), 3, size, size])?);
    let mut net = crate::nn::Net::new(&mut g, params, Some(&cls.bn));
    let (maps, _) = forward(&mut net, xv)?;
    let s = g.shape(maps).to_vec();
    let (h, w) = (s[2], s[3]);
    let all = g.to_host(maps)?;
    let ranked = |map: &[f32], th: f32, img: &Gray| -> Result<Ranked> {
        // upsampled to the image, at most 1024 px a side (boxes scaled back)
        let f = (1024.0 / img.width.max(img.height) as f32).min(1.0);
        let (ow, oh) = (((img.width as f32 * f).round() as usize).max(1), ((img.height as f32 * f).round() as usize).max(1));
        let up = upsample_bilinear(map, w, h, ow, oh)?;
        let rs = regions(&up, ow, oh, Threshold::OfMax(th))?;
        let (sx, sy) = (img.width as f32 / ow as f32, img.height as f32 / oh as f32);
        Ok(Ranked {
            boxes: rs.iter().map(|r| [r.bbox[0] * sx, r.bbox[1] * sy, r.bbox[2] * sx, r.bbox[3] * sy]).collect(),
            scores: rs.iter().map(|r| r.pixels as f32 / (ow * oh) as f32).collect(),
        })
    };
    let mut out = Vec::new();
    for (i, img) in imgs.iter().enumerate() {
        let a = &all[i * FEATURES * h * w..(i + 1) * FEATURES * h * w];
        let c = cam(a, FEATURES, fc)?;
        let t = crate::tensor::Tensor::from_host(b, a, &[1, FEATURES, h, w])?;
        let gc: Vec<f32> = grad_cam(b, params, t)?.1.into_iter().map(|v| v as f32).collect();
        out.push((ranked(&c, threshold.unwrap_or(0.2), img)?, ranked(&gc, threshold.unwrap_or(0.15), img)?, Heatmaps { cam: c, grad_cam: gc, w, h }));
    }
    Ok(out)
}

/// The score threshold that maximizes the mean RSNA score over `val`
/// (candidates: the quantiles of the method's scores there, and "no box").
fn choose_threshold(results: &[ImageResult], val: &[usize], method: &str) -> f32 {
    let mut scores: Vec<f32> = val.iter().flat_map(|&i| results[i].methods[method].scores.iter().copied()).collect();
    scores.sort_by(f32::total_cmp);
    let mut cands: Vec<f32> = (0..=50).filter_map(|q| scores.get((q * scores.len().saturating_sub(1)) / 50).copied()).collect();
    cands.push(f32::INFINITY);
    cands.dedup();
    let score_at = |t: f32| {
        let s: Vec<f64> = val.iter().filter_map(|&i| rsna_image_score(&kept(&results[i].methods[method], t), &results[i].truth)).collect();
        mean(&s)
    };
    cands.into_iter().map(|t| (t, score_at(t))).max_by(|a, b| a.1.total_cmp(&b.1).then(a.0.total_cmp(&b.0))).map_or(f32::INFINITY, |x| x.0)
}

fn kept(m: &Ranked, t: f32) -> Vec<(BoxF, f32)> {
    m.boxes.iter().zip(&m.scores).filter(|(_, &s)| s >= t).map(|(b, &s)| (*b, s)).collect()
}

pub fn run<B: Backend>(b: B, a: &LocalizeArgs) -> Result<serde_json::Value> {
    crate::ensure_arg!(a.detector.is_some() || a.attention.is_some() || a.classifier.is_some(), "give --detector, --attention, --classifier or several");
    crate::ensure_arg!((0.0..1.0).contains(&a.val_split), "--val-split {} must be in [0, 1)", a.val_split);
    let mut truth = read_truth(&a.truth)?;
    for w in &truth.warnings {
        eprintln!("engine: warning: {w}");
    }
    if let Some(f) = &a.finding {
        truth = truth.only(f);
        ensure!(truth.box_count() > 0, "{}: no box labelled {f:?}", a.truth.display());
    }
    let (results, skipped) = collect(&b, a, &truth)?;
    ensure!(!results.is_empty(), "no readable image");
    let boxed: Vec<usize> = (0..results.len()).filter(|&i| !results[i].truth.is_empty()).collect();
    ensure!(!boxed.is_empty(), "none of the {} images has a truth box", results.len());
    // images that choose the RSNA / ChestX-ray8 score threshold, and those reported
    let mut order: Vec<usize> = (0..results.len()).collect();
    let mut rng = Rng::new(a.seed);
    rng.shuffle(&mut order);
    let n_val = ((results.len() as f64 * a.val_split).round() as usize).min(results.len().saturating_sub(1));
    let (val, test) = order.split_at(n_val);
    let (mut val, mut test) = (val.to_vec(), test.to_vec());
    val.sort();
    test.sort();
    // the paper's row order
    let methods: Vec<String> = [DETECTOR, ATTENTION, ABLATION, CAM, GRAD_CAM].iter().filter(|m| results[0].methods.contains_key(**m)).map(|m| m.to_string()).collect();
    let r = a.resamples;
    let mut rows = Vec::new();
    let mut hits_of: BTreeMap<String, Vec<Vec<f64>>> = BTreeMap::new();
    for m in &methods {
        // seeded by the method's name: its intervals do not depend on which other rows run
        let seed = m.bytes().fold(a.seed ^ 0xcbf2_9ce4_8422_2325, |h, c| (h ^ c as u64).wrapping_mul(0x100_0000_01b3));
        let hits: Vec<Vec<f64>> = IOU_THRESHOLDS.iter().map(|&t| {
            boxed.iter().map(|&i| results[i].methods[m].boxes.first().is_some_and(|b| best_iou(b, &results[i].truth) > t) as u8 as f64).collect()
        }).collect();
        let top1: Vec<Interval> = hits.iter().map(|h| bootstrap_mean(h, r, seed)).collect();
        let th = if val.is_empty() { 0.0 } else { choose_threshold(&results, &val, m) };
        let rsna: Vec<f64> = test.iter().filter_map(|&i| rsna_image_score(&kept(&results[i].methods[m], th), &results[i].truth)).collect();
        let cx8_rules = [Overlap::Iobb(0.1), Overlap::Iobb(0.25), Overlap::Iobb(0.5), Overlap::Iou(0.1), Overlap::Iou(0.25), Overlap::Iou(0.5)];
        let cx8: Vec<serde_json::Value> = cx8_rules.iter().map(|&rule| {
            let counts: Vec<(usize, usize, usize)> = test.iter().map(|&i| {
                let boxes: Vec<BoxF> = kept(&results[i].methods[m], th).into_iter().map(|x| x.0).collect();
                chestxray8_counts(&boxes, &results[i].truth, rule)
            }).collect();
            let all: Vec<usize> = (0..counts.len()).collect();
            let (acc, afp) = chestxray8_summary(&counts, &all);
            let ci = bootstrap(counts.len(), r, seed, |idx| chestxray8_summary(&counts, idx).0);
            json!({ "rule": rule, "accuracy": acc, "accuracy_interval": [ci.lo, ci.hi], "false_positives_per_image": afp })
        }).collect();
        // how large and how varied the top boxes are (a model that picks by position repeats a few boxes)
        let (tops, truths): (Vec<BoxF>, Vec<Vec<BoxF>>) = boxed.iter().filter_map(|&i| Some((*results[i].methods[m].boxes.first()?, results[i].truth.clone()))).unzip();
        rows.push(json!({ "method": m, "top1": top1, "top_box_area_over_truth": area_ratio(&tops, &truths), "distinct_top_boxes": distinct_boxes(&tops), "rsna_score": bootstrap_mean(&rsna, r, seed), "rsna_images": rsna.len(),
                          "score_threshold": if th.is_finite() { json!(th) } else { json!("no boxes") }, "chestxray8": cx8 }));
        hits_of.insert(m.clone(), hits);
    }
    // context rows from the attention model's ROI sets
    let have_rois = boxed.iter().all(|&i| !results[i].roi_ious.is_empty());
    let context = have_rois.then(|| {
        let bound: Vec<Interval> = IOU_THRESHOLDS.iter().map(|&t| bootstrap_mean(&boxed.iter().map(|&i| results[i].roi_ious.iter().any(|&v| v > t) as u8 as f64).collect::<Vec<_>>(), r, a.seed)).collect();
        let random: Vec<Interval> = IOU_THRESHOLDS.iter().map(|&t| {
            let v: Vec<f64> = boxed.iter().map(|&i| { let s = &results[i].roi_ious; s.iter().filter(|&&x| x > t).count() as f64 / s.len() as f64 }).collect();
            bootstrap_mean(&v, r, a.seed)
        }).collect();
        json!({ "best_roi": bound, "random_roi": random, "rois_per_image": results[boxed[0]].roi_ious.len() })
    });
    let difference = match (hits_of.get(ATTENTION), hits_of.get(DETECTOR)) {
        (Some(x), Some(y)) => Some(x.iter().zip(y).map(|(x, y)| bootstrap_difference(x, y, r, a.seed)).collect::<Result<Vec<_>>>()?),
        _ => None,
    };
    let report = json!({
        "images": results.len(), "boxed_images": boxed.len(), "truth_boxes": boxed.iter().map(|&i| results[i].truth.len()).sum::<usize>(),
        "distinct_truth_boxes": distinct_boxes(&boxed.iter().filter_map(|&i| results[i].truth.first().copied()).collect::<Vec<_>>()),
        "validation_images": val.len(), "reported_images": test.len(), "truth": a.truth.display().to_string(), "finding": a.finding,
        "device": b.name(), "iou_thresholds": IOU_THRESHOLDS, "resamples": r, "seed": a.seed,
        "methods": rows, "context": context, "attention_minus_detector": difference, "skipped": skipped,
    });
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    crate::folder::write_json(&a.out.join("eval.json"), &report)?;
    crate::weights::write_atomic(&a.out.join("per_image.csv"), per_image_csv(&results, &methods).as_bytes())?;
    if let Some(d) = &a.draw {
        crate::folder::create_draw_dir(Some(d))?;
        let mut sheet = Vec::new();
        for r in &results {
            let c = draw(r, &methods)?;
            c.save(&d.join(format!("{}.png", r.id)))?;
            if let Some(hm) = &r.heatmaps {
                for (name, map) in [("cam", &hm.cam), ("grad_cam", &hm.grad_cam)] {
                    overlay(r, map, hm.w, hm.h)?.save(&d.join(format!("{}_{name}.png", r.id)))?;
                }
            }
            if sheet.len() < 16 && !r.truth.is_empty() {
                sheet.push(c);
            }
        }
        Canvas::contact_sheet(&sheet, 4, 256).save(&d.join("contact_sheet.png"))?;
    }
    Ok(report)
}

fn per_image_csv(results: &[ImageResult], methods: &[String]) -> String {
    let mut s = String::from("image,width,height,truth_boxes");
    for m in methods {
        let k = m.replace(' ', "_").replace(['(', ')'], "");
        s += &format!(",{k}_x1,{k}_y1,{k}_x2,{k}_y2,{k}_iou");
    }
    s += "\n";
    for r in results {
        s += &format!("{},{},{},{}", r.id, r.size.0, r.size.1, r.truth.len());
        for m in methods {
            match r.methods[m].boxes.first() {
                Some(b) => s += &format!(",{:.1},{:.1},{:.1},{:.1},{:.4}", b[0], b[1], b[2], b[3], best_iou(b, &r.truth)),
                None => s += ",,,,,",
            }
        }
        s += "\n";
    }
    s
}

/// The image with its truth (green) and each method's top box in its colour, labelled.
fn draw(r: &ImageResult, methods: &[String]) -> Result<Canvas> {
    let img = crate::data::image::load(Path::new(&r.path))?;
    let mut c = Canvas::from_gray(&img);
    let thick = (img.width.max(img.height) / 300).max(1) as i64;
    for t in &r.truth {
        c.rect(t, GREEN, 2 * thick);
    }
    let colours = [RED, CYAN, YELLOW, [230, 60, 230], [250, 140, 30]];
    for (k, m) in methods.iter().enumerate() {
        if let Some(b) = r.methods[m].boxes.first() {
            c.rect(b, colours[k % colours.len()], thick);
            c.text(b[0] as i64 + 2 * thick, b[1] as i64 + 2 * thick + 10 * thick * k as i64, m, colours[k % colours.len()], thick);
        }
    }
    Ok(c)
}

/// The image with a heatmap blended in (red, by its share of the maximum) and the truth in green.
fn overlay(r: &ImageResult, map: &[f32], w: usize, h: usize) -> Result<Canvas> {
    let img = crate::data::image::load(Path::new(&r.path))?;
    let up = super::heatmap::upsample_bilinear(map, w, h, img.width, img.height)?;
    let hi = up.iter().copied().fold(0.0f32, f32::max);
    let mut c = Canvas::from_gray(&img);
    if hi > 0.0 {
        for (px, &v) in c.img.pixels_mut().zip(&up) {
            let t = (v / hi).clamp(0.0, 1.0) * 0.6;
            px.0 = [(px.0[0] as f32 * (1.0 - t) + 255.0 * t) as u8, (px.0[1] as f32 * (1.0 - t)) as u8, (px.0[2] as f32 * (1.0 - t)) as u8];
        }
    }
    let thick = (img.width.max(img.height) / 300).max(1) as i64;
    for t in &r.truth {
        c.rect(t, GREEN, 2 * thick);
    }
    Ok(c)
}

/// The report as the paper's Table 1 (Markdown), with the intervals.
pub fn table(r: &serde_json::Value) -> String {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let cell = |v: &serde_json::Value| format!("{:.3} [{:.3}, {:.3}]", f(&v["value"]), f(&v["lo"]), f(&v["hi"]));
    let mut s = format!("{} images ({} with truth boxes, {} boxes); 95 % bootstrap intervals over images\n\n",
        r["images"], r["boxed_images"], r["truth_boxes"]);
    s += "| method | IoU@0.25 | IoU@0.5 | IoU@0.75 | RSNA score | ChestX-ray8 acc, IoBB > 0.1 (AFP) |\n|---|---|---|---|---|---|\n";
    for m in r["methods"].as_array().into_iter().flatten() {
        let t: Vec<String> = m["top1"].as_array().into_iter().flatten().map(cell).collect();
        let cx = &m["chestxray8"][0];
        s += &format!("| {} | {} | {} | {:.3} ({:.2}) |\n", m["method"].as_str().unwrap_or("?"), t.join(" | "), cell(&m["rsna_score"]),
            f(&cx["accuracy"]), f(&cx["false_positives_per_image"]));
    }
    if let Some(c) = r["context"].as_object() {
        for (k, label) in [("best_roi", "for context: best ROI (bound)"), ("random_roi", "for context: random ROI (mean)")] {
            let t: Vec<String> = c[k].as_array().into_iter().flatten().map(cell).collect();
            s += &format!("| {label} | {} | | |\n", t.join(" | "));
        }
    }
    let shape: Vec<String> = r["methods"].as_array().into_iter().flatten()
        .map(|m| format!("{} {:.2} ({})", m["method"].as_str().unwrap_or("?"), f(&m["top_box_area_over_truth"]), m["distinct_top_boxes"])).collect();
    s += &format!("\ntop box area / truth area, geometric mean (distinct top boxes, IoU < 0.9 to one another; truth {}): {}\n", r["distinct_truth_boxes"], shape.join(", "));
    if let Some(d) = r["attention_minus_detector"].as_array() {
        let t: Vec<String> = d.iter().map(|v| format!("{:+.3} [{:+.3}, {:+.3}]", f(&v["value"]), f(&v["lo"]), f(&v["hi"]))).collect();
        s += &format!("\nattention model minus detector (paired bootstrap), IoU@0.25 / 0.5 / 0.75: {}\n", t.join(" / "));
    }
    s
}
