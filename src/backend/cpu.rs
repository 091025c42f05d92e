//! The CPU backend: the readable reference every CUDA kernel is checked
//! against. Generic over the element type so that the same code runs in f64
//! for finite-difference gradient checks; the product uses `Cpu<f32>`.
//! Matrix products go to `matrixmultiply` (multi-threaded); element-wise work
//! is split over threads with rayon when it is large.

use super::{Adam, Backend, Binary, BoxLoss, Conv2d, Gemm, Permute, Pool2d, Sgd, Unary, XAttn};
use crate::detect::{boxes::BoxCoder, matcher::Matcher};
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

/// im2col of images `n0..n0 + nb`, group `g`: `col[(c, r, s), (n, oh, ow)]`
/// (zeros outside the input), rows filled in parallel. The CPU convolution
/// is this plus one matrix product for the whole chunk of images.
fn im2col<T: Real>(p: &Conv2d, x: &[T], n0: usize, nb: usize, g: usize, col: &mut [T]) {
    let (cg, rr, ss) = ((p.c / p.groups) as usize, p.r as usize, p.s as usize);
    let (h, w, oh, ow) = (p.h as isize, p.w as isize, p.oh as usize, p.ow as usize);
    let cols = nb * oh * ow;
    col[..cg * rr * ss * cols].par_chunks_mut(cols).enumerate().for_each(|(row_i, row)| {
        let (c, r, s) = (row_i / (rr * ss), (row_i / ss) % rr, row_i % ss);
        for b in 0..nb {
            let plane = &x[(((n0 + b) * p.c as usize) + g * cg + c) * (h * w) as usize..][..(h * w) as usize];
            let out = &mut row[b * oh * ow..(b + 1) * oh * ow];
            for y in 0..oh {
                let ih = (y * p.stride_h as usize) as isize - p.pad_h as isize + (r * p.dil_h as usize) as isize;
                for xo in 0..ow {
                    let iw = (xo * p.stride_w as usize) as isize - p.pad_w as isize + (s * p.dil_w as usize) as isize;
                    out[y * ow + xo] = if ih >= 0 && ih < h && iw >= 0 && iw < w { plane[(ih * w + iw) as usize] } else { T::zero() };
                }
            }
        }
    });
}

/// The adjoint of im2col: adds `col` back into images `n0..n0 + nb`, group `g` of `gx`.
fn col2im<T: Real>(p: &Conv2d, col: &[T], n0: usize, nb: usize, g: usize, gx: &mut [T]) {
    let (cg, rr, ss) = ((p.c / p.groups) as usize, p.r as usize, p.s as usize);
    let (h, w, oh, ow) = (p.h as isize, p.w as isize, p.oh as usize, p.ow as usize);
    let cols = nb * oh * ow;
    for b in 0..nb {
        // each channel plane of the image is written by its own rows only: split by channel
        let img = &mut gx[((n0 + b) * p.c as usize + g * cg) * (h * w) as usize..][..cg * (h * w) as usize];
        img.par_chunks_mut((h * w) as usize).enumerate().for_each(|(c, plane)| {
            for r in 0..rr {
                for s in 0..ss {
                    let row = &col[((c * rr + r) * ss + s) * cols + b * oh * ow..][..oh * ow];
                    for y in 0..oh {
                        let ih = (y * p.stride_h as usize) as isize - p.pad_h as isize + (r * p.dil_h as usize) as isize;
                        if ih < 0 || ih >= h {
                            continue;
                        }
                        for xo in 0..ow {
                            let iw = (xo * p.stride_w as usize) as isize - p.pad_w as isize + (s * p.dil_w as usize) as isize;
                            if iw >= 0 && iw < w {
                                plane[(ih * w + iw) as usize] = plane[(ih * w + iw) as usize] + row[y * ow + xo];
                            }
                        }
                    }
                }
            }
        });
    }
}

/// Images per chunk so that the im2col buffer stays under 32M elements.
fn conv_chunk(p: &Conv2d) -> usize {
    let per_image = (p.w_len() / p.k as usize) * (p.oh * p.ow) as usize;
    ((32usize << 20) / per_image.max(1)).clamp(1, p.n as usize)
}

/// `[kg, nb*ohw]` (channel-major over the chunk) <-> the `[n, k, ohw]` tensor's slab.
fn scatter_chunk<T: Real>(p: &Conv2d, src: &[T], n0: usize, nb: usize, g: usize, y: &mut [T]) {
    let (kg, ohw) = ((p.k / p.groups) as usize, (p.oh * p.ow) as usize);
    for k in 0..kg {
        for b in 0..nb {
            let dst = ((n0 + b) * p.k as usize + g * kg + k) * ohw;
            y[dst..dst + ohw].copy_from_slice(&src[(k * nb + b) * ohw..][..ohw]);
        }
    }
}

fn gather_chunk<T: Real>(p: &Conv2d, y: &[T], n0: usize, nb: usize, g: usize, dst: &mut [T]) {
    let (kg, ohw) = ((p.k / p.groups) as usize, (p.oh * p.ow) as usize);
    for k in 0..kg {
        for b in 0..nb {
            let src = ((n0 + b) * p.k as usize + g * kg + k) * ohw;
            dst[(k * nb + b) * ohw..][..ohw].copy_from_slice(&y[src..src + ohw]);
        }
    }
}

/// Focal loss term of one element and its derivative (see cuda/losses.cu).
fn focal_term<T: Real>(x: T, t: T, alpha: T, gamma: T) -> (T, T) {
    let (z, one) = (T::zero(), T::one());
    let p = sigmoid(x);
    let ce = x.max(z) - x * t + (-x.abs()).exp().ln_1p();
    let pt = p * t + (one - p) * (one - t);
    let at = if alpha >= z { alpha * t + (one - alpha) * (one - t) } else { one };
    let m = (one - pt).powf(gamma);
    let dpt = (t + t - one) * p * (one - p);
    let dm = if gamma > z && one - pt > z { -gamma * (one - pt).powf(gamma - one) * dpt } else { z };
    (at * m * ce, at * (m * (p - t) + ce * dm))
}

/// L1 (beta 0) or smooth-L1 term of a difference and its derivative.
fn box_term<T: Real>(d: T, beta: T) -> (T, T) {
    let (z, one, half) = (T::zero(), T::one(), T::of(0.5));
    if beta > z && d.abs() < beta {
        return (half * d * d / beta, d / beta);
    }
    let sign = if d > z { one } else if d < z { -one } else { z };
    (if beta > z { d.abs() - half * beta } else { d.abs() }, sign)
}

fn nearest_src(dst: usize, input: usize, output: usize) -> usize {
    // PyTorch: floor(dst * (in / out)) computed in f32
    (((dst as f32) * (input as f32 / output as f32)).floor() as usize).min(input - 1)
}

/// The matrix product on slices (`Backend::gemm`), used by the convolutions too.
fn gemm_slices<T: Real>(g: &Gemm, a: &[T], b: &[T], c: &mut [T]) -> Result<()> {
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

fn check_xattn<T>(p: &XAttn, phi: &[T], alpha: &[T], m: &[T], mask: &[T]) -> Result<()> {
    let (b, n, mm, d) = (p.b as usize, p.n as usize, p.m as usize, p.d as usize);
    ensure!(phi.len() == b * n * d && alpha.len() == b * n && m.len() == b * mm * d && mask.len() == b * mm,
        "cross_attention: buffers of {}, {}, {}, {} elements do not fit {p:?}", phi.len(), alpha.len(), m.len(), mask.len());
    Ok(())
}

fn check_conv<T>(p: &Conv2d, what: &str, got: &[T], want: usize) -> Result<()> {
    ensure!(got.len() == want, "conv2d {what}: {} elements, expected {want} for {p:?}", got.len());
    Ok(())
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
        let n = l.out_numel();
        let last = l.rank as usize - 1;
        let inner = l.out_dims[last] as usize;
        if n == 0 || inner == 0 {
            return Ok(Vec::new());
        }
        // Offsets once per row of the last axis; along it each input steps by 1 or 0 (broadcast).
        let (sa, sb) = (l.a_strides[last] as usize, l.b_strides[last] as usize);
        let row = |(r, out): (usize, &mut [T])| {
            let (ia, ib) = l.offsets(r * inner);
            for (k, v) in out.iter_mut().enumerate() {
                let (x, y) = (a[ia + k * sa], b[ib + k * sb]);
                *v = match op {
                    Binary::Add => x + y,
                    Binary::Mul => x * y,
                };
            }
        };
        let mut y = vec![T::zero(); n];
        if n >= PAR_MIN { y.par_chunks_mut(inner).enumerate().for_each(row) } else { y.chunks_mut(inner).enumerate().for_each(row) }
        Ok(y)
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
        gemm_slices(g, a, b, c)
    }

    fn conv2d(&self, p: &Conv2d, x: &Vec<T>, w: &Vec<T>, bias: Option<&Vec<T>>) -> Result<Vec<T>> {
        check_conv(p, "input", x, p.x_len())?;
        check_conv(p, "weight", w, p.w_len())?;
        let (kg, crs, ohw, chunk) = ((p.k / p.groups) as usize, p.w_len() / p.k as usize, (p.oh * p.ow) as usize, conv_chunk(p));
        let mut y = vec![T::zero(); p.y_len()];
        let mut col = vec![T::zero(); crs * chunk * ohw];
        let mut out = vec![T::zero(); kg * chunk * ohw];
        for n0 in (0..p.n as usize).step_by(chunk) {
            let nb = chunk.min(p.n as usize - n0);
            for g in 0..p.groups as usize {
                im2col(p, x, n0, nb, g, &mut col);
                // out [kg, nb*ohw] = W_g [kg, crs] x col [crs, nb*ohw]
                let gm = Gemm::new(1, kg, nb * ohw, crs, false, false);
                gemm_slices(&gm, &w[g * kg * crs..(g + 1) * kg * crs], &col, &mut out)?;
                scatter_chunk(p, &out, n0, nb, g, &mut y);
            }
        }
        if let Some(b) = bias {
            ensure!(b.len() == p.k as usize, "conv2d bias: {} elements for {} channels", b.len(), p.k);
            y.par_chunks_mut(ohw).enumerate().for_each(|(i, plane)| {
                let bk = b[i % p.k as usize];
                plane.iter_mut().for_each(|v| *v = *v + bk);
            });
        }
        Ok(y)
    }

    fn conv2d_backward_data(&self, p: &Conv2d, gy: &Vec<T>, w: &Vec<T>) -> Result<Vec<T>> {
        check_conv(p, "output gradient", gy, p.y_len())?;
        check_conv(p, "weight", w, p.w_len())?;
        let (kg, crs, ohw, chunk) = ((p.k / p.groups) as usize, p.w_len() / p.k as usize, (p.oh * p.ow) as usize, conv_chunk(p));
        let mut gx = vec![T::zero(); p.x_len()];
        let mut col = vec![T::zero(); crs * chunk * ohw];
        let mut g_chunk = vec![T::zero(); kg * chunk * ohw];
        for n0 in (0..p.n as usize).step_by(chunk) {
            let nb = chunk.min(p.n as usize - n0);
            for g in 0..p.groups as usize {
                gather_chunk(p, gy, n0, nb, g, &mut g_chunk);
                // col [crs, nb*ohw] = W_g^T [crs, kg] x gy [kg, nb*ohw]
                let gm = Gemm::new(1, crs, nb * ohw, kg, true, false);
                gemm_slices(&gm, &w[g * kg * crs..(g + 1) * kg * crs], &g_chunk, &mut col)?;
                col2im(p, &col, n0, nb, g, &mut gx);
            }
        }
        Ok(gx)
    }

    fn conv2d_backward_weight(&self, p: &Conv2d, x: &Vec<T>, gy: &Vec<T>) -> Result<Vec<T>> {
        check_conv(p, "input", x, p.x_len())?;
        check_conv(p, "output gradient", gy, p.y_len())?;
        let (kg, crs, ohw, chunk) = ((p.k / p.groups) as usize, p.w_len() / p.k as usize, (p.oh * p.ow) as usize, conv_chunk(p));
        let mut gw = vec![T::zero(); p.w_len()];
        let mut col = vec![T::zero(); crs * chunk * ohw];
        let mut g_chunk = vec![T::zero(); kg * chunk * ohw];
        for n0 in (0..p.n as usize).step_by(chunk) {
            let nb = chunk.min(p.n as usize - n0);
            for g in 0..p.groups as usize {
                im2col(p, x, n0, nb, g, &mut col);
                gather_chunk(p, gy, n0, nb, g, &mut g_chunk);
                // gW_g [kg, crs] += gy [kg, nb*ohw] x col^T [nb*ohw, crs]
                let mut gm = Gemm::new(1, kg, crs, nb * ohw, false, true);
                gm.beta = 1.0;
                gemm_slices(&gm, &g_chunk, &col, &mut gw[g * kg * crs..(g + 1) * kg * crs])?;
            }
        }
        Ok(gw)
    }

    fn channel_affine(&self, x: &Vec<T>, scale: &Vec<T>, shift: Option<&Vec<T>>, c: usize, hw: usize) -> Result<Vec<T>> {
        ensure!(scale.len() == c && shift.is_none_or(|s| s.len() == c), "channel_affine: scale/shift must have {c} elements");
        Ok(x.iter().enumerate().map(|(i, &v)| {
            let ch = (i / hw) % c;
            v * scale[ch] + shift.map_or(T::zero(), |s| s[ch])
        }).collect())
    }

    fn batch_norm_train(&self, x: &Vec<T>, gamma: &Vec<T>, beta: &Vec<T>, n: usize, c: usize, hw: usize, eps: f32)
        -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
        ensure!(x.len() == n * c * hw && gamma.len() == c && beta.len() == c, "batch_norm: shapes do not fit [{n}, {c}, {hw}]");
        // Sums over n * hw elements in f64 (as the CUDA kernels): long f32 sums drift.
        let m = (n * hw) as f64;
        let plane = |b: usize, ch: usize| &x[(b * c + ch) * hw..(b * c + ch + 1) * hw];
        let mut mean = vec![T::zero(); c];
        let mut var = vec![T::zero(); c];
        for ch in 0..c {
            let mu = (0..n).map(|b| plane(b, ch).iter().map(|v| v.f64()).sum::<f64>()).sum::<f64>() / m;
            let v = (0..n).map(|b| plane(b, ch).iter().map(|v| (v.f64() - mu).powi(2)).sum::<f64>()).sum::<f64>() / m;
            (mean[ch], var[ch]) = (T::of(mu), T::of(v));
        }
        let e = T::of(eps as f64);
        let y = x.iter().enumerate().map(|(i, &v)| {
            let ch = (i / hw) % c;
            (v - mean[ch]) / (var[ch] + e).sqrt() * gamma[ch] + beta[ch]
        }).collect();
        Ok((y, mean, var))
    }

    fn batch_norm_backward(&self, x: &Vec<T>, gamma: &Vec<T>, mean: &Vec<T>, var: &Vec<T>, gy: &Vec<T>, n: usize, c: usize, hw: usize, eps: f32)
        -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
        let e = T::of(eps as f64);
        let m = T::of((n * hw) as f64);
        let (mut gg64, mut gb64) = (vec![0f64; c], vec![0f64; c]);
        for (i, (&v, &g)) in x.iter().zip(gy).enumerate() {
            let ch = (i / hw) % c;
            gb64[ch] += g.f64();
            gg64[ch] += g.f64() * ((v - mean[ch]) / (var[ch] + e).sqrt()).f64();
        }
        let (gg, gb): (Vec<T>, Vec<T>) = (gg64.into_iter().map(T::of).collect(), gb64.into_iter().map(T::of).collect());
        // g_x = gamma istd / m (m g_y - g_beta - x̂ g_gamma)
        let gx = x.iter().zip(gy).enumerate().map(|(i, (&v, &g))| {
            let ch = (i / hw) % c;
            let istd = T::one() / (var[ch] + e).sqrt();
            gamma[ch] * istd / m * (m * g - gb[ch] - (v - mean[ch]) * istd * gg[ch])
        }).collect();
        Ok((gx, gg, gb))
    }

    fn max_pool2d(&self, p: &Pool2d, x: &Vec<T>) -> Result<(Vec<T>, Vec<T>)> {
        ensure!(x.len() == p.x_len(), "max_pool2d: {} elements for {p:?}", x.len());
        let (h, w, oh, ow) = (p.h as isize, p.w as isize, p.oh as usize, p.ow as usize);
        let (mut y, mut arg) = (vec![T::zero(); p.y_len()], vec![T::zero(); p.y_len()]);
        for plane in 0..(p.n * p.c) as usize {
            let xp = &x[plane * (h * w) as usize..][..(h * w) as usize];
            for i in 0..oh {
                for j in 0..ow {
                    let mut best: Option<(T, usize)> = None;
                    for r in 0..p.k as isize {
                        for s in 0..p.k as isize {
                            let (ih, iw) = (i as isize * p.stride as isize - p.pad as isize + r, j as isize * p.stride as isize - p.pad as isize + s);
                            if ih < 0 || ih >= h || iw < 0 || iw >= w {
                                continue;
                            }
                            let v = xp[(ih * w + iw) as usize];
                            if best.is_none_or(|(b, _)| v > b) {
                                best = Some((v, (ih * w + iw) as usize));
                            }
                        }
                    }
                    let (v, a) = best.expect("a pooling window always overlaps the input");
                    y[(plane * oh + i) * ow + j] = v;
                    arg[(plane * oh + i) * ow + j] = T::of(a as f64);
                }
            }
        }
        Ok((y, arg))
    }

    fn max_pool2d_backward(&self, p: &Pool2d, gy: &Vec<T>, argmax: &Vec<T>) -> Result<Vec<T>> {
        let hw = (p.h * p.w) as usize;
        let ohw = (p.oh * p.ow) as usize;
        let mut gx = vec![T::zero(); p.x_len()];
        for (o, &g) in gy.iter().enumerate() {
            let plane = o / ohw;
            let a = argmax[o].f64() as usize;
            gx[plane * hw + a] = gx[plane * hw + a] + g;
        }
        Ok(gx)
    }

    fn upsample_nearest(&self, p: &Pool2d, x: &Vec<T>) -> Result<Vec<T>> {
        ensure!(x.len() == p.x_len(), "upsample_nearest: {} elements for {p:?}", x.len());
        let (h, w, oh, ow) = (p.h as usize, p.w as usize, p.oh as usize, p.ow as usize);
        let mut y = vec![T::zero(); p.y_len()];
        for plane in 0..(p.n * p.c) as usize {
            for i in 0..oh {
                for j in 0..ow {
                    y[(plane * oh + i) * ow + j] = x[plane * h * w + nearest_src(i, h, oh) * w + nearest_src(j, w, ow)];
                }
            }
        }
        Ok(y)
    }

    fn upsample_nearest_backward(&self, p: &Pool2d, gy: &Vec<T>) -> Result<Vec<T>> {
        let (h, w, oh, ow) = (p.h as usize, p.w as usize, p.oh as usize, p.ow as usize);
        let mut gx = vec![T::zero(); p.x_len()];
        for plane in 0..(p.n * p.c) as usize {
            for i in 0..oh {
                for j in 0..ow {
                    let src = plane * h * w + nearest_src(i, h, oh) * w + nearest_src(j, w, ow);
                    gx[src] = gx[src] + gy[(plane * oh + i) * ow + j];
                }
            }
        }
        Ok(gx)
    }

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

    fn focal_loss(&self, x: &Vec<T>, t: &Vec<T>, w: Option<&Vec<T>>, alpha: f32, gamma: f32) -> Result<Vec<T>> {
        ensure!(x.len() == t.len() && w.is_none_or(|w| w.len() == x.len()), "focal_loss: logits, targets and weights differ in length");
        let (a, g) = (T::of(alpha as f64), T::of(gamma as f64));
        let s = (0..x.len()).map(|i| {
            let wi = w.map_or(T::one(), |w| w[i]);
            if wi == T::zero() { T::zero() } else { wi * focal_term(x[i], t[i], a, g).0 }
        }).sum();
        Ok(vec![s])
    }

    fn focal_loss_backward(&self, x: &Vec<T>, t: &Vec<T>, w: Option<&Vec<T>>, alpha: f32, gamma: f32, gy: &Vec<T>) -> Result<Vec<T>> {
        let (a, g) = (T::of(alpha as f64), T::of(gamma as f64));
        Ok((0..x.len()).map(|i| {
            let wi = w.map_or(T::one(), |w| w[i]);
            if wi == T::zero() { T::zero() } else { gy[0] * wi * focal_term(x[i], t[i], a, g).1 }
        }).collect())
    }

    fn box_loss(&self, kind: BoxLoss, x: &Vec<T>, t: &Vec<T>, w: Option<&Vec<T>>) -> Result<Vec<T>> {
        ensure!(x.len() == t.len() && w.is_none_or(|w| w.len() == x.len()), "box_loss: predictions, targets and weights differ in length");
        let beta = T::of(kind.beta() as f64);
        Ok(vec![(0..x.len()).map(|i| w.map_or(T::one(), |w| w[i]) * box_term(x[i] - t[i], beta).0).sum()])
    }

    fn box_loss_backward(&self, kind: BoxLoss, x: &Vec<T>, t: &Vec<T>, w: Option<&Vec<T>>, gy: &Vec<T>) -> Result<Vec<T>> {
        let beta = T::of(kind.beta() as f64);
        Ok((0..x.len()).map(|i| gy[0] * w.map_or(T::one(), |w| w[i]) * box_term(x[i] - t[i], beta).1).collect())
    }

    fn cross_attention(&self, p: &XAttn, phi: &Vec<T>, alpha: &Vec<T>, m: &Vec<T>, mask: &Vec<T>) -> Result<Vec<T>> {
        check_xattn(p, phi, alpha, m, mask)?;
        Ok(super::cpu_xattn::cross_attention(p, phi, alpha, m, mask))
    }

    fn cross_attention_backward(&self, p: &XAttn, phi: &Vec<T>, alpha: &Vec<T>, m: &Vec<T>, mask: &Vec<T>, g: &Vec<T>) -> Result<(Vec<T>, Vec<T>)> {
        check_xattn(p, phi, alpha, m, mask)?;
        ensure!(g.len() == 2 * p.b as usize, "cross_attention_backward: {} upstream values for {} samples", g.len(), p.b);
        Ok(super::cpu_xattn::cross_attention_backward(p, phi, alpha, m, mask, g))
    }

    fn box_iou(&self, a: &Vec<T>, b: &Vec<T>) -> Result<Vec<T>> {
        super::cpu_boxes::box_iou(a, b)
    }

    fn box_encode(&self, coder: &BoxCoder, gt: &Vec<T>, anchors: &Vec<T>) -> Result<Vec<T>> {
        super::cpu_boxes::box_encode(coder, gt, anchors)
    }

    fn box_decode(&self, coder: &BoxCoder, d: &Vec<T>, anchors: &Vec<T>, clip: Option<[usize; 2]>) -> Result<Vec<T>> {
        super::cpu_boxes::box_decode(coder, d, anchors, clip)
    }

    fn anchors(&self, image_size: [usize; 2], grids: &[[usize; 2]], scale: f32) -> Result<Vec<T>> {
        Ok(super::cpu_boxes::anchors(image_size, grids, scale))
    }

    fn nms(&self, boxes: &Vec<T>, scores: &Vec<T>, threshold: f32) -> Result<Vec<usize>> {
        super::cpu_boxes::nms(boxes, scores, threshold)
    }

    fn match_anchors(&self, matcher: &Matcher, gt: &Vec<T>, anchors: &Vec<T>) -> Result<Vec<i64>> {
        super::cpu_boxes::match_anchors(matcher, gt, anchors)
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
