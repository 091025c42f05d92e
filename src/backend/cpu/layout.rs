//! Permutes and axis copies on the CPU (reference of cuda/layout.cu).

use super::{at, Cpu, Real};
use crate::backend::Permute;
use crate::backend::ops::LayoutOps;
use crate::shape::AxisLayout;
use anyhow::{ensure, Result};

impl<T: Real> LayoutOps for Cpu<T> {
    fn permute(&self, x: &Vec<T>, l: &Permute) -> Result<Vec<T>> {
        let n: usize = l.out_dims[..l.rank as usize].iter().map(|&d| d as usize).product();
        ensure!(x.len() == n, "permute: {} elements, expected {n}", x.len());
        Ok((0..n).map(|o| x[l.source(o)]).collect())
    }

    fn axis_slice(&self, x: &Vec<T>, l: AxisLayout, start: usize, len: usize) -> Result<Vec<T>> {
        ensure!(x.len() == l.numel() && start + len <= l.n, "axis_slice: rows {start}..{} of {l:?}", start + len);
        let mut y = Vec::with_capacity(l.outer * len * l.inner);
        for o in 0..l.outer {
            y.extend_from_slice(&x[(o * l.n + start) * l.inner..(o * l.n + start + len) * l.inner]);
        }
        Ok(y)
    }

    fn axis_insert(&self, dst: &mut Vec<T>, l: AxisLayout, start: usize, src: &Vec<T>) -> Result<()> {
        let len = src.len() / (l.outer * l.inner).max(1);
        ensure!(dst.len() == l.numel() && start + len <= l.n && src.len() == l.outer * len * l.inner, "axis_insert: rows {start}..{} of {l:?}", start + len);
        for o in 0..l.outer {
            dst[(o * l.n + start) * l.inner..(o * l.n + start + len) * l.inner].copy_from_slice(&src[o * len * l.inner..(o + 1) * len * l.inner]);
        }
        Ok(())
    }

    fn gather_lines(&self, x: &Vec<T>, l: AxisLayout, lines: &[u32]) -> Result<Vec<T>> {
        check_lines(x.len(), l, lines)?;
        let mut y = Vec::with_capacity(lines.len() * l.n);
        for &line in lines {
            let (o, k) = (line as usize / l.inner, line as usize % l.inner);
            y.extend((0..l.n).map(|j| x[at(&l, o, j, k)]));
        }
        Ok(y)
    }
}

/// `x` fits `l`, and every line is one of its `outer * inner` lines.
pub(crate) fn check_lines(len: usize, l: AxisLayout, lines: &[u32]) -> Result<()> {
    ensure!(len == l.numel(), "gather_lines: {len} elements do not fit {l:?}");
    let count = l.outer * l.inner;
    if let Some(bad) = lines.iter().find(|&&v| v as usize >= count) {
        anyhow::bail!("gather_lines: line {bad} of a view with {count} lines ({l:?})");
    }
    Ok(())
}
