//! The matrix product on the CPU: `matrixmultiply` (reference of cuda/gemm.cu).

use super::{Cpu, Real};
use crate::backend::Gemm;
use crate::backend::ops::GemmOps;
use anyhow::{ensure, Result};

/// The matrix product on slices (`Backend::gemm`), used by the convolutions too.
pub(super) fn gemm_slices<T: Real>(g: &Gemm, a: &[T], b: &[T], c: &mut [T]) -> Result<()> {
    let (la, lb, lc) = g.min_lens();
    ensure!(a.len() >= la && b.len() >= lb && c.len() >= lc,
        "gemm {}x{}x{} (batch {}): buffers of {}, {}, {} elements are too short (need {la}, {lb}, {lc})",
        g.m, g.n, g.k, g.batch, a.len(), b.len(), c.len());
    let (m, n, k) = (g.m as usize, g.n as usize, g.k as usize);
    // Row/column strides of op(A) [m,k] and op(B) [k,n] in storage.
    let (rsa, csa) = if g.trans_a != 0 { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if g.trans_b != 0 { (1, k as isize) } else { (n as isize, 1) };
    for i in 0..g.batch as usize {
        let (oa, ob, oc) = (i * g.stride_a as usize, i * g.stride_b as usize, i * g.stride_c as usize);
        // SAFETY: the length check above covers every element read or written.
        unsafe {
            T::gemm_raw(m, k, n, T::of(g.alpha as f64), a[oa..].as_ptr(), rsa, csa, b[ob..].as_ptr(), rsb, csb,
                T::of(g.beta as f64), c[oc..].as_mut_ptr(), n as isize, 1);
        }
    }
    Ok(())
}

impl<T: Real> GemmOps for Cpu<T> {
    fn gemm(&self, g: &Gemm, a: &Vec<T>, b: &Vec<T>, c: &mut Vec<T>) -> Result<()> {
        gemm_slices(g, a, b, c)
    }
}
