//! Launchers of cuda/norm.cu.

use super::{arg_opt, cfg_elems, cfg_lines, dims, Cuda, THREADS};
use crate::backend::ops::NormOps;
use crate::shape::AxisLayout;
use anyhow::{ensure, Result};
use cudarc::driver::{LaunchConfig, PushKernelArg};

impl NormOps for Cuda {
    fn layer_norm(&self, x: &Self::Buf, gamma: &Self::Buf, beta: &Self::Buf, rows: usize, d: usize, eps: f32)
        -> Result<(Self::Buf, Self::Buf, Self::Buf)> {
        self.check_len("layer_norm x", x, rows * d)?;
        self.check_len("layer_norm gamma", gamma, d)?;
        self.check_len("layer_norm beta", beta, d)?;
        let (mut y, mut mean, mut rstd) = (self.alloc(rows * d)?, self.alloc(rows)?, self.alloc(rows)?);
        let rows32 = rows as i32;
        let d32 = d as i32;
        let mut launch = self.stream().launch_builder(self.f("layer_norm_fwd")?);
        launch.arg(x).arg(gamma).arg(beta).arg(&mut y).arg(&mut mean).arg(&mut rstd).arg(&rows32).arg(&d32).arg(&eps);
        // SAFETY: lengths checked above.
        unsafe { launch.launch(cfg_lines(rows)) }?;
        Ok((y, mean, rstd))
    }

    fn layer_norm_backward(&self, x: &Self::Buf, gamma: &Self::Buf, mean: &Self::Buf, rstd: &Self::Buf, gy: &Self::Buf, rows: usize, d: usize)
        -> Result<(Self::Buf, Self::Buf, Self::Buf)> {
        self.check_len("layer_norm_backward gy", gy, rows * d)?;
        self.check_len("layer_norm_backward x", x, rows * d)?;
        self.check_len("layer_norm_backward mean", mean, rows)?;
        let (mut gx, mut gg, mut gb) = (self.alloc(rows * d)?, self.alloc(d)?, self.alloc(d)?);
        let (r, dd) = (rows as i32, d as i32);
        let mut launch = self.stream().launch_builder(self.f("layer_norm_bwd")?);
        launch.arg(x).arg(gamma).arg(mean).arg(rstd).arg(gy).arg(&mut gx).arg(&r).arg(&dd);
        // SAFETY: lengths checked above.
        unsafe { launch.launch(cfg_lines(rows)) }?;
        let chunks = rows.div_ceil(256);
        let (mut pg, mut pb) = (self.alloc(chunks * d)?, self.alloc(chunks * d)?);
        let mut launch = self.stream().launch_builder(self.f("layer_norm_param_bwd")?);
        launch.arg(x).arg(mean).arg(rstd).arg(gy).arg(&mut pg).arg(&mut pb).arg(&r).arg(&dd);
        let cfg = LaunchConfig { grid_dim: (d.div_ceil(THREADS as usize) as u32, chunks as u32, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: partial buffers hold chunks * d elements.
        unsafe { launch.launch(cfg) }?;
        let c32 = chunks as i32;
        let mut launch = self.stream().launch_builder(self.f("layer_norm_param_sum")?);
        launch.arg(&pg).arg(&pb).arg(&mut gg).arg(&mut gb).arg(&c32).arg(&dd);
        // SAFETY: gg and gb hold d elements.
        unsafe { launch.launch(LaunchConfig { grid_dim: (d.div_ceil(THREADS as usize) as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }) }?;
        Ok((gx, gg, gb))
    }

    fn l2_normalize(&self, x: &Self::Buf, l: AxisLayout, eps: f32) -> Result<(Self::Buf, Self::Buf)> {
        self.check_len("l2_normalize", x, l.numel())?;
        let (mut y, mut norm) = (self.alloc(l.numel())?, self.alloc(l.lines())?);
        let (o, n, i) = dims(&l);
        let mut launch = self.stream().launch_builder(self.f("l2_normalize_fwd")?);
        launch.arg(x).arg(&mut y).arg(&mut norm).arg(&o).arg(&n).arg(&i).arg(&eps);
        // SAFETY: lengths checked / allocated above.
        unsafe { launch.launch(cfg_lines(l.lines())) }?;
        Ok((y, norm))
    }

    fn l2_normalize_backward(&self, x: &Self::Buf, norm: &Self::Buf, gy: &Self::Buf, l: AxisLayout, eps: f32) -> Result<Self::Buf> {
        self.check_len("l2_normalize_backward x", x, l.numel())?;
        self.check_len("l2_normalize_backward gy", gy, l.numel())?;
        self.check_len("l2_normalize_backward norm", norm, l.lines())?;
        let mut gx = self.alloc(l.numel())?;
        let (o, n, i) = dims(&l);
        let mut launch = self.stream().launch_builder(self.f("l2_normalize_bwd")?);
        launch.arg(x).arg(norm).arg(gy).arg(&mut gx).arg(&o).arg(&n).arg(&i).arg(&eps);
        // SAFETY: lengths checked above.
        unsafe { launch.launch(cfg_lines(l.lines())) }?;
        Ok(gx)
    }

    fn cosine(&self, a: &Self::Buf, b: &Self::Buf, l: AxisLayout, eps: f32) -> Result<Self::Buf> {
        self.check_len("cosine a", a, l.numel())?;
        self.check_len("cosine b", b, l.numel())?;
        let mut y = self.alloc(l.lines())?;
        let (o, n, i) = dims(&l);
        let mut launch = self.stream().launch_builder(self.f("cosine_fwd")?);
        launch.arg(a).arg(b).arg(&mut y).arg(&o).arg(&n).arg(&i).arg(&eps);
        // SAFETY: lengths checked above.
        unsafe { launch.launch(cfg_lines(l.lines())) }?;
        Ok(y)
    }

    fn cosine_backward(&self, a: &Self::Buf, b: &Self::Buf, gy: &Self::Buf, l: AxisLayout, eps: f32) -> Result<(Self::Buf, Self::Buf)> {
        self.check_len("cosine_backward a", a, l.numel())?;
        self.check_len("cosine_backward b", b, l.numel())?;
        self.check_len("cosine_backward gy", gy, l.lines())?;
        let (mut ga, mut gb) = (self.alloc(l.numel())?, self.alloc(l.numel())?);
        let (o, n, i) = dims(&l);
        let mut launch = self.stream().launch_builder(self.f("cosine_bwd")?);
        launch.arg(a).arg(b).arg(gy).arg(&mut ga).arg(&mut gb).arg(&o).arg(&n).arg(&i).arg(&eps);
        // SAFETY: lengths checked above.
        unsafe { launch.launch(cfg_lines(l.lines())) }?;
        Ok((ga, gb))
    }

    fn channel_affine(&self, x: &Self::Buf, scale: &Self::Buf, shift: Option<&Self::Buf>, c: usize, hw: usize) -> Result<Self::Buf> {
        self.check_len("channel_affine scale", scale, c)?;
        let n = x.len();
        ensure!(n % (c * hw) == 0, "channel_affine: {n} elements are not [n, {c}, {hw}]");
        let mut y = self.alloc(n)?;
        let (n64, c32, hw32, null) = (n as i64, c as i32, hw as i32, 0u64);
        let mut launch = self.stream().launch_builder(self.f("channel_affine")?);
        launch.arg(x).arg(scale);
        arg_opt(&mut launch, shift, &null);
        launch.arg(&mut y).arg(&n64).arg(&c32).arg(&hw32);
        // SAFETY: x and y hold n elements, scale and shift c.
        unsafe { launch.launch(cfg_elems(n)) }?;
        Ok(y)
    }

    fn batch_norm_train(&self, x: &Self::Buf, gamma: &Self::Buf, beta: &Self::Buf, n: usize, c: usize, hw: usize, eps: f32)
        -> Result<(Self::Buf, Self::Buf, Self::Buf)> {
        self.check_len("batch_norm input", x, n * c * hw)?;
        self.check_len("batch_norm gamma", gamma, c)?;
        self.check_len("batch_norm beta", beta, c)?;
        let (mut mean, mut var, mut y) = (self.alloc(c)?, self.alloc(c)?, self.alloc(n * c * hw)?);
        let (n32, c32, hw32, total) = (n as i32, c as i32, hw as i32, (n * c * hw) as i64);
        let mut launch = self.stream().launch_builder(self.f("batch_norm_stats")?);
        launch.arg(x).arg(&mut mean).arg(&mut var).arg(&n32).arg(&c32).arg(&hw32);
        // SAFETY: one block per channel over n*hw elements each.
        unsafe { launch.launch(LaunchConfig { grid_dim: (c as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }) }?;
        let mut launch = self.stream().launch_builder(self.f("batch_norm_apply")?);
        launch.arg(x).arg(&mean).arg(&var).arg(gamma).arg(beta).arg(&mut y).arg(&total).arg(&c32).arg(&hw32).arg(&eps);
        // SAFETY: lengths checked above.
        unsafe { launch.launch(cfg_elems(n * c * hw)) }?;
        Ok((y, mean, var))
    }

    fn batch_norm_backward(&self, x: &Self::Buf, gamma: &Self::Buf, mean: &Self::Buf, var: &Self::Buf, gy: &Self::Buf,
                           n: usize, c: usize, hw: usize, eps: f32) -> Result<(Self::Buf, Self::Buf, Self::Buf)> {
        self.check_len("batch_norm_backward input", x, n * c * hw)?;
        self.check_len("batch_norm_backward gy", gy, n * c * hw)?;
        let (mut gg, mut gb, mut gx) = (self.alloc(c)?, self.alloc(c)?, self.alloc(n * c * hw)?);
        let (n32, c32, hw32, total) = (n as i32, c as i32, hw as i32, (n * c * hw) as i64);
        let mut launch = self.stream().launch_builder(self.f("batch_norm_bwd_reduce")?);
        launch.arg(x).arg(gy).arg(mean).arg(var).arg(&mut gg).arg(&mut gb).arg(&n32).arg(&c32).arg(&hw32).arg(&eps);
        // SAFETY: one block per channel.
        unsafe { launch.launch(LaunchConfig { grid_dim: (c as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }) }?;
        let mut launch = self.stream().launch_builder(self.f("batch_norm_bwd_apply")?);
        launch.arg(x).arg(gy).arg(mean).arg(var).arg(gamma).arg(&gg).arg(&gb).arg(&mut gx).arg(&total).arg(&n32).arg(&c32).arg(&hw32).arg(&eps);
        // SAFETY: lengths checked above.
        unsafe { launch.launch(cfg_elems(n * c * hw)) }?;
        Ok((gx, gg, gb))
    }
}
