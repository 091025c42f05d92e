//! The CUDA backend's box geometry (cuda/boxes.cu). NMS sorts the scores on
//! the host (stable, as the CPU), marks suppressions on the GPU in 64-box
//! bit masks, and walks the masks on the host: the same greedy rule.

use super::{cfg_elems, Cuda};
use crate::geometry::anchors::{cell_anchors, retinanet_sizes, ASPECT_RATIOS};
use crate::geometry::boxes::BoxCoder;
use crate::geometry::matcher::Matcher;
use crate::geometry::nms::order_by_score;
use anyhow::{ensure, Result};
use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};

unsafe impl DeviceRepr for BoxCoder {}

const NMS_BLOCK: usize = 64;

fn rows(what: &str, x: &CudaSlice<f32>) -> Result<usize> {
    ensure!(x.len() % 4 == 0, "{what}: {} values are not rows of 4 box coordinates", x.len());
    Ok(x.len() / 4)
}

impl Cuda {
    pub(super) fn box_iou_gpu(&self, a: &CudaSlice<f32>, b: &CudaSlice<f32>) -> Result<CudaSlice<f32>> {
        let (na, nb) = (rows("box_iou", a)? as i32, rows("box_iou", b)? as i32);
        let mut iou = self.alloc((na * nb).max(1) as usize)?;
        let mut l = self.stream().launch_builder(self.f("box_iou")?);
        l.arg(a).arg(b).arg(&mut iou).arg(&na).arg(&nb);
        // SAFETY: a holds na rows, b nb rows, iou na * nb values.
        unsafe { l.launch(cfg_elems((na * nb) as usize)) }?;
        Ok(iou)
    }

    pub(super) fn box_encode_gpu(&self, c: &BoxCoder, gt: &CudaSlice<f32>, anchors: &CudaSlice<f32>) -> Result<CudaSlice<f32>> {
        let n = rows("box_encode", anchors)?;
        ensure!(rows("box_encode", gt)? == n, "box_encode: {} boxes for {n} anchors", gt.len() / 4);
        let mut d = self.alloc(4 * n.max(1))?;
        let ni = n as i32;
        let mut l = self.stream().launch_builder(self.f("box_encode")?);
        l.arg(c).arg(gt).arg(anchors).arg(&mut d).arg(&ni);
        // SAFETY: gt, anchors and d hold n rows.
        unsafe { l.launch(cfg_rows(n)) }?;
        Ok(d)
    }

    pub(super) fn box_decode_gpu(&self, c: &BoxCoder, d: &CudaSlice<f32>, anchors: &CudaSlice<f32>, clip: Option<[usize; 2]>) -> Result<CudaSlice<f32>> {
        let n = rows("box_decode", anchors)?;
        ensure!(rows("box_decode", d)? == n, "box_decode: {} regressions for {n} anchors", d.len() / 4);
        let mut out = self.alloc(4 * n.max(1))?;
        let ni = n as i32;
        // clip width 0 means no clipping
        let (h, w) = clip.map_or((0.0f32, 0.0f32), |s| (s[0] as f32, s[1] as f32));
        let mut l = self.stream().launch_builder(self.f("box_decode")?);
        l.arg(c).arg(d).arg(anchors).arg(&mut out).arg(&ni).arg(&h).arg(&w);
        // SAFETY: d, anchors and out hold n rows.
        unsafe { l.launch(cfg_rows(n)) }?;
        Ok(out)
    }

    pub(super) fn anchors_gpu(&self, image_size: [usize; 2], grids: &[[usize; 2]], scale: f32) -> Result<CudaSlice<f32>> {
        let sizes = retinanet_sizes();
        let n_cells = sizes[0].len() * ASPECT_RATIOS.len();
        let total: usize = grids.iter().map(|g| g[0] * g[1] * n_cells).sum();
        let mut out = self.alloc(4 * total.max(1))?;
        let mut offset = 0i64;
        for (l, g) in grids.iter().enumerate() {
            let s = sizes[l.min(sizes.len() - 1)].map(|v| (v * scale).trunc());
            let cells: Vec<f32> = cell_anchors(&s, &ASPECT_RATIOS).into_iter().flatten().collect();
            let cells = self.stream().clone_htod(&cells)?;
            let (gh, gw, nc) = (g[0] as i32, g[1] as i32, n_cells as i32);
            let (sy, sx) = ((image_size[0] / g[0]) as f32, (image_size[1] / g[1]) as f32);
            let mut b = self.stream().launch_builder(self.f("anchors_level")?);
            b.arg(&cells).arg(&nc).arg(&gh).arg(&gw).arg(&sy).arg(&sx).arg(&mut out).arg(&offset);
            // SAFETY: out holds `total` rows; this level writes rows offset..offset + gh gw n_cells.
            unsafe { b.launch(cfg_rows(g[0] * g[1] * n_cells)) }?;
            offset += (g[0] * g[1] * n_cells) as i64;
        }
        Ok(out)
    }

    pub(super) fn nms_gpu(&self, boxes: &CudaSlice<f32>, scores: &CudaSlice<f32>, threshold: f32) -> Result<Vec<usize>> {
        let n = rows("nms", boxes)?;
        ensure!(scores.len() == n, "nms: {n} boxes and {} scores", scores.len());
        if n == 0 {
            return Ok(Vec::new());
        }
        let order = order_by_score(&self.stream().clone_dtoh(scores)?);
        let host = self.stream().clone_dtoh(boxes)?;
        let sorted: Vec<f32> = order.iter().flat_map(|&i| host[4 * i..4 * i + 4].iter().copied()).collect();
        let sorted = self.stream().clone_htod(&sorted)?;
        let blocks = n.div_ceil(NMS_BLOCK);
        let mut mask = self.stream().alloc_zeros::<u64>(n * blocks)?;
        let ni = n as i32;
        let mut l = self.stream().launch_builder(self.f("nms_mask")?);
        l.arg(&sorted).arg(&ni).arg(&threshold).arg(&mut mask);
        let cfg = LaunchConfig { grid_dim: (blocks as u32, blocks as u32, 1), block_dim: (NMS_BLOCK as u32, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: sorted holds n rows, mask n x blocks words.
        unsafe { l.launch(cfg) }?;
        let mask = self.stream().clone_dtoh(&mask)?;
        let mut removed = vec![0u64; blocks];
        let mut keep = Vec::new();
        for i in 0..n {
            if removed[i / NMS_BLOCK] >> (i % NMS_BLOCK) & 1 == 0 {
                keep.push(order[i]);
                for (r, m) in removed.iter_mut().zip(&mask[i * blocks..(i + 1) * blocks]) {
                    *r |= m;
                }
            }
        }
        Ok(keep)
    }

    pub(super) fn match_anchors_gpu(&self, m: &Matcher, gt: &CudaSlice<f32>, anchors: &CudaSlice<f32>) -> Result<Vec<i64>> {
        let (ng, na) = (rows("match_anchors", gt)?, rows("match_anchors", anchors)?);
        if ng == 0 || na == 0 {
            return Ok(vec![crate::geometry::matcher::BACKGROUND; na]);
        }
        let (ngi, nai) = (ng as i32, na as i32);
        let (mut best_iou, mut best_gt) = (self.alloc(na)?, self.alloc(na)?);
        // -inf as int bits: below the bits of every IoU (>= +0)
        let mut best_per_gt = self.stream().clone_htod(&vec![f32::NEG_INFINITY.to_bits() as i32; ng])?;
        let mut l = self.stream().launch_builder(self.f("match_best")?);
        l.arg(gt).arg(&ngi).arg(anchors).arg(&nai).arg(&mut best_iou).arg(&mut best_gt).arg(&mut best_per_gt);
        // SAFETY: gt holds ng rows, anchors na; the outputs na and ng values.
        unsafe { l.launch(cfg_rows(na)) }?;
        let mut matches = self.alloc(na)?;
        let allow = m.allow_low_quality as i32;
        let mut l = self.stream().launch_builder(self.f("match_assign")?);
        l.arg(gt).arg(&ngi).arg(anchors).arg(&nai).arg(&best_iou).arg(&best_gt).arg(&best_per_gt).arg(&m.low).arg(&m.high).arg(&allow).arg(&mut matches);
        // SAFETY: as above.
        unsafe { l.launch(cfg_rows(na)) }?;
        // indices and the -1 / -2 codes are exact in f32
        Ok(self.stream().clone_dtoh(&matches)?.into_iter().map(|v| v as i64).collect())
    }
}

/// One thread per row.
fn cfg_rows(n: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (n.div_ceil(256).max(1) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

use crate::backend::ops::BoxOps;

impl BoxOps for Cuda {
    fn box_iou(&self, a: &Self::Buf, b: &Self::Buf) -> Result<Self::Buf> {
        self.box_iou_gpu(a, b)
    }

    fn box_encode(&self, coder: &BoxCoder, gt: &Self::Buf, anchors: &Self::Buf) -> Result<Self::Buf> {
        self.box_encode_gpu(coder, gt, anchors)
    }

    fn box_decode(&self, coder: &BoxCoder, d: &Self::Buf, anchors: &Self::Buf, clip: Option<[usize; 2]>) -> Result<Self::Buf> {
        self.box_decode_gpu(coder, d, anchors, clip)
    }

    fn anchors(&self, image_size: [usize; 2], grids: &[[usize; 2]], scale: f32) -> Result<Self::Buf> {
        self.anchors_gpu(image_size, grids, scale)
    }

    fn nms(&self, boxes: &Self::Buf, scores: &Self::Buf, threshold: f32) -> Result<Vec<usize>> {
        self.nms_gpu(boxes, scores, threshold)
    }

    fn match_anchors(&self, matcher: &Matcher, gt: &Self::Buf, anchors: &Self::Buf) -> Result<Vec<i64>> {
        self.match_anchors_gpu(matcher, gt, anchors)
    }
}
