//! Launchers of cuda/pool.cu.

use super::{cfg_elems, Cuda};
use crate::backend::Pool2d;
use crate::backend::ops::PoolOps;
use anyhow::Result;
use cudarc::driver::PushKernelArg;

impl PoolOps for Cuda {
    fn max_pool2d(&self, p: &Pool2d, x: &Self::Buf) -> Result<(Self::Buf, Self::Buf)> {
        self.check_len("max_pool2d", x, p.x_len())?;
        let (mut y, mut arg) = (self.alloc(p.y_len())?, self.alloc(p.y_len())?);
        let mut launch = self.stream().launch_builder(self.f("max_pool2d_fwd")?);
        launch.arg(p).arg(x).arg(&mut y).arg(&mut arg);
        // SAFETY: x holds p.x_len(), y and arg p.y_len() elements.
        unsafe { launch.launch(cfg_elems(p.y_len())) }?;
        Ok((y, arg))
    }

    fn max_pool2d_backward(&self, p: &Pool2d, gy: &Self::Buf, argmax: &Self::Buf) -> Result<Self::Buf> {
        self.check_len("max_pool2d_backward gy", gy, p.y_len())?;
        self.check_len("max_pool2d_backward argmax", argmax, p.y_len())?;
        let mut gx = self.alloc(p.x_len())?;
        let mut launch = self.stream().launch_builder(self.f("max_pool2d_bwd")?);
        launch.arg(p).arg(gy).arg(argmax).arg(&mut gx);
        // SAFETY: as above.
        unsafe { launch.launch(cfg_elems(p.x_len())) }?;
        Ok(gx)
    }

    fn upsample_nearest(&self, p: &Pool2d, x: &Self::Buf) -> Result<Self::Buf> {
        self.check_len("upsample_nearest", x, p.x_len())?;
        let mut y = self.alloc(p.y_len())?;
        let mut launch = self.stream().launch_builder(self.f("upsample_nearest_fwd")?);
        launch.arg(p).arg(x).arg(&mut y);
        // SAFETY: x holds p.x_len(), y p.y_len() elements.
        unsafe { launch.launch(cfg_elems(p.y_len())) }?;
        Ok(y)
    }

    fn upsample_nearest_backward(&self, p: &Pool2d, gy: &Self::Buf) -> Result<Self::Buf> {
        self.check_len("upsample_nearest_backward", gy, p.y_len())?;
        let mut gx = self.alloc(p.x_len())?;
        let mut launch = self.stream().launch_builder(self.f("upsample_nearest_bwd")?);
        launch.arg(p).arg(gy).arg(&mut gx);
        // SAFETY: as above.
        unsafe { launch.launch(cfg_elems(p.x_len())) }?;
        Ok(gx)
    }
}
