//! RetinaNet anchors (torchvision AnchorGenerator): per level l = 3..7 sizes
//! (2^(l+2)) x {2^0, 2^(1/3), 2^(2/3)} truncated to integers, aspect ratios
//! h/w in {0.5, 1, 2}; cell anchors rounded half-to-even, ratio-major; centres
//! at (x * stride, y * stride), top-left aligned; order (level, y, x, anchor).

use super::boxes::BoxF;

/// torchvision's retinanet sizes: (x, int(x 2^(1/3)), int(x 2^(2/3))).
pub fn retinanet_sizes() -> Vec<[f32; 3]> {
    [32.0f64, 64.0, 128.0, 256.0, 512.0]
        .iter()
        .map(|&x| [x as f32, (x * 2f64.powf(1.0 / 3.0)).trunc() as f32, (x * 2f64.powf(2.0 / 3.0)).trunc() as f32])
        .collect()
}

pub const ASPECT_RATIOS: [f32; 3] = [0.5, 1.0, 2.0];

/// The 9 cell anchors of one level, centred on 0.
pub fn cell_anchors(sizes: &[f32], ratios: &[f32]) -> Vec<BoxF> {
    let mut out = Vec::new();
    for &r in ratios {
        let h_ratio = r.sqrt();
        let w_ratio = 1.0 / h_ratio;
        for &s in sizes {
            let (w, h) = (w_ratio * s, h_ratio * s);
            out.push([(-w / 2.0).round_ties_even(), (-h / 2.0).round_ties_even(), (w / 2.0).round_ties_even(), (h / 2.0).round_ties_even()]);
        }
    }
    out
}

/// Anchors of one image of `image_size` `[h, w]` over feature maps `grids`
/// (`[h_l, w_l]` per level), flattened (level, y, x, anchor); `scale`
/// multiplies torchvision's sizes (1 = torchvision).
pub fn anchors_for(image_size: [usize; 2], grids: &[[usize; 2]], scale: f32) -> Vec<BoxF> {
    let sizes: Vec<[f32; 3]> = retinanet_sizes().iter().map(|s| s.map(|v| (v * scale).trunc())).collect();
    let mut out = Vec::new();
    for (l, g) in grids.iter().enumerate() {
        let cells = cell_anchors(&sizes[l.min(sizes.len() - 1)], &ASPECT_RATIOS);
        let (sy, sx) = ((image_size[0] / g[0]) as f32, (image_size[1] / g[1]) as f32);
        for y in 0..g[0] {
            for x in 0..g[1] {
                let (cx, cy) = (x as f32 * sx, y as f32 * sy);
                out.extend(cells.iter().map(|c| [c[0] + cx, c[1] + cy, c[2] + cx, c[3] + cy]));
            }
        }
    }
    out
}

/// Feature-map sizes of P3..P7 for a square or rectangular input (stride-2
/// convolutions with padding: ceil halving from the stem on).
pub fn pyramid_grids(image_size: [usize; 2]) -> Vec<[usize; 2]> {
    let half = |v: usize| v.div_ceil(2);
    let mut s = [image_size[0], image_size[1]];
    // stem conv /2, max-pool /2, layer2 /2 -> P3 at /8
    for _ in 0..3 {
        s = [half(s[0]), half(s[1])];
    }
    let mut out = Vec::new();
    for _ in 0..5 {
        out.push(s);
        s = [half(s[0]), half(s[1])];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_cell_anchors_and_counts() {
        // SPEC section 3.4 and 7
        let c = cell_anchors(&retinanet_sizes()[0], &ASPECT_RATIOS);
        assert_eq!(c[0], [-23.0, -11.0, 23.0, 11.0]);
        assert_eq!(c[4], [-20.0, -20.0, 20.0, 20.0]);
        assert_eq!(c[8], [-18.0, -35.0, 18.0, 35.0]);
        assert_eq!(retinanet_sizes()[4], [512.0, 645.0, 812.0]);
        for (size, count) in [(512, 49_104), (800, 120_087), (1024, 196_416)] {
            let grids = pyramid_grids([size, size]);
            assert_eq!(anchors_for([size, size], &grids, 1.0).len(), count, "{size}");
        }
    }
}
