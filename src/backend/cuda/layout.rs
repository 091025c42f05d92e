//! Launchers of cuda/layout.cu.

use super::{cfg_elems, Cuda};
use crate::backend::Permute;
use crate::backend::ops::LayoutOps;
use crate::shape::AxisLayout;
use anyhow::{ensure, Result};
use cudarc::driver::PushKernelArg;

impl LayoutOps for Cuda {
    fn permute(&self, x: &Self::Buf, l: &Permute) -> Result<Self::Buf> {
        let n: usize = l.out_dims[..l.rank as usize].iter().map(|&d| d as usize).product();
        self.check_len("permute", x, n)?;
        let mut y = self.alloc(n)?;
        let n64 = n as i64;
        let mut launch = self.stream().launch_builder(self.f("permute")?);
        launch.arg(l).arg(x).arg(&mut y).arg(&n64);
        // SAFETY: x and y hold n elements; the layout indexes within them.
        unsafe { launch.launch(cfg_elems(n)) }?;
        Ok(y)
    }

    fn axis_slice(&self, x: &Self::Buf, l: AxisLayout, start: usize, len: usize) -> Result<Self::Buf> {
        ensure!(x.len() == l.numel() && start + len <= l.n, "axis_slice: rows {start}..{} of {l:?}", start + len);
        let n = l.outer * len * l.inner;
        let mut y = self.alloc(n)?;
        let (o, ln, i, t, st, dir) = (l.outer as i32, len as i32, l.inner as i32, l.n as i32, start as i32, 0i32);
        let mut launch = self.stream().launch_builder(self.f("axis_copy")?);
        launch.arg(x).arg(&mut y).arg(&o).arg(&ln).arg(&i).arg(&t).arg(&st).arg(&dir);
        // SAFETY: bounds checked above.
        unsafe { launch.launch(cfg_elems(n)) }?;
        Ok(y)
    }

    fn axis_insert(&self, dst: &mut Self::Buf, l: AxisLayout, start: usize, src: &Self::Buf) -> Result<()> {
        let len = src.len() / (l.outer * l.inner).max(1);
        ensure!(dst.len() == l.numel() && start + len <= l.n && src.len() == l.outer * len * l.inner, "axis_insert: rows {start}..{} of {l:?}", start + len);
        let (o, ln, i, t, st, dir) = (l.outer as i32, len as i32, l.inner as i32, l.n as i32, start as i32, 1i32);
        let mut launch = self.stream().launch_builder(self.f("axis_copy")?);
        launch.arg(src).arg(dst).arg(&o).arg(&ln).arg(&i).arg(&t).arg(&st).arg(&dir);
        // SAFETY: bounds checked above.
        unsafe { launch.launch(cfg_elems(src.len())) }?;
        Ok(())
    }

    fn gather_lines(&self, x: &Self::Buf, l: AxisLayout, lines: &[u32]) -> Result<Self::Buf> {
        crate::backend::cpu::check_lines(x.len(), l, lines)?;
        let n = lines.len() * l.n;
        let mut y = self.alloc(n.max(1))?;
        if n == 0 {
            return Ok(y);
        }
        let idx = self.upload_u32(lines)?;
        let (count, d, inner) = (lines.len() as i32, l.n as i32, l.inner as i32);
        let mut launch = self.stream().launch_builder(self.f("gather_lines")?);
        launch.arg(x).arg(&mut y).arg(&idx).arg(&count).arg(&d).arg(&inner);
        // SAFETY: every line is below outer * inner (checked), so every read is inside x; y holds count * n.
        unsafe { launch.launch(cfg_elems(n)) }?;
        Ok(y)
    }
}
