//! The CPU backend: the readable reference every CUDA kernel is checked
//! against. Generic over the element type so that the same code runs in f64
//! for finite-difference gradient checks; the product uses `Cpu<f32>`.
//! Matrix products go to `matrixmultiply` (multi-threaded); element-wise work
//! is split over threads with rayon when it is large.

use super::{Adam, Backend, Binary, Gemm, Sgd, Unary};
use crate::shape::{AxisLayout, Broadcast, ReduceLayout};
use anyhow::{ensure, Result};
use num_traits::{Float, FromPrimitive, ToPrimitive};
use rayon::prelude::*;
use std::marker::PhantomData;

/// Element type of the CPU backend (f32 for the product, f64 for checks).
pub trait Real: Float + FromPrimitive + ToPrimitive + Default + Send + Sync + std::fmt::Debug + std::iter::Sum + 'static {
    fn of(v: f64) -> Self {
        Self::from_f64(v).unwrap()
    }
    fn f64(self) -> f64 {
        self.to_f64().unwrap()
    }
    /// `C = alpha A B + beta C` for one matrix, with element strides.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(m: usize, k: usize, n: usize, alpha: Self, a: *const Self, rsa: isize, csa: isize,
                       b: *const Self, rsb: isize, csb: isize, beta: Self, c: *mut Self, rsc: isize, csc: isize);
}

impl Real for f32 {
    unsafe fn gemm_raw(m: usize, k: usize, n: usize, alpha: f32, a: *const f32, rsa: isize, csa: isize,
                       b: *const f32, rsb: isize, csb: isize, beta: f32, c: *mut f32, rsc: isize, csc: isize) {
        matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

impl Real for f64 {
    unsafe fn gemm_raw(m: usize, k: usize, n: usize, alpha: f64, a: *const f64, rsa: isize, csa: isize,
                       b: *const f64, rsb: isize, csb: isize, beta: f64, c: *mut f64, rsc: isize, csc: isize) {
        matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Cpu<T: Real = f32>(PhantomData<T>);

impl<T: Real> Cpu<T> {
    pub fn new() -> Self {
        Cpu(PhantomData)
    }
}

/// Below this many elements a loop is not worth splitting over threads.
const PAR_MIN: usize = 1 << 15;

fn map<T: Real>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    if x.len() >= PAR_MIN {
        x.par_iter().map(|&v| f(v)).collect()
    } else {
        x.iter().map(|&v| f(v)).collect()
    }
}

fn zip3<T: Real>(a: &[T], b: &[T], c: &[T], f: impl Fn(T, T, T) -> T + Sync) -> Vec<T> {
    if a.len() >= PAR_MIN {
        (0..a.len()).into_par_iter().map(|i| f(a[i], b[i], c[i])).collect()
    } else {
        (0..a.len()).map(|i| f(a[i], b[i], c[i])).collect()
    }
}

fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// Index of element `j` of line `(o, k)` in an `[outer, n, inner]` view.
#[inline]
fn at(l: &AxisLayout, o: usize, j: usize, k: usize) -> usize {
    (o * l.n + j) * l.inner + k
}

/// Calls `f(line, o, k)` for each line of the axis view.
fn each_line(l: &AxisLayout, mut f: impl FnMut(usize, usize, usize)) {
    for o in 0..l.outer {
        for k in 0..l.inner {
            f(o * l.inner + k, o, k);
        }
    }
}

impl<T: Real> Backend for Cpu<T> {
    type Buf = Vec<T>;

    fn name(&self) -> String {
        format!("CPU ({} threads, {})", rayon::current_num_threads(), std::any::type_name::<T>())
    }
    fn len(&self, x: &Vec<T>) -> usize {
        x.len()
    }
    fn zeros(&self, n: usize) -> Result<Vec<T>> {
        Ok(vec![T::zero(); n])
    }
    fn fill(&self, n: usize, value: f32) -> Result<Vec<T>> {
        Ok(vec![T::of(value as f64); n])
    }
    fn upload(&self, host: &[f32]) -> Result<Vec<T>> {
        Ok(host.iter().map(|&v| T::of(v as f64)).collect())
    }
    fn download(&self, x: &Vec<T>) -> Result<Vec<f32>> {
        Ok(x.iter().map(|v| v.f64() as f32).collect())
    }
    fn copy(&self, x: &Vec<T>) -> Result<Vec<T>> {
        Ok(x.clone())
    }
    fn upload_f64(&self, host: &[f64]) -> Result<Vec<T>> {
        Ok(host.iter().map(|&v| T::of(v)).collect())
    }
    fn download_f64(&self, x: &Vec<T>) -> Result<Vec<f64>> {
        Ok(x.iter().map(|v| v.f64()).collect())
    }
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn unary(&self, op: Unary, x: &Vec<T>) -> Result<Vec<T>> {
        Ok(match op {
            Unary::Relu => map(x, |v| v.max(T::zero())),
            Unary::LeakyRelu(s) => {
                let s = T::of(s as f64);
                map(x, move |v| if v > T::zero() { v } else { v * s })
            }
            Unary::Sigmoid => map(x, sigmoid),
            Unary::Tanh => map(x, |v| v.tanh()),
            Unary::Scale(c) => {
                let c = T::of(c as f64);
                map(x, move |v| v * c)
            }
        })
    }

    fn unary_backward(&self, op: Unary, x: &Vec<T>, y: &Vec<T>, gy: &Vec<T>) -> Result<Vec<T>> {
        let (z, one) = (T::zero(), T::one());
        Ok(match op {
            Unary::Relu => zip3(x, y, gy, |x, _, g| if x > z { g } else { z }),
            Unary::LeakyRelu(s) => {
                let s = T::of(s as f64);
                zip3(x, y, gy, move |x, _, g| if x > z { g } else { g * s })
            }
            Unary::Sigmoid => zip3(x, y, gy, |_, y, g| g * y * (one - y)),
            Unary::Tanh => zip3(x, y, gy, |_, y, g| g * (one - y * y)),
            Unary::Scale(c) => {
                let c = T::of(c as f64);
                map(gy, move |g| g * c)
            }
        })
    }

    fn binary(&self, op: Binary, a: &Vec<T>, b: &Vec<T>, l: &Broadcast) -> Result<Vec<T>> {
        let f = |o: usize| {
            let (ia, ib) = l.offsets(o);
            match op {
                Binary::Add => a[ia] + b[ib],
                Binary::Mul => a[ia] * b[ib],
            }
        };
        let n = l.out_numel();
        Ok(if n >= PAR_MIN { (0..n).into_par_iter().map(f).collect() } else { (0..n).map(f).collect() })
    }

    fn reduce_broadcast(&self, g: &Vec<T>, l: &ReduceLayout) -> Result<Vec<T>> {
        // out[i] = sum_j g[kept_offset(i) + red_offset(j)], j outermost so that
        // a bias gradient reads g row by row.
        let ko: Vec<usize> = (0..l.kept_numel()).map(|i| l.kept_offset(i)).collect();
        let mut out = vec![T::zero(); ko.len()];
        for j in 0..l.red_numel() {
            let r = l.red_offset(j);
            out.iter_mut().zip(&ko).for_each(|(o, &k)| *o = *o + g[k + r]);
        }
        Ok(out)
    }

    fn axpy(&self, acc: &mut Vec<T>, alpha: f32, x: &Vec<T>) -> Result<()> {
        ensure!(acc.len() == x.len(), "axpy: lengths {} and {} differ", acc.len(), x.len());
        let a = T::of(alpha as f64);
        acc.iter_mut().zip(x).for_each(|(s, &v)| *s = *s + a * v);
        Ok(())
    }

    fn sum_axis(&self, x: &Vec<T>, l: AxisLayout, mean: bool) -> Result<Vec<T>> {
        let div = if mean { T::of(l.n as f64) } else { T::one() };
        let mut y = vec![T::zero(); l.lines()];
        each_line(&l, |line, o, k| y[line] = (0..l.n).map(|j| x[at(&l, o, j, k)]).sum::<T>() / div);
        Ok(y)
    }

    fn sum_axis_backward(&self, gy: &Vec<T>, l: AxisLayout, mean: bool) -> Result<Vec<T>> {
        let div = if mean { T::of(l.n as f64) } else { T::one() };
        let mut gx = vec![T::zero(); l.numel()];
        each_line(&l, |line, o, k| (0..l.n).for_each(|j| gx[at(&l, o, j, k)] = gy[line] / div));
        Ok(gx)
    }

    fn softmax(&self, x: &Vec<T>, mask: Option<&Vec<T>>, l: AxisLayout, scale: f32) -> Result<Vec<T>> {
        let s = T::of(scale as f64);
        let valid = |i: usize| mask.is_none_or(|m| m[i] != T::zero());
        let mut y = vec![T::zero(); l.numel()];
        each_line(&l, |_, o, k| {
            let idx = |j| at(&l, o, j, k);
            let max = (0..l.n).filter(|&j| valid(idx(j))).map(|j| s * x[idx(j)]).fold(T::neg_infinity(), T::max);
            if max == T::neg_infinity() {
                return; // fully masked line: all zeros
            }
            let mut total = T::zero();
            for j in (0..l.n).filter(|&j| valid(idx(j))) {
                y[idx(j)] = (s * x[idx(j)] - max).exp();
                total = total + y[idx(j)];
            }
            (0..l.n).for_each(|j| y[idx(j)] = y[idx(j)] / total);
        });
        Ok(y)
    }

    fn softmax_backward(&self, y: &Vec<T>, gy: &Vec<T>, l: AxisLayout, scale: f32) -> Result<Vec<T>> {
        let s = T::of(scale as f64);
        let mut gx = vec![T::zero(); l.numel()];
        each_line(&l, |_, o, k| {
            let idx = |j| at(&l, o, j, k);
            let dot: T = (0..l.n).map(|j| y[idx(j)] * gy[idx(j)]).sum();
            (0..l.n).for_each(|j| gx[idx(j)] = s * y[idx(j)] * (gy[idx(j)] - dot));
        });
        Ok(gx)
    }

    fn layer_norm(&self, x: &Vec<T>, gamma: &Vec<T>, beta: &Vec<T>, rows: usize, d: usize, eps: f32)
        -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
        let (mut y, mut mean, mut rstd) = (vec![T::zero(); rows * d], vec![T::zero(); rows], vec![T::zero(); rows]);
        let dn = T::of(d as f64);
        for r in 0..rows {
            let xr = &x[r * d..(r + 1) * d];
            let mu = xr.iter().copied().sum::<T>() / dn;
            let var = xr.iter().map(|&v| (v - mu) * (v - mu)).sum::<T>() / dn;
            let rs = T::one() / (var + T::of(eps as f64)).sqrt();
            for j in 0..d {
                y[r * d + j] = (xr[j] - mu) * rs * gamma[j] + beta[j];
            }
            (mean[r], rstd[r]) = (mu, rs);
        }
        Ok((y, mean, rstd))
    }

    fn layer_norm_backward(&self, x: &Vec<T>, gamma: &Vec<T>, mean: &Vec<T>, rstd: &Vec<T>, gy: &Vec<T>, rows: usize, d: usize)
        -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
        let (mut gx, mut gg, mut gb) = (vec![T::zero(); rows * d], vec![T::zero(); d], vec![T::zero(); d]);
        let dn = T::of(d as f64);
        for r in 0..rows {
            let xhat = |j: usize| (x[r * d + j] - mean[r]) * rstd[r];
            // g_x = rstd (ĝ - mean(ĝ) - x̂ mean(ĝ x̂)), ĝ = g_y γ
            let gh = |j: usize| gy[r * d + j] * gamma[j];
            let m1 = (0..d).map(gh).sum::<T>() / dn;
            let m2 = (0..d).map(|j| gh(j) * xhat(j)).sum::<T>() / dn;
            for j in 0..d {
                gx[r * d + j] = rstd[r] * (gh(j) - m1 - xhat(j) * m2);
                gg[j] = gg[j] + gy[r * d + j] * xhat(j);
                gb[j] = gb[j] + gy[r * d + j];
            }
        }
        Ok((gx, gg, gb))
    }

    fn l2_normalize(&self, x: &Vec<T>, l: AxisLayout, eps: f32) -> Result<(Vec<T>, Vec<T>)> {
        let (mut y, mut norm) = (vec![T::zero(); l.numel()], vec![T::zero(); l.lines()]);
        let e = T::of(eps as f64);
        each_line(&l, |line, o, k| {
            let idx = |j| at(&l, o, j, k);
            let n = (0..l.n).map(|j| x[idx(j)] * x[idx(j)]).sum::<T>().sqrt();
            (0..l.n).for_each(|j| y[idx(j)] = x[idx(j)] / (n + e));
            norm[line] = n;
        });
        Ok((y, norm))
    }

    fn l2_normalize_backward(&self, x: &Vec<T>, norm: &Vec<T>, gy: &Vec<T>, l: AxisLayout, eps: f32) -> Result<Vec<T>> {
        // g_z = g_q/(n+e) - z (z.g_q) / ((n+e)^2 n), second term 0 when n = 0
        let mut gx = vec![T::zero(); l.numel()];
        let e = T::of(eps as f64);
        each_line(&l, |line, o, k| {
            let idx = |j| at(&l, o, j, k);
            let n = norm[line];
            let dot: T = (0..l.n).map(|j| x[idx(j)] * gy[idx(j)]).sum();
            let c = if n > T::zero() { dot / ((n + e) * (n + e) * n) } else { T::zero() };
            (0..l.n).for_each(|j| gx[idx(j)] = gy[idx(j)] / (n + e) - x[idx(j)] * c);
        });
        Ok(gx)
    }

    fn cosine(&self, a: &Vec<T>, b: &Vec<T>, l: AxisLayout, eps: f32) -> Result<Vec<T>> {
        let e = T::of(eps as f64);
        let mut y = vec![T::zero(); l.lines()];
        each_line(&l, |line, o, k| {
            let idx = |j| at(&l, o, j, k);
            let (mut ab, mut aa, mut bb) = (T::zero(), T::zero(), T::zero());
            for j in 0..l.n {
                let (u, v) = (a[idx(j)], b[idx(j)]);
                (ab, aa, bb) = (ab + u * v, aa + u * u, bb + v * v);
            }
            y[line] = ab / (aa.sqrt().max(e) * bb.sqrt().max(e));
        });
        Ok(y)
    }

    fn cosine_backward(&self, a: &Vec<T>, b: &Vec<T>, gy: &Vec<T>, l: AxisLayout, eps: f32) -> Result<(Vec<T>, Vec<T>)> {
        // c = a.b / (na nb): g_a = g (b/(na nb) - c a/na^2), with na, nb clamped at eps
        // (a clamped norm is a constant: its term drops out).
        let e = T::of(eps as f64);
        let (mut ga, mut gb) = (vec![T::zero(); l.numel()], vec![T::zero(); l.numel()]);
        each_line(&l, |line, o, k| {
            let idx = |j| at(&l, o, j, k);
            let (mut ab, mut aa, mut bb) = (T::zero(), T::zero(), T::zero());
            for j in 0..l.n {
                let (u, v) = (a[idx(j)], b[idx(j)]);
                (ab, aa, bb) = (ab + u * v, aa + u * u, bb + v * v);
            }
            let (na, nb) = (aa.sqrt(), bb.sqrt());
            let (ca, cb) = (na.max(e), nb.max(e));
            let c = ab / (ca * cb);
            let g = gy[line];
            let ka = if na > e { c / (na * na) } else { T::zero() };
            let kb = if nb > e { c / (nb * nb) } else { T::zero() };
            for j in 0..l.n {
                let i = idx(j);
                ga[i] = g * (b[i] / (ca * cb) - ka * a[i]);
                gb[i] = g * (a[i] / (ca * cb) - kb * b[i]);
            }
        });
        Ok((ga, gb))
    }

    fn bce_with_logits(&self, x: &Vec<T>, t: &Vec<T>) -> Result<Vec<T>> {
        ensure!(x.len() == t.len(), "bce_with_logits: {} logits but {} targets", x.len(), t.len());
        let z = T::zero();
        let s: T = x.iter().zip(t).map(|(&x, &t)| x.max(z) - x * t + (-x.abs()).exp().ln_1p()).sum();
        Ok(vec![s / T::of(x.len() as f64)])
    }

    fn bce_with_logits_backward(&self, x: &Vec<T>, t: &Vec<T>, gy: &Vec<T>) -> Result<Vec<T>> {
        let k = gy[0] / T::of(x.len() as f64);
        Ok(x.iter().zip(t).map(|(&x, &t)| k * (sigmoid(x) - t)).collect())
    }

    fn triplet_hinge(&self, x: &Vec<T>, margin: f32) -> Result<Vec<T>> {
        ensure!(x.len() % 4 == 0, "triplet_hinge: expects rows of 4 scores, got {} values", x.len());
        let m = T::of(margin as f64);
        let z = T::zero();
        Ok(vec![x.chunks(4).map(|r| (m - r[0] + r[1]).max(z) + (m - r[2] + r[3]).max(z)).sum()])
    }

    fn triplet_hinge_backward(&self, x: &Vec<T>, margin: f32, gy: &Vec<T>) -> Result<Vec<T>> {
        let m = T::of(margin as f64);
        let g = gy[0];
        let mut gx = vec![T::zero(); x.len()];
        for (r, gr) in x.chunks(4).zip(gx.chunks_mut(4)) {
            for h in 0..2 {
                // an active hinge pushes its positive score up and its negative down
                if m - r[2 * h] + r[2 * h + 1] > T::zero() {
                    gr[2 * h] = -g;
                    gr[2 * h + 1] = g;
                }
            }
        }
        Ok(gx)
    }

    fn gemm(&self, g: &Gemm, a: &Vec<T>, b: &Vec<T>, c: &mut Vec<T>) -> Result<()> {
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

    fn sgd_step(&self, h: &Sgd, p: &mut Vec<T>, g: &Vec<T>, buf: &mut Vec<T>) -> Result<()> {
        // torch.optim.SGD (dampening 0): d = g + wd p; buf = mu buf + d; p -= lr buf
        let (lr, mu, wd) = (T::of(h.lr as f64), T::of(h.momentum as f64), T::of(h.weight_decay as f64));
        for i in 0..p.len() {
            let d = g[i] + wd * p[i];
            buf[i] = mu * buf[i] + d;
            p[i] = p[i] - lr * buf[i];
        }
        Ok(())
    }

    fn adam_step(&self, h: &Adam, p: &mut Vec<T>, g: &Vec<T>, m: &mut Vec<T>, v: &mut Vec<T>) -> Result<()> {
        let (b1, b2) = (T::of(h.beta1 as f64), T::of(h.beta2 as f64));
        let one = T::one();
        let bc1 = one - b1.powi(h.step as i32);
        let bc2 = one - b2.powi(h.step as i32);
        let (lr, eps, wd) = (T::of(h.lr as f64), T::of(h.eps as f64), T::of(h.weight_decay as f64));
        for i in 0..p.len() {
            let d = g[i] + wd * p[i];
            m[i] = b1 * m[i] + (one - b1) * d;
            v[i] = b2 * v[i] + (one - b2) * d * d;
            p[i] = p[i] - lr * (m[i] / bc1) / ((v[i] / bc2).sqrt() + eps);
        }
        Ok(())
    }

    fn sum_squares(&self, x: &Vec<T>) -> Result<f64> {
        Ok(x.iter().map(|v| v.f64() * v.f64()).sum())
    }

    fn scale_inplace(&self, x: &mut Vec<T>, c: f32) -> Result<()> {
        let c = T::of(c as f64);
        x.iter_mut().for_each(|v| *v = *v * c);
        Ok(())
    }
}
