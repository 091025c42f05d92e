//! Boxes from a heatmap (CAM, Grad-CAM; SPEC 5.2, 5.3): upsample it to the
//! image (bilinear, as PyTorch's `interpolate` without aligned corners),
//! keep the pixels above a threshold, find the connected regions
//! (8-neighbourhood, as OpenCV's contours), one box around each; the
//! largest region's box is the method's top box.

use crate::geometry::boxes::BoxF;
use anyhow::{ensure, Result};

/// Which pixels of a heatmap a box is drawn around.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Threshold {
    /// Above this fraction of the map's maximum (CAM 0.2, Grad-CAM 0.15).
    OfMax(f32),
    /// Above this value after min-max scaling to [0, 255] (ChestX-ray8: 60, 180).
    Scaled255(f32),
}

/// A connected region: its bounding box in pixels (`x2`, `y2` exclusive) and its size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Region {
    pub bbox: BoxF,
    pub pixels: usize,
}

/// Every region of `map` (`[h, w]`, row-major) above the threshold, largest
/// first (ties: the one met first in row order). A map that is flat or not
/// finite has none.
pub fn regions(map: &[f32], w: usize, h: usize, th: Threshold) -> Result<Vec<Region>> {
    ensure!(map.len() == w * h, "heatmap of {} values is not {w}x{h}", map.len());
    let (lo, hi) = map.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    if !lo.is_finite() || !hi.is_finite() {
        return Ok(Vec::new());
    }
    let keep = |v: f32| match th {
        Threshold::OfMax(f) => hi > 0.0 && v > f * hi,
        Threshold::Scaled255(t) => hi > lo && (v - lo) / (hi - lo) * 255.0 > t,
    };
    let on: Vec<bool> = map.iter().map(|&v| keep(v)).collect();
    let mut seen = vec![false; w * h];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !on[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut x0, mut y0, mut x1, mut y1, mut pixels) = (w, h, 0, 0, 0);
        while let Some(p) = stack.pop() {
            let (x, y) = (p % w, p / w);
            (x0, y0, x1, y1, pixels) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y), pixels + 1);
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let q = ny as usize * w + nx as usize;
                    if on[q] && !seen[q] {
                        seen[q] = true;
                        stack.push(q);
                    }
                }
            }
        }
        out.push(Region { bbox: [x0 as f32, y0 as f32, (x1 + 1) as f32, (y1 + 1) as f32], pixels });
    }
    // stable: equal sizes keep row order
    out.sort_by(|a, b| b.pixels.cmp(&a.pixels));
    Ok(out)
}

/// The box of the largest region, scaled from the map's `[w, h]` grid to an image of `[iw, ih]` pixels.
pub fn top_box(map: &[f32], w: usize, h: usize, th: Threshold, image: (usize, usize)) -> Result<Option<BoxF>> {
    let (sx, sy) = (image.0 as f32 / w as f32, image.1 as f32 / h as f32);
    Ok(regions(map, w, h, th)?.first().map(|r| [r.bbox[0] * sx, r.bbox[1] * sy, r.bbox[2] * sx, r.bbox[3] * sy]))
}

/// Bilinear upsampling of `map` (`[h, w]`) to `[oh, ow]`, as PyTorch's
/// `F.interpolate(mode="bilinear", align_corners=False)`.
pub fn upsample_bilinear(map: &[f32], w: usize, h: usize, ow: usize, oh: usize) -> Result<Vec<f32>> {
    ensure!(map.len() == w * h && w > 0 && h > 0, "heatmap of {} values is not {w}x{h}", map.len());
    // source coordinate of an output index: (dst + 0.5) * in / out - 0.5, clamped at 0
    let axis = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32)> {
        (0..n_out).map(|d| {
            let x = ((d as f32 + 0.5) * n_in as f32 / n_out as f32 - 0.5).max(0.0);
            let x0 = (x.floor() as usize).min(n_in - 1);
            (x0, (x0 + 1).min(n_in - 1), x - x0 as f32)
        }).collect()
    };
    let (xs, ys) = (axis(w, ow), axis(h, oh));
    let mut out = Vec::with_capacity(ow * oh);
    for &(y0, y1, ly) in &ys {
        for &(x0, x1, lx) in &xs {
            let top = map[y0 * w + x0] * (1.0 - lx) + map[y0 * w + x1] * lx;
            let bottom = map[y1 * w + x0] * (1.0 - lx) + map[y1 * w + x1] * lx;
            out.push(top * (1.0 - ly) + bottom * ly);
        }
    }
    Ok(out)
}
