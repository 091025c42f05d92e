//! The CUDA backend's fused cross-attention (cuda/attention.cu): forward in
//! five launches, backward in six, all spread over many blocks; one scratch
//! allocation per call, carved into the kernels' `Scratch` fields.

use super::Cuda;
use crate::backend::XAttn;
use anyhow::{ensure, Result};
use cudarc::driver::{CudaSlice, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg};

/// Device pointers into one scratch buffer (cuda/attention.cu `Scratch`, same order).
#[repr(C)]
#[derive(Clone, Copy)]
struct XScratch {
    s: u64,
    z: u64,
    a: u64,
    pb: u64,
    pn: u64,
    rb: u64,
    ca: u64,
    rroi: u64,
    rtext: u64,
    nm: u64,
    colb: u64,
    colz: u64,
    ga: u64,
    gpb: u64,
    gza: u64,
}

// SAFETY: repr(C) struct of u64 device pointers, mirrored in cuda/attention.cu.
unsafe impl DeviceRepr for XScratch {}

/// Lengths of the scratch fields, in `XScratch` order.
fn scratch_lens(p: &XAttn) -> [usize; 15] {
    let (b, n, m, d) = (p.b as usize, p.n as usize, p.m as usize, p.d as usize);
    let (bnm, bn, bm) = (b * n * m, b * n, b * m);
    [bnm, bnm, bnm, bnm, bn, bn, bm, bn, bm, bm, bm, bm, bm * d, bnm, bnm]
}

/// Warp per ROI, 8 ROIs a block.
fn per_roi(p: &XAttn) -> LaunchConfig {
    LaunchConfig { grid_dim: (p.b as u32, (p.n as u32).div_ceil(8), 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

/// One block of `threads` per (sample, attribute slot).
fn per_slot(p: &XAttn, threads: u32) -> LaunchConfig {
    LaunchConfig { grid_dim: (p.b as u32, p.m as u32, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}

impl Cuda {
    /// Allocates the scratch and runs xattn_scores and xattn_softmax; the
    /// buffer must outlive the caller's launches (dropped after them, freed in
    /// stream order).
    fn xattn_prepare(&self, p: &XAttn, phi: &CudaSlice<f32>, m: &CudaSlice<f32>, mask: &CudaSlice<f32>) -> Result<(XScratch, CudaSlice<f32>)> {
        ensure!(p.m <= 32 && p.d <= 256, "fused cross-attention supports up to 32 attribute slots and 256 features, got {} and {}", p.m, p.d);
        let lens = scratch_lens(p);
        let buf = self.alloc(lens.iter().sum())?;
        let base = buf.device_ptr(self.stream()).0;
        let mut at = [0u64; 15];
        let mut off = 0u64;
        for (a, len) in at.iter_mut().zip(lens) {
            *a = base + 4 * off;
            off += len as u64;
        }
        let [s, z, a, pb, pn, rb, ca, rroi, rtext, nm, colb, colz, ga, gpb, gza] = at;
        let sc = XScratch { s, z, a, pb, pn, rb, ca, rroi, rtext, nm, colb, colz, ga, gpb, gza };
        let mut l = self.stream().launch_builder(self.f("xattn_scores")?);
        l.arg(p).arg(phi).arg(m).arg(mask).arg(&sc);
        // SAFETY: buffer lengths checked by the caller against p; scratch sized above.
        unsafe { l.launch(per_roi(p)) }?;
        let mut l = self.stream().launch_builder(self.f("xattn_softmax")?);
        l.arg(p).arg(mask).arg(&sc);
        // SAFETY: as above.
        unsafe { l.launch(LaunchConfig { grid_dim: (p.b as u32, 1, 1), block_dim: (512, 1, 1), shared_mem_bytes: 0 }) }?;
        Ok((sc, buf))
    }

    pub(super) fn cross_attention_gpu(&self, p: &XAttn, phi: &CudaSlice<f32>, alpha: &CudaSlice<f32>, m: &CudaSlice<f32>, mask: &CudaSlice<f32>) -> Result<CudaSlice<f32>> {
        let (b, n, mm, d) = (p.b as usize, p.n as usize, p.m as usize, p.d as usize);
        ensure!(phi.len() == b * n * d && alpha.len() == b * n && m.len() == b * mm * d && mask.len() == b * mm, "cross_attention: buffers do not fit {p:?}");
        let (sc, keep) = self.xattn_prepare(p, phi, m, mask)?;
        let mut l = self.stream().launch_builder(self.f("xattn_roi")?);
        l.arg(p).arg(phi).arg(m).arg(mask).arg(&sc);
        // SAFETY: lengths checked above; the scratch lives in `keep` until the stream is done with it.
        unsafe { l.launch(per_roi(p)) }?;
        let mut l = self.stream().launch_builder(self.f("xattn_text")?);
        l.arg(p).arg(phi).arg(alpha).arg(m).arg(mask).arg(&sc);
        // SAFETY: as above.
        unsafe { l.launch(per_slot(p, 256)) }?;
        let mut out = self.alloc(2 * b)?;
        let mut l = self.stream().launch_builder(self.f("xattn_sum")?);
        l.arg(p).arg(mask).arg(&sc).arg(&mut out);
        // SAFETY: as above; out holds 2b values.
        unsafe { l.launch(LaunchConfig { grid_dim: (p.b as u32, 1, 1), block_dim: (32, 1, 1), shared_mem_bytes: 0 }) }?;
        drop(keep);
        Ok(out)
    }

    pub(super) fn cross_attention_backward_gpu(&self, p: &XAttn, phi: &CudaSlice<f32>, alpha: &CudaSlice<f32>, m: &CudaSlice<f32>, mask: &CudaSlice<f32>,
                                               g: &CudaSlice<f32>) -> Result<(CudaSlice<f32>, CudaSlice<f32>)> {
        let (b, n, mm, d) = (p.b as usize, p.n as usize, p.m as usize, p.d as usize);
        ensure!(phi.len() == b * n * d && alpha.len() == b * n && m.len() == b * mm * d && mask.len() == b * mm && g.len() == 2 * b,
            "cross_attention_backward: buffers do not fit {p:?}");
        let (sc, keep) = self.xattn_prepare(p, phi, m, mask)?;
        let mut l = self.stream().launch_builder(self.f("xattn_grad_text")?);
        l.arg(p).arg(phi).arg(alpha).arg(m).arg(mask).arg(&sc).arg(g);
        // SAFETY: lengths checked above; the scratch lives in `keep` until the stream is done with it.
        unsafe { l.launch(per_slot(p, 256)) }?;
        let (mut gphi, mut galpha) = (self.alloc(b * n * d)?, self.alloc(b * n)?);
        let mut l = self.stream().launch_builder(self.f("xattn_grad_rows")?);
        l.arg(p).arg(phi).arg(alpha).arg(m).arg(mask).arg(&sc).arg(g).arg(&mut gphi).arg(&mut galpha);
        // SAFETY: as above; every element of gphi and galpha is written here.
        unsafe { l.launch(per_roi(p)) }?;
        let mut l = self.stream().launch_builder(self.f("xattn_grad_cols")?);
        l.arg(p).arg(&sc);
        // SAFETY: as above.
        unsafe { l.launch(per_slot(p, 32)) }?;
        let mut l = self.stream().launch_builder(self.f("xattn_grad_scores")?);
        l.arg(p).arg(phi).arg(m).arg(mask).arg(&sc).arg(&mut gphi);
        // SAFETY: as above.
        unsafe { l.launch(per_roi(p)) }?;
        drop(keep);
        Ok((gphi, galpha))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_holds_every_field_of_the_kernels_struct() {
        let p = XAttn { b: 3, n: 7, m: 5, d: 11, lambda_a: 4.0, lambda_b: 9.0, slope: 0.1 };
        let lens = scratch_lens(&p);
        // 6 [b,n,m], 3 [b,n], 5 [b,m], 1 [b,m,d]
        assert_eq!(lens.iter().sum::<usize>(), 6 * 105 + 3 * 21 + 5 * 15 + 15 * 11);
        assert_eq!(std::mem::size_of::<XScratch>(), 8 * lens.len());
    }
}

use crate::backend::ops::AttentionOps;

impl AttentionOps for Cuda {
    fn cross_attention(&self, p: &XAttn, phi: &Self::Buf, alpha: &Self::Buf, m: &Self::Buf, mask: &Self::Buf) -> Result<Self::Buf> {
        self.cross_attention_gpu(p, phi, alpha, m, mask)
    }

    fn cross_attention_backward(&self, p: &XAttn, phi: &Self::Buf, alpha: &Self::Buf, m: &Self::Buf, mask: &Self::Buf, g: &Self::Buf)
        -> Result<(Self::Buf, Self::Buf)> {
        self.cross_attention_backward_gpu(p, phi, alpha, m, mask, g)
    }
}
