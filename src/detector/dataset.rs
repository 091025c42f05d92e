//! Boxed images for the detector: RSNA labels joined with image files,
//! a seeded split by patient, and batches of network inputs. An image that
//! cannot be decoded, or whose box lies outside it, is skipped with a warning
//! naming it (an error with `strict`).

use crate::data::image::{load, to_input};
use crate::data::rsna::{check_boxes_inside, find_image, Labels};
use crate::geometry::boxes::BoxF;
use crate::nn::retinanet::Target;
use crate::rng::Rng;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Sample {
    pub id: String,
    pub path: PathBuf,
    /// Boxes in the original image's pixels.
    pub boxes: Vec<BoxF>,
}

/// Joins labels with the files in `dir`; ids without a file are returned apart.
pub fn samples(dir: &Path, labels: &Labels) -> (Vec<Sample>, Vec<String>) {
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for (id, boxes) in &labels.images {
        match find_image(dir, id) {
            Some(path) => found.push(Sample { id: id.clone(), path, boxes: boxes.clone() }),
            None => missing.push(id.clone()),
        }
    }
    (found, missing)
}

/// Seeded split by patient id: (train, validation); validation gets
/// `val_frac` of the ids (at least one when there are two or more).
pub fn split(mut all: Vec<Sample>, val_frac: f64, seed: u64) -> (Vec<Sample>, Vec<Sample>) {
    let mut rng = Rng::new(seed);
    rng.shuffle(&mut all);
    let mut n_val = (all.len() as f64 * val_frac).round() as usize;
    if val_frac > 0.0 && all.len() >= 2 {
        n_val = n_val.max(1);
    }
    let val = all.split_off(all.len() - n_val.min(all.len()));
    (all, val)
}

/// Network inputs of a batch.
pub struct Batch {
    /// `[n, 3, size, size]`
    pub x: Vec<f32>,
    pub targets: Vec<Target>,
    pub ids: Vec<String>,
    /// Original `(width, height)` of each image.
    pub sizes: Vec<(usize, usize)>,
}

/// Loads `items` at `size`; with `flip`, each image is mirrored with
/// probability 0.5. Unreadable images go to `skipped` (or fail with `strict`).
pub fn load_batch(items: &[&Sample], size: usize, flip: Option<&mut Rng>, strict: bool, skipped: &mut Vec<String>) -> Result<Batch> {
    let mut b = Batch { x: Vec::new(), targets: Vec::new(), ids: Vec::new(), sizes: Vec::new() };
    let mut flip = flip;
    for s in items {
        let img = match load(&s.path).and_then(|img| check_boxes_inside(&s.id, &s.boxes, img.width, img.height).map(|_| img)) {
            Ok(img) => img,
            Err(e) if !strict => {
                eprintln!("engine: warning: skipped {}: {e:#}", s.path.display());
                skipped.push(s.id.clone());
                continue;
            }
            Err(e) => bail!("{e:#} (--strict)"),
        };
        let f = flip.as_deref_mut().is_some_and(|r| r.uniform() < 0.5);
        let (x, boxes) = to_input(&img, size, &s.boxes, f);
        b.x.extend(x);
        b.targets.push(Target { labels: vec![0; boxes.len()], boxes });
        b.ids.push(s.id.clone());
        b.sizes.push((img.width, img.height));
    }
    Ok(b)
}
