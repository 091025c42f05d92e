//! The matrix product on the CPU (reference of cuda/gemm.cu), with the `gemm`
//! crate on rayon's threads. Chosen over `matrixmultiply` by the RetinaNet
//! training and inference steps (README, "Detector on the CPU"): one thread pool for
//! everything, and much faster at the thin shapes of the small feature maps.

use super::{Cpu, Real};
use crate::backend::Gemm;
use crate::backend::ops::GemmOps;
use anyhow::{ensure, Result};
use rayon::prelude::*;

/// Below this many multiply-adds a product runs on the calling thread.
const PAR_MIN_MACS: usize = 1 << 18;

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
    let threads = rayon::current_num_threads();
    let par = if m * n * k >= PAR_MIN_MACS && threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    let (alpha, beta) = (T::of(g.alpha as f64), T::of(g.beta as f64));
    for i in 0..g.batch as usize {
        let (oa, ob, oc) = (i * g.stride_a as usize, i * g.stride_b as usize, i * g.stride_c as usize);
        // SAFETY: the length check above covers every element read or written.
        // The crate computes dst = alpha dst + beta (lhs rhs), reading dst only when told to.
        unsafe {
            gemm::gemm(m, n, k, c[oc..].as_mut_ptr(), 1, n as isize, beta != T::zero(),
                a[oa..].as_ptr(), csa, rsa, b[ob..].as_ptr(), csb, rsb, beta, alpha, false, false, false, par);
        }
    }
    Ok(())
}

/// `C [m, n] += A [m, k] B [n, k]^T` (row-major, rows `k` long) with the `k`
/// range split over rayon's threads, each part on one thread into its own sum.
/// This is the weight gradient's shape (a small `m x n`, a long `k`), which a
/// product split over `m` and `n` leaves mostly idle. Summing the parts in
/// order keeps it deterministic.
pub(super) fn gemm_nt_split_k<T: Real>(m: usize, n: usize, k: usize, a: &[T], b: &[T], c: &mut [T]) -> Result<()> {
    ensure!(a.len() >= m * k && b.len() >= n * k && c.len() >= m * n,
        "gemm_nt_split_k {m}x{n}x{k}: buffers of {}, {}, {} elements are too short", a.len(), b.len(), c.len());
    let parts = rayon::current_num_threads().min(k / 64).max(1);
    let sums: Vec<Vec<T>> = (0..parts).into_par_iter().map(|p| {
        let (k0, k1) = (k * p / parts, k * (p + 1) / parts);
        let mut s = vec![T::zero(); m * n];
        // SAFETY: rows of A and B are k long and k1 <= k, so every read is inside the checked lengths.
        unsafe {
            gemm::gemm(m, n, k1 - k0, s.as_mut_ptr(), 1, n as isize, false, a[k0..].as_ptr(), 1, k as isize,
                b[k0..].as_ptr(), k as isize, 1, T::zero(), T::one(), false, false, false, gemm::Parallelism::None);
        }
        s
    }).collect();
    for s in sums {
        c[..m * n].iter_mut().zip(&s).for_each(|(c, &v)| *c = *c + v);
    }
    Ok(())
}

impl<T: Real> GemmOps for Cpu<T> {
    fn gemm(&self, g: &Gemm, a: &Vec<T>, b: &Vec<T>, c: &mut Vec<T>) -> Result<()> {
        gemm_slices(g, a, b, c)
    }
}
