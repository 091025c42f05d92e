//! Boxes as `[x1, y1, x2, y2]` (widths are x2 - x1, no +1), as torchvision:
//! IoU, the box coder (encode / decode with weights and the dw/dh clamp),
//! clipping to the image.

pub type BoxF = [f32; 4];

/// log(1000 / 16): torchvision's clamp of dw, dh before exp.
pub const BBOX_XFORM_CLIP: f32 = 4.135_166_5;

pub fn area(b: &BoxF) -> f32 {
    (b[2] - b[0]) * (b[3] - b[1])
}

pub fn iou(a: &BoxF, b: &BoxF) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    inter / (area(a) + area(b) - inter)
}

/// `[a.len(), b.len()]` matrix of IoUs, row-major.
pub fn box_iou(a: &[BoxF], b: &[BoxF]) -> Vec<f32> {
    a.iter().flat_map(|x| b.iter().map(move |y| iou(x, y))).collect()
}

/// torchvision BoxCoder (weights wx, wy, ww, wh). Mirrored in cuda/boxes.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BoxCoder {
    pub weights: [f32; 4],
    pub clip: f32,
}

impl Default for BoxCoder {
    fn default() -> Self {
        BoxCoder { weights: [1.0; 4], clip: BBOX_XFORM_CLIP }
    }
}

impl BoxCoder {
    /// Regression targets of `gt` relative to `anchor`.
    pub fn encode(&self, gt: &BoxF, anchor: &BoxF) -> [f32; 4] {
        let [wx, wy, ww, wh] = self.weights;
        let (aw, ah) = (anchor[2] - anchor[0], anchor[3] - anchor[1]);
        let (ax, ay) = (anchor[0] + 0.5 * aw, anchor[1] + 0.5 * ah);
        let (gw, gh) = (gt[2] - gt[0], gt[3] - gt[1]);
        let (gx, gy) = (gt[0] + 0.5 * gw, gt[1] + 0.5 * gh);
        [wx * (gx - ax) / aw, wy * (gy - ay) / ah, ww * (gw / aw).ln(), wh * (gh / ah).ln()]
    }

    /// The box that regression `d` makes of `anchor`.
    pub fn decode(&self, d: &[f32; 4], anchor: &BoxF) -> BoxF {
        let [wx, wy, ww, wh] = self.weights;
        let (aw, ah) = (anchor[2] - anchor[0], anchor[3] - anchor[1]);
        let (ax, ay) = (anchor[0] + 0.5 * aw, anchor[1] + 0.5 * ah);
        let (dx, dy) = (d[0] / wx, d[1] / wy);
        let (dw, dh) = ((d[2] / ww).min(self.clip), (d[3] / wh).min(self.clip));
        let (cx, cy) = (dx * aw + ax, dy * ah + ay);
        let (w, h) = (dw.exp() * aw, dh.exp() * ah);
        [cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h]
    }
}

/// Clips a box to an image of `[height, width]`.
pub fn clip(b: &BoxF, size: [usize; 2]) -> BoxF {
    let (h, w) = (size[0] as f32, size[1] as f32);
    [b[0].clamp(0.0, w), b[1].clamp(0.0, h), b[2].clamp(0.0, w), b[3].clamp(0.0, h)]
}

pub fn as_boxes(flat: &[f32]) -> Vec<BoxF> {
    flat.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let c = BoxCoder::default();
        let (a, g) = ([10.0, 20.0, 50.0, 60.0], [12.0, 18.0, 70.0, 55.0]);
        let d = c.decode(&c.encode(&g, &a), &a);
        for i in 0..4 {
            assert!((d[i] - g[i]).abs() < 1e-4, "{d:?} vs {g:?}");
        }
        assert!((iou(&a, &a) - 1.0).abs() < 1e-6);
        assert_eq!(iou(&a, &[100.0, 100.0, 110.0, 110.0]), 0.0);
    }
}
