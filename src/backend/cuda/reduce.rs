//! Launchers of cuda/reduce.cu.

use super::{cfg_elems, cfg_lines, dims, Cuda};
use crate::backend::ops::ReduceOps;
use crate::shape::AxisLayout;
use anyhow::Result;
use cudarc::driver::{LaunchConfig, PushKernelArg};

impl ReduceOps for Cuda {
    fn sum_axis(&self, x: &Self::Buf, l: AxisLayout, mean: bool) -> Result<Self::Buf> {
        self.check_len("sum_axis", x, l.numel())?;
        let mut y = self.alloc(l.lines())?;
        let (o, n, i) = dims(&l);
        let mean32 = mean as i32;
        let mut launch = self.stream().launch_builder(self.f("sum_axis_fwd")?);
        launch.arg(x).arg(&mut y).arg(&o).arg(&n).arg(&i).arg(&mean32);
        // SAFETY: x holds outer*n*inner, y outer*inner elements.
        unsafe { launch.launch(cfg_lines(l.lines())) }?;
        Ok(y)
    }

    fn sum_axis_backward(&self, gy: &Self::Buf, l: AxisLayout, mean: bool) -> Result<Self::Buf> {
        self.check_len("sum_axis_backward", gy, l.lines())?;
        let mut gx = self.alloc(l.numel())?;
        let (o, n, i) = dims(&l);
        let mean32 = mean as i32;
        let mut launch = self.stream().launch_builder(self.f("sum_axis_bwd")?);
        launch.arg(gy).arg(&mut gx).arg(&o).arg(&n).arg(&i).arg(&mean32);
        // SAFETY: as sum_axis.
        unsafe { launch.launch(cfg_lines(l.lines())) }?;
        Ok(gx)
    }

    fn sum_squares(&self, x: &Self::Buf) -> Result<f64> {
        let n = x.len();
        let cfg = cfg_elems(n);
        let blocks = cfg.grid_dim.0.min(1024);
        let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), ..cfg };
        let mut partial = self.stream().alloc_zeros::<f64>(blocks as usize)?;
        let n64 = n as i64;
        let mut launch = self.stream().launch_builder(self.f("sum_squares")?);
        launch.arg(x).arg(&mut partial).arg(&n64);
        // SAFETY: x holds n elements, partial one per block.
        unsafe { launch.launch(cfg) }?;
        let host = self.stream().clone_dtoh(&partial)?;
        self.stream().synchronize()?;
        Ok(host.iter().sum())
    }
}
