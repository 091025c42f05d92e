//! Launchers of cuda/softmax.cu.

use super::{cfg_lines, dims, Cuda};
use crate::backend::ops::SoftmaxOps;
use crate::shape::AxisLayout;
use anyhow::Result;
use cudarc::driver::PushKernelArg;

impl SoftmaxOps for Cuda {
    fn softmax(&self, x: &Self::Buf, mask: Option<&Self::Buf>, l: AxisLayout, scale: f32) -> Result<Self::Buf> {
        self.check_len("softmax", x, l.numel())?;
        let mut y = self.alloc(l.numel())?;
        let (o, n, i) = dims(&l);
        let null: u64 = 0;
        let mut launch = self.stream().launch_builder(self.f("softmax_fwd")?);
        launch.arg(x);
        match mask {
            Some(m) => {
                self.check_len("softmax mask", m, l.numel())?;
                launch.arg(m)
            }
            None => launch.arg(&null),
        };
        launch.arg(&mut y).arg(&o).arg(&n).arg(&i).arg(&scale);
        // SAFETY: x, mask and y hold outer*n*inner elements; a null mask is allowed.
        unsafe { launch.launch(cfg_lines(l.lines())) }?;
        Ok(y)
    }

    fn softmax_backward(&self, y: &Self::Buf, gy: &Self::Buf, l: AxisLayout, scale: f32) -> Result<Self::Buf> {
        self.check_len("softmax_backward", y, l.numel())?;
        self.check_len("softmax_backward", gy, l.numel())?;
        let mut gx = self.alloc(l.numel())?;
        let (o, n, i) = dims(&l);
        let mut launch = self.stream().launch_builder(self.f("softmax_bwd")?);
        launch.arg(y).arg(gy).arg(&mut gx).arg(&o).arg(&n).arg(&i).arg(&scale);
        // SAFETY: all hold outer*n*inner elements.
        unsafe { launch.launch(cfg_lines(l.lines())) }?;
        Ok(gx)
    }
}
