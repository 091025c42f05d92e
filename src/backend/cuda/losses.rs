//! Launchers of cuda/losses.cu.

use super::{arg_opt, cfg_elems, cfg_single, Cuda};
use crate::backend::BoxLoss;
use crate::backend::ops::LossOps;
use anyhow::{ensure, Result};
use cudarc::driver::PushKernelArg;

impl LossOps for Cuda {
    fn bce_with_logits(&self, x: &Self::Buf, t: &Self::Buf) -> Result<Self::Buf> {
        ensure!(x.len() == t.len(), "bce_with_logits: {} logits but {} targets", x.len(), t.len());
        let mut loss = self.alloc(1)?;
        let n64 = x.len() as i64;
        let mut launch = self.stream().launch_builder(self.f("bce_with_logits_fwd")?);
        launch.arg(x).arg(t).arg(&mut loss).arg(&n64);
        // SAFETY: x and t have equal lengths; loss holds 1 element.
        unsafe { launch.launch(cfg_single()) }?;
        Ok(loss)
    }

    fn bce_with_logits_backward(&self, x: &Self::Buf, t: &Self::Buf, gy: &Self::Buf) -> Result<Self::Buf> {
        ensure!(x.len() == t.len(), "bce_with_logits_backward: {} logits but {} targets", x.len(), t.len());
        let n = x.len();
        let mut gx = self.alloc(n)?;
        let n64 = n as i64;
        let mut launch = self.stream().launch_builder(self.f("bce_with_logits_bwd")?);
        launch.arg(x).arg(t).arg(gy).arg(&mut gx).arg(&n64);
        // SAFETY: x, t and gx hold n elements, gy one.
        unsafe { launch.launch(cfg_elems(n)) }?;
        Ok(gx)
    }

    fn triplet_hinge(&self, x: &Self::Buf, margin: f32) -> Result<Self::Buf> {
        ensure!(x.len() % 4 == 0, "triplet_hinge: expects rows of 4 scores, got {} values", x.len());
        let mut loss = self.alloc(1)?;
        let rows = (x.len() / 4) as i32;
        let mut launch = self.stream().launch_builder(self.f("triplet_hinge_fwd")?);
        launch.arg(x).arg(&mut loss).arg(&rows).arg(&margin);
        // SAFETY: x holds rows*4 elements.
        unsafe { launch.launch(cfg_single()) }?;
        Ok(loss)
    }

    fn triplet_hinge_backward(&self, x: &Self::Buf, margin: f32, gy: &Self::Buf) -> Result<Self::Buf> {
        let rows = x.len() / 4;
        let mut gx = self.alloc(x.len())?;
        let rows32 = rows as i32;
        let mut launch = self.stream().launch_builder(self.f("triplet_hinge_bwd")?);
        launch.arg(x).arg(gy).arg(&mut gx).arg(&rows32).arg(&margin);
        // SAFETY: x and gx hold rows*4 elements.
        unsafe { launch.launch(cfg_elems(rows)) }?;
        Ok(gx)
    }

    fn focal_loss(&self, x: &Self::Buf, t: &Self::Buf, w: Option<&Self::Buf>, alpha: f32, gamma: f32) -> Result<Self::Buf> {
        ensure!(x.len() == t.len() && w.is_none_or(|w| w.len() == x.len()), "focal_loss: logits, targets and weights differ in length");
        let mut loss = self.alloc(1)?;
        let (n64, null) = (x.len() as i64, 0u64);
        let mut launch = self.stream().launch_builder(self.f("focal_loss_fwd")?);
        launch.arg(x).arg(t);
        arg_opt(&mut launch, w, &null);
        launch.arg(&mut loss).arg(&n64).arg(&alpha).arg(&gamma);
        // SAFETY: equal lengths checked; loss holds 1.
        unsafe { launch.launch(cfg_single()) }?;
        Ok(loss)
    }

    fn focal_loss_backward(&self, x: &Self::Buf, t: &Self::Buf, w: Option<&Self::Buf>, alpha: f32, gamma: f32, gy: &Self::Buf) -> Result<Self::Buf> {
        ensure!(x.len() == t.len() && w.is_none_or(|w| w.len() == x.len()), "focal_loss_backward: lengths differ");
        let mut gx = self.alloc(x.len())?;
        let (n64, null) = (x.len() as i64, 0u64);
        let mut launch = self.stream().launch_builder(self.f("focal_loss_bwd")?);
        launch.arg(x).arg(t);
        arg_opt(&mut launch, w, &null);
        launch.arg(gy).arg(&mut gx).arg(&n64).arg(&alpha).arg(&gamma);
        // SAFETY: equal lengths checked.
        unsafe { launch.launch(cfg_elems(x.len())) }?;
        Ok(gx)
    }

    fn box_loss(&self, kind: BoxLoss, x: &Self::Buf, t: &Self::Buf, w: Option<&Self::Buf>) -> Result<Self::Buf> {
        ensure!(x.len() == t.len() && w.is_none_or(|w| w.len() == x.len()), "box_loss: predictions, targets and weights differ in length");
        let mut loss = self.alloc(1)?;
        let (n64, null, beta) = (x.len() as i64, 0u64, kind.beta());
        let mut launch = self.stream().launch_builder(self.f("box_loss_fwd")?);
        launch.arg(x).arg(t);
        arg_opt(&mut launch, w, &null);
        launch.arg(&mut loss).arg(&n64).arg(&beta);
        // SAFETY: equal lengths checked; loss holds 1.
        unsafe { launch.launch(cfg_single()) }?;
        Ok(loss)
    }

    fn box_loss_backward(&self, kind: BoxLoss, x: &Self::Buf, t: &Self::Buf, w: Option<&Self::Buf>, gy: &Self::Buf) -> Result<Self::Buf> {
        ensure!(x.len() == t.len() && w.is_none_or(|w| w.len() == x.len()), "box_loss_backward: lengths differ");
        let mut gx = self.alloc(x.len())?;
        let (n64, null, beta) = (x.len() as i64, 0u64, kind.beta());
        let mut launch = self.stream().launch_builder(self.f("box_loss_bwd")?);
        launch.arg(x).arg(t);
        arg_opt(&mut launch, w, &null);
        launch.arg(gy).arg(&mut gx).arg(&n64).arg(&beta);
        // SAFETY: equal lengths checked.
        unsafe { launch.launch(cfg_elems(x.len())) }?;
        Ok(gx)
    }
}
