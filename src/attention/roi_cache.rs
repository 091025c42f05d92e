//! The ROI cache: the ROI sets of every training image (`localizer::rois`),
//! extracted once into safetensors shards (f16) with an index, so every epoch
//! reuses them and an interrupted extraction resumes where it stopped.

use crate::backend::Backend;
use crate::data::image::Gray;
use crate::localizer::rois::{ImageRois, RoiSet, FEATURE_DIM};
use crate::localizer::Localizer;
use crate::weights::{read, write, StoreDtype};
use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
            r.append(&mut v.features);
            g.append(&mut v.boxes);
            s.append(&mut v.scores);
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
            pos: RoiSet { features: slice(&pr.1, i, FEATURE_DIM), boxes: slice(&pg.1, i, 4), scores: slice(&ps.1, i, 1) },
            neg: RoiSet { features: slice(&nr.1, i, FEATURE_DIM), boxes: slice(&ng.1, i, 4), scores: slice(&ns.1, i, 1) },
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
pub fn extract_all<B: Backend>(loc: &Localizer<B>, items: &[(String, PathBuf)], dir: &Path, top_n: usize, shard_size: usize,
                               progress: &dyn Fn(u64)) -> Result<(usize, Vec<String>)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let done = cached(dir)?;
    let mut next_shard = done.values().max().map_or(0, |k| k + 1);
    let todo: Vec<(String, PathBuf)> = items.iter().filter(|(id, _)| !done.contains_key(id)).cloned().collect();
    let (mut extracted, mut skipped, mut count) = (0, Vec::new(), done.len() as u64);
    progress(count);
    for chunk in todo.chunks(shard_size.max(1)) {
        let mut shard = Vec::new();
        crate::folder::each_batch(chunk, |(_, p)| p.as_path(), 8, false, &mut skipped, &mut |k| {
            count += k as u64;
            progress(count);
        }, |imgs| {
            let refs: Vec<(&str, &Gray)> = imgs.iter().map(|((id, _), g)| (id.as_str(), g)).collect();
            shard.extend(loc.rois(&refs, top_n)?);
            Ok(())
        })?;
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
