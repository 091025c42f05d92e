//! Launchers of cuda/optim.cu.

use super::{cfg_elems, Cuda};
use crate::backend::{Adam, Sgd};
use crate::backend::ops::OptimOps;
use anyhow::{ensure, Result};
use cudarc::driver::PushKernelArg;

impl OptimOps for Cuda {
    fn sgd_step(&self, h: &Sgd, p: &mut Self::Buf, g: &Self::Buf, mom: &mut Self::Buf) -> Result<()> {
        let n = p.len();
        ensure!(g.len() == n && mom.len() == n, "sgd_step: parameter, gradient and momentum lengths differ");
        let n64 = n as i64;
        let mut launch = self.stream().launch_builder(self.f("sgd_step")?);
        launch.arg(p).arg(g).arg(mom).arg(&n64).arg(&h.lr).arg(&h.momentum).arg(&h.weight_decay);
        // SAFETY: all hold n elements.
        unsafe { launch.launch(cfg_elems(n)) }?;
        Ok(())
    }

    fn adam_step(&self, h: &Adam, p: &mut Self::Buf, g: &Self::Buf, m: &mut Self::Buf, v: &mut Self::Buf) -> Result<()> {
        let n = p.len();
        ensure!(g.len() == n && m.len() == n && v.len() == n, "adam_step: parameter, gradient and moment lengths differ");
        let bc1 = 1.0 - h.beta1.powi(h.step as i32);
        let bc2 = 1.0 - h.beta2.powi(h.step as i32);
        let n64 = n as i64;
        let mut launch = self.stream().launch_builder(self.f("adam_step")?);
        launch.arg(p).arg(g).arg(m).arg(v).arg(&n64).arg(&h.lr).arg(&h.beta1).arg(&h.beta2).arg(&h.eps)
            .arg(&h.weight_decay).arg(&bc1).arg(&bc2);
        // SAFETY: all hold n elements.
        unsafe { launch.launch(cfg_elems(n)) }?;
        Ok(())
    }

    fn scale_inplace(&self, x: &mut Self::Buf, c: f32) -> Result<()> {
        let n = x.len();
        let n64 = n as i64;
        let mut launch = self.stream().launch_builder(self.f("scale_inplace")?);
        launch.arg(x).arg(&c).arg(&n64);
        // SAFETY: x holds n elements.
        unsafe { launch.launch(cfg_elems(n)) }?;
        Ok(())
    }
}
