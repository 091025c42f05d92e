//! ROI extraction (SPEC 3.9): from a trained detector, for each image the
//! top-N anchors by score (the positive set I) and the bottom-N (the negative
//! set I_n, among anchors with at least half their box inside the image),
//! each with the 256-d output of the classification tower's 4th conv + ReLU
//! at its location, its score and its decoded box in [0, 1] coordinates.
//! Cached once as safetensors shards (f16) with an index, so every epoch
//! reuses them and an interrupted extraction resumes where it stopped.

use crate::autograd::Graph;
use crate::tensor::Tensor;
use crate::backend::Backend;
use crate::data::image::{load_or_skip, to_input, Gray};
use crate::detect::boxes::{area, BoxCoder, BoxF};
use crate::detect::nms::order_by_score;
use crate::detector::checkpoint::ModelMeta;
use crate::nn::retinanet;
use crate::nn::{FrozenBn, Net};
use crate::params::ParamSet;
use crate::weights::{read, write, StoreDtype};
use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const FEATURE_DIM: usize = 256;

/// One ROI set of one image: features `[n, 256]`, boxes `[n, 4]`, scores `[n]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoiSet {
    pub r: Vec<f32>,
    pub g: Vec<f32>,
    pub s: Vec<f32>,
}

impl RoiSet {
    pub fn len(&self) -> usize {
        self.s.len()
    }
    pub fn is_empty(&self) -> bool {
        self.s.is_empty()
    }
    pub fn boxes(&self) -> Vec<BoxF> {
        crate::detect::boxes::as_boxes(&self.g)
    }
}

#[derive(Clone, Debug, Default)]
pub struct ImageRois {
    pub id: String,
    pub pos: RoiSet,
    pub neg: RoiSet,
    /// Original (width, height).
    pub size: (usize, usize),
}

fn inside_fraction(b: &BoxF) -> f32 {
    let clipped = [b[0].clamp(0.0, 1.0), b[1].clamp(0.0, 1.0), b[2].clamp(0.0, 1.0), b[3].clamp(0.0, 1.0)];
    let a = area(b);
    if a > 0.0 { area(&clipped) / a } else { 0.0 }
}

/// Runs the detector on a batch of images and picks both ROI sets of each.
pub fn extract_batch<B: Backend>(b: &B, params: &ParamSet<B>, bn: &FrozenBn<B>, meta: &ModelMeta, imgs: &[(&str, &Gray)], top_n: usize) -> Result<Vec<ImageRois>> {
    let size = meta.image_size;
    let n = imgs.len();
    let x: Vec<f32> = imgs.iter().flat_map(|(_, g)| to_input(g, size, &[], false).0).collect();
    let mut g = Graph::no_grad(b.clone());
    let xv = g.input(Tensor::from_host(b, &x, &[n, 3, size, size])?);
    let mut net = Net::new(&mut g, params, Some(bn));
    let out = retinanet::forward(&mut net, &meta.retina, xv)?;
    drop(net);
    let anchors = retinanet::anchors(&meta.retina, &out, [size, size]);
    let (logits, reg) = (g.to_host(out.cls_logits)?, g.to_host(out.bbox_regression)?);
    let towers: Vec<Vec<f32>> = out.cls_tower.iter().map(|&v| g.to_host(v)).collect::<Result<_>>()?;
    let a = anchors.len();
    let k = meta.retina.num_classes;
    let coder = BoxCoder::default();
    let a_per = crate::nn::retinanet::NUM_ANCHORS;
    // anchor index -> (level, position in the level's grid)
    let mut level_of = Vec::with_capacity(a);
    for (l, gr) in out.grids.iter().enumerate() {
        for p in 0..gr[0] * gr[1] {
            for _ in 0..a_per {
                level_of.push((l, p));
            }
        }
    }
    ensure!(level_of.len() == a, "anchors and pyramid disagree ({} vs {a})", level_of.len());
    let mut result = Vec::with_capacity(n);
    for (i, (id, img)) in imgs.iter().enumerate() {
        // score of an anchor: its best class
        let scores: Vec<f32> = (0..a).map(|j| (0..k).map(|c| logits[(i * a + j) * k + c]).fold(f32::NEG_INFINITY, f32::max)).map(|x| 1.0 / (1.0 + (-x).exp())).collect();
        let boxes: Vec<BoxF> = (0..a).map(|j| {
            let d = [reg[(i * a + j) * 4], reg[(i * a + j) * 4 + 1], reg[(i * a + j) * 4 + 2], reg[(i * a + j) * 4 + 3]];
            let bx = coder.decode(&d, &anchors[j]);
            [bx[0] / size as f32, bx[1] / size as f32, bx[2] / size as f32, bx[3] / size as f32]
        }).collect();
        let order = order_by_score(&scores);
        let grids = &out.grids;
        let feature = |j: usize, dst: &mut Vec<f32>| {
            let (l, p) = level_of[j];
            let hw = grids[l][0] * grids[l][1];
            let t = &towers[l];
            for c in 0..FEATURE_DIM {
                dst.push(t[(i * FEATURE_DIM + c) * hw + p]);
            }
        };
        let set = |sel: &mut dyn Iterator<Item = usize>, clip: bool| {
            let mut s = RoiSet::default();
            for j in sel.take(top_n) {
                feature(j, &mut s.r);
                let bx = if clip { boxes[j].map(|v| v.clamp(0.0, 1.0)) } else { boxes[j] };
                s.g.extend(bx);
                s.s.push(scores[j]);
            }
            s
        };
        let pos = set(&mut order.iter().copied(), true);
        let neg = set(&mut order.iter().rev().copied().filter(|&j| inside_fraction(&boxes[j]) >= 0.5), false);
        result.push(ImageRois { id: id.to_string(), pos, neg, size: (img.width, img.height) });
    }
    Ok(result)
}

/// A shard on disk: ROI sets of up to `shard_size` images.
fn shard_path(dir: &Path, k: usize) -> PathBuf {
    dir.join(format!("rois-{k:05}.safetensors"))
}

pub fn save_shard(path: &Path, items: &[ImageRois], top_n: usize) -> Result<()> {
    let n = items.len();
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for (name, pick) in [("pos", true), ("neg", false)] {
        let set = |x: &ImageRois| if pick { x.pos.clone() } else { x.neg.clone() };
        let mut r = Vec::new();
        let mut g = Vec::new();
        let mut s = Vec::new();
        for x in items {
            let mut v = set(x);
            ensure!(v.len() == top_n, "image {}: {} {name} ROIs, expected {top_n}", x.id, v.len());
            r.append(&mut v.r);
            g.append(&mut v.g);
            s.append(&mut v.s);
        }
        t.push((format!("{name}/r"), vec![n, top_n, FEATURE_DIM], r));
        t.push((format!("{name}/g"), vec![n, top_n, 4], g));
        t.push((format!("{name}/s"), vec![n, top_n, 1], s));
    }
    let mut meta = BTreeMap::new();
    meta.insert("ids".to_string(), serde_json::to_string(&items.iter().map(|x| &x.id).collect::<Vec<_>>())?);
    meta.insert("sizes".to_string(), serde_json::to_string(&items.iter().map(|x| [x.size.0, x.size.1]).collect::<Vec<_>>())?);
    write(path, &t, StoreDtype::F16, &meta)
}

pub fn load_shard(path: &Path) -> Result<Vec<ImageRois>> {
    let f = read(path)?;
    let ids: Vec<String> = f.meta("ids")?;
    let sizes: Vec<[usize; 2]> = f.meta("sizes")?;
    let n = ids.len();
    let get = |k: &str| f.get(k).map(|t| (t.shape.clone(), t.data.clone()));
    let (pr, pg, ps, nr, ng, ns) = (get("pos/r")?, get("pos/g")?, get("pos/s")?, get("neg/r")?, get("neg/g")?, get("neg/s")?);
    ensure!(pr.0.len() == 3 && pr.0[0] == n && pr.0[2] == FEATURE_DIM, "{}: pos/r has shape {:?}", path.display(), pr.0);
    let top = pr.0[1];
    let slice = |v: &Vec<f32>, i: usize, w: usize| v[i * top * w..(i + 1) * top * w].to_vec();
    Ok((0..n)
        .map(|i| ImageRois {
            id: ids[i].clone(),
            pos: RoiSet { r: slice(&pr.1, i, FEATURE_DIM), g: slice(&pg.1, i, 4), s: slice(&ps.1, i, 1) },
            neg: RoiSet { r: slice(&nr.1, i, FEATURE_DIM), g: slice(&ng.1, i, 4), s: slice(&ns.1, i, 1) },
            size: (sizes[i][0], sizes[i][1]),
        })
        .collect())
}

/// The cache of a folder: every image id already extracted, by shard.
pub fn cached(dir: &Path) -> Result<BTreeMap<String, usize>> {
    let mut out = BTreeMap::new();
    let mut k = 0;
    while shard_path(dir, k).is_file() {
        let f = read(&shard_path(dir, k))?;
        let ids: Vec<String> = f.meta("ids")?;
        for id in ids {
            out.insert(id, k);
        }
        k += 1;
    }
    Ok(out)
}

/// Extracts the ROIs of every `(id, path)` not yet cached in `dir`, shard by
/// shard (each shard written atomically: a kill loses at most the current one).
/// Returns (ids extracted now, ids skipped because they could not be read).
#[allow(clippy::too_many_arguments)]
pub fn extract_all<B: Backend>(b: &B, params: &ParamSet<B>, meta: &ModelMeta, items: &[(String, PathBuf)], dir: &Path, top_n: usize,
                               shard_size: usize, progress: &dyn Fn(u64)) -> Result<(usize, Vec<String>)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let done = cached(dir)?;
    let mut next_shard = done.values().max().map_or(0, |k| k + 1);
    let todo: Vec<&(String, PathBuf)> = items.iter().filter(|(id, _)| !done.contains_key(id)).collect();
    let bn = FrozenBn::from_params(b, params, 1e-5)?;
    let (mut extracted, mut skipped, mut count) = (0, Vec::new(), done.len() as u64);
    progress(count);
    for chunk in todo.chunks(shard_size.max(1)) {
        let mut shard = Vec::new();
        for batch in chunk.chunks(8) {
            let mut imgs = Vec::new();
            for (id, path) in batch {
                if let Some(img) = load_or_skip(path, false, &mut skipped)? {
                    imgs.push((id.as_str(), img));
                }
            }
            if !imgs.is_empty() {
                let refs: Vec<(&str, &Gray)> = imgs.iter().map(|(id, g)| (*id, g)).collect();
                shard.extend(extract_batch(b, params, &bn, meta, &refs, top_n)?);
            }
            count += batch.len() as u64;
            progress(count);
        }
        if !shard.is_empty() {
            extracted += shard.len();
            save_shard(&shard_path(dir, next_shard), &shard, top_n)?;
            next_shard += 1;
        }
    }
    Ok((extracted, skipped))
}

/// Every cached image's ROIs.
pub fn load_all(dir: &Path) -> Result<Vec<ImageRois>> {
    let mut out = Vec::new();
    let mut k = 0;
    while shard_path(dir, k).is_file() {
        out.extend(load_shard(&shard_path(dir, k))?);
        k += 1;
    }
    Ok(out)
}
