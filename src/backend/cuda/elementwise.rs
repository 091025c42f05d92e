//! Launchers of cuda/elementwise.cu.

use super::{cfg_elems, Cuda, THREADS};
use crate::backend::{Binary, Unary};
use crate::backend::ops::ElementwiseOps;
use crate::shape::{Broadcast, ReduceLayout};
use anyhow::{ensure, Result};
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

impl ElementwiseOps for Cuda {
    fn unary(&self, op: Unary, x: &Self::Buf) -> Result<Self::Buf> {
        let n = x.len();
        let mut y = self.alloc(n)?;
        let (code, p) = op.code();
        let n64 = n as i64;
        let mut launch = self.stream().launch_builder(self.f("unary_fwd")?);
        launch.arg(&code).arg(&p).arg(x).arg(&mut y).arg(&n64);
        // SAFETY: x and y hold n elements.
        unsafe { launch.launch(cfg_elems(n)) }?;
        Ok(y)
    }

    fn unary_backward(&self, op: Unary, x: &Self::Buf, y: &Self::Buf, gy: &Self::Buf) -> Result<Self::Buf> {
        let n = gy.len();
        self.check_len("unary_backward x", x, n)?;
        self.check_len("unary_backward y", y, n)?;
        let mut gx = self.alloc(n)?;
        let (code, p) = op.code();
        let n64 = n as i64;
        let mut launch = self.stream().launch_builder(self.f("unary_bwd")?);
        launch.arg(&code).arg(&p).arg(x).arg(y).arg(gy).arg(&mut gx).arg(&n64);
        // SAFETY: every buffer holds n elements (checked above).
        unsafe { launch.launch(cfg_elems(n)) }?;
        Ok(gx)
    }

    fn binary(&self, op: Binary, a: &Self::Buf, b: &Self::Buf, l: &Broadcast) -> Result<Self::Buf> {
        let n = l.out_numel();
        let mut y = self.alloc(n)?;
        let code = op.code();
        let n64 = n as i64;
        let mut launch = self.stream().launch_builder(self.f("binary_fwd")?);
        launch.arg(&code).arg(l).arg(a).arg(b).arg(&mut y).arg(&n64);
        // SAFETY: the layout was built from the shapes of a and b; y holds n elements.
        unsafe { launch.launch(cfg_elems(n)) }?;
        Ok(y)
    }

    fn reduce_broadcast(&self, g: &Self::Buf, l: &ReduceLayout) -> Result<Self::Buf> {
        let (kept, red) = (l.kept_numel(), l.red_numel());
        self.check_len("reduce_broadcast", g, kept * red)?;
        // Partial sums of 64 reduced elements each (RED_CHUNK in elementwise.cu), then their sum.
        let chunks = red.div_ceil(64);
        ensure!(chunks <= 65_535, "reduce_broadcast: {red} reduced elements is over the grid limit");
        let mut partial = self.alloc(chunks * kept)?;
        let (kept64, red64) = (kept as i64, red as i64);
        let blocks = kept.div_ceil(THREADS as usize) as u32;
        let mut launch = self.stream().launch_builder(self.f("reduce_broadcast")?);
        launch.arg(l).arg(g).arg(&mut partial).arg(&kept64).arg(&red64);
        let cfg = LaunchConfig { grid_dim: (blocks, chunks as u32, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: g holds kept*red elements, partial chunks*kept.
        unsafe { launch.launch(cfg) }?;
        self.sum_partials(&partial, kept, chunks)
    }

    fn axpy(&self, acc: &mut Self::Buf, alpha: f32, x: &Self::Buf) -> Result<()> {
        let n = acc.len();
        ensure!(x.len() == n, "axpy: lengths {n} and {} differ", x.len());
        let n64 = n as i64;
        let mut launch = self.stream().launch_builder(self.f("axpy")?);
        launch.arg(acc).arg(&alpha).arg(x).arg(&n64);
        // SAFETY: both hold n elements.
        unsafe { launch.launch(cfg_elems(n)) }?;
        Ok(())
    }
}

impl Cuda {
    /// `out[i] = sum_c partial[c * n + i]` over `chunks` partial sums, in a
    /// fixed order (the second pass of split reductions: broadcast sums and
    /// convolution weight gradients).
    pub(super) fn sum_partials(&self, partial: &CudaSlice<f32>, n: usize, chunks: usize) -> Result<CudaSlice<f32>> {
        self.check_len("sum_partials", partial, chunks * n)?;
        let mut out = self.alloc(n)?;
        let (n64, chunks32) = (n as i64, chunks as i32);
        let mut launch = self.stream().launch_builder(self.f("reduce_broadcast_sum")?);
        launch.arg(partial).arg(&mut out).arg(&n64).arg(&chunks32);
        let cfg = LaunchConfig { grid_dim: (n.div_ceil(THREADS as usize) as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: partial holds chunks * n elements (checked), out n.
        unsafe { launch.launch(cfg) }?;
        Ok(out)
    }
}
