//! The folder runner: every command that walks images lists them here (a
//! file, or the supported files of a folder), reads them in batches, skips
//! and reports unreadable files (or stops on one with `--strict`), shows a
//! progress bar, and writes its report atomically.

use crate::data::image::{load_or_skip, Gray, EXTENSIONS};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Image files of a path: the file itself, or the supported files of a folder (sorted).
pub fn image_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())))
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(crate::usage::usage(format!("no PNG, JPEG or DICOM file in {}: point at a folder of images", path.display())));
    }
    Ok(v)
}

/// An image's id: its file name without the extension.
pub fn image_id(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default()
}

/// Reads `items` (each naming a file through `path_of`) `batch` at a time and
/// calls `f` with the readable ones of each batch; unreadable files are
/// recorded in `skipped` (or end the run with `strict`). `done(k)` follows
/// each batch with the number of items it covered.
pub fn each_batch<'a, T>(items: &'a [T], path_of: impl Fn(&T) -> &Path, batch: usize, strict: bool, skipped: &mut Vec<String>,
                         done: &mut dyn FnMut(usize), mut f: impl FnMut(Vec<(&'a T, Gray)>) -> Result<()>) -> Result<()> {
    for chunk in items.chunks(batch.max(1)) {
        let mut imgs = Vec::new();
        for item in chunk {
            if let Some(img) = load_or_skip(path_of(item), strict, skipped)? {
                imgs.push((item, img));
            }
        }
        if !imgs.is_empty() {
            f(imgs)?;
        }
        done(chunk.len());
    }
    Ok(())
}

/// Every image of `path` (a file or a folder), `batch` at a time, with a
/// progress bar; returns the files skipped as unreadable.
pub fn run(path: &Path, batch: usize, strict: bool, mut f: impl FnMut(Vec<(&PathBuf, Gray)>) -> Result<()>) -> Result<Vec<String>> {
    let files = image_files(path)?;
    let bar = crate::progress::bar(files.len() as u64, "images");
    let mut skipped = Vec::new();
    each_batch(&files, |p| p.as_path(), batch, strict, &mut skipped, &mut |k| bar.inc(k as u64), &mut f)?;
    bar.finish_and_clear();
    Ok(skipped)
}

/// Writes a JSON report atomically (a kill leaves the old file or the new one).
pub fn write_json(path: &Path, report: &serde_json::Value) -> Result<()> {
    crate::weights::write_atomic(path, serde_json::to_string_pretty(report)?.as_bytes())
}

/// Creates the folder for PNG overlays when one is asked for.
pub fn create_draw_dir(dir: Option<&Path>) -> Result<()> {
    if let Some(d) = dir {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    Ok(())
}
