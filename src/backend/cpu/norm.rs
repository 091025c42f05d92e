//! Normalizations on the CPU (reference of cuda/norm.cu).

use super::{at, each_line, Cpu, Real};
use crate::backend::ops::NormOps;
use crate::shape::AxisLayout;
use anyhow::{ensure, Result};
use rayon::prelude::*;

impl<T: Real> NormOps for Cpu<T> {
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

    fn channel_affine(&self, x: &Vec<T>, scale: &Vec<T>, shift: Option<&Vec<T>>, c: usize, hw: usize) -> Result<Vec<T>> {
        ensure!(scale.len() == c && shift.is_none_or(|s| s.len() == c), "channel_affine: scale/shift must have {c} elements");
        ensure!(hw > 0 && x.len() % (c * hw) == 0, "channel_affine: {} elements are not [n, {c}, {hw}]", x.len());
        // one plane per task: the channel is fixed along it
        let mut y = vec![T::zero(); x.len()];
        y.par_chunks_mut(hw).zip(x.par_chunks(hw)).with_min_len((4096 / hw).max(1)).enumerate().for_each(|(i, (out, src))| {
            let (a, b) = (scale[i % c], shift.map_or(T::zero(), |s| s[i % c]));
            out.iter_mut().zip(src).for_each(|(o, &v)| *o = v * a + b);
        });
        Ok(y)
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
}
