//! Launchers of cuda/gemm.cu.

use super::{Cuda, THREADS};
use crate::backend::Gemm;
use crate::backend::ops::GemmOps;
use anyhow::{ensure, Result};
use cudarc::driver::{LaunchConfig, PushKernelArg};

impl GemmOps for Cuda {
    fn gemm(&self, g: &Gemm, a: &Self::Buf, b: &Self::Buf, c: &mut Self::Buf) -> Result<()> {
        let (la, lb, lc) = g.min_lens();
        ensure!(a.len() >= la && b.len() >= lb && c.len() >= lc,
            "gemm {}x{}x{} (batch {}): buffers of {}, {}, {} elements are too short (need {la}, {lb}, {lc})",
            g.m, g.n, g.k, g.batch, a.len(), b.len(), c.len());
        ensure!(g.batch <= 65_535, "gemm: batch {} is over the grid limit 65535", g.batch);
        // Few output tiles and a long K (weight gradients): split K so that the GPU fills up.
        let tiles = (g.n.div_ceil(128) * g.m.div_ceil(128)) as usize;
        if g.batch == 1 && tiles < 64 && g.k >= 2048 {
            let splits = (264 / tiles).clamp(2, (g.k / 512) as usize);
            let chunk = (g.k as usize).div_ceil(splits).div_ceil(8) * 8;
            let splits = (g.k as usize).div_ceil(chunk);
            let mn = (g.m * g.n) as usize;
            let mut partial = self.alloc(splits * mn)?;
            let c32 = chunk as i32;
            let mut launch = self.stream().launch_builder(self.f("gemm_f32_splitk")?);
            launch.arg(g).arg(a).arg(b).arg(&mut partial).arg(&c32);
            let cfg = LaunchConfig { grid_dim: (g.n.div_ceil(128), g.m.div_ceil(128), splits as u32), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
            // SAFETY: lengths checked above; partial holds splits * m * n.
            unsafe { launch.launch(cfg) }?;
            let (mn64, s32) = (mn as i64, splits as i32);
            let mut launch = self.stream().launch_builder(self.f("gemm_splitk_sum")?);
            launch.arg(&partial).arg(c).arg(&mn64).arg(&s32).arg(&g.alpha).arg(&g.beta);
            // SAFETY: c holds at least m * n (checked above).
            unsafe { launch.launch(LaunchConfig { grid_dim: ((mn as u32).div_ceil(THREADS), 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }) }?;
            return Ok(());
        }
        let cfg = LaunchConfig {
            grid_dim: (g.n.div_ceil(128), g.m.div_ceil(128), g.batch),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = self.stream().launch_builder(self.f("gemm_f32")?);
        launch.arg(g).arg(a).arg(b).arg(c);
        // SAFETY: lengths checked above cover every matrix of the batch.
        unsafe { launch.launch(cfg) }?;
        Ok(())
    }
}
