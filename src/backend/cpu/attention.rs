//! The fused cross-attention of the literal variant on the CPU (the readable
//! reference of cuda/attention.cu): S_roi and S_text of each sample from phi,
//! alpha, the attribute embeddings and their mask, and the backward pass to
//! phi and alpha (the embeddings are fixed), written out with the formulas
//! of SPEC 4.6. Every quantity is recomputed in the backward pass, so the
//! forward keeps nothing.

use super::{Cpu, Real};
use crate::backend::ops::AttentionOps;
use crate::backend::XAttn;
use anyhow::{ensure, Result};
use rayon::prelude::*;

fn check_xattn<T>(p: &XAttn, phi: &[T], alpha: &[T], m: &[T], mask: &[T]) -> Result<()> {
    let (b, n, mm, d) = (p.b as usize, p.n as usize, p.m as usize, p.d as usize);
    ensure!(phi.len() == b * n * d && alpha.len() == b * n && m.len() == b * mm * d && mask.len() == b * mm,
        "cross_attention: buffers of {}, {}, {}, {} elements do not fit {p:?}", phi.len(), alpha.len(), m.len(), mask.len());
    Ok(())
}



/// Forward quantities of one sample.
struct Fwd<T> {
    pn: Vec<T>,  // |phi_i|                       [N]
    mh: Vec<T>,  // m_j / (|m_j| + e)             [M, d]
    s: Vec<T>,   // cos(phi_i, m_j)               [N, M]
    z: Vec<T>,   // leaky(s) * mask               [N, M]
    ca: Vec<T>,  // |z_{:, j}|                    [M]
    rb: Vec<T>,  // |z_{i, :}|                    [N]
    a: Vec<T>,   // softmax_j(la z / (ca + e))    [N, M]
    pb: Vec<T>,  // softmax_i(lb z / (rb + e))    [N, M] (before the mask)
    big_a: Vec<T>, // sum_i alpha_i a_ij phi_i   [M, d]
    big_b: Vec<T>, // sum_j b_ij m_j              [N, d]
}

fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    a.iter().zip(b).map(|(&x, &y)| x * y).sum()
}

fn norm<T: Real>(a: &[T]) -> T {
    dot(a, a).sqrt()
}

fn forward<T: Real>(p: &XAttn, phi: &[T], alpha: &[T], m: &[T], mask: &[T]) -> Fwd<T> {
    let (n, mm, d) = (p.n as usize, p.m as usize, p.d as usize);
    let e = T::of(1e-8);
    let (la, lb, slope) = (T::of(p.lambda_a as f64), T::of(p.lambda_b as f64), T::of(p.slope as f64));
    let pn: Vec<T> = (0..n).map(|i| norm(&phi[i * d..(i + 1) * d])).collect();
    let ph: Vec<T> = (0..n * d).map(|k| phi[k] / (pn[k / d] + e)).collect();
    let mh: Vec<T> = (0..mm).flat_map(|j| { let r = &m[j * d..(j + 1) * d]; let nm = norm(r); r.iter().map(move |&v| v / (nm + e)) }).collect();
    let s: Vec<T> = (0..n * mm).map(|k| dot(&ph[(k / mm) * d..(k / mm + 1) * d], &mh[(k % mm) * d..(k % mm + 1) * d])).collect();
    let z: Vec<T> = (0..n * mm).map(|k| (if s[k] > T::zero() { s[k] } else { s[k] * slope }) * mask[k % mm]).collect();
    let ca: Vec<T> = (0..mm).map(|j| (0..n).map(|i| z[i * mm + j] * z[i * mm + j]).sum::<T>().sqrt()).collect();
    let rb: Vec<T> = (0..n).map(|i| norm(&z[i * mm..(i + 1) * mm])).collect();
    // a: softmax over valid attributes j of la * z / (ca + e)
    let mut a = vec![T::zero(); n * mm];
    for i in 0..n {
        let u = |j: usize| la * z[i * mm + j] / (ca[j] + e);
        let valid = |j: &usize| mask[*j] != T::zero();
        let mx = (0..mm).filter(valid).map(u).fold(T::neg_infinity(), T::max);
        let tot: T = (0..mm).filter(valid).map(|j| (u(j) - mx).exp()).sum();
        for j in (0..mm).filter(valid) {
            a[i * mm + j] = (u(j) - mx).exp() / tot;
        }
    }
    // b: softmax over ROIs i of lb * z / (rb + e), then masked
    let mut pb = vec![T::zero(); n * mm];
    for j in 0..mm {
        let u = |i: usize| lb * z[i * mm + j] / (rb[i] + e);
        let mx = (0..n).map(u).fold(T::neg_infinity(), T::max);
        let tot: T = (0..n).map(|i| (u(i) - mx).exp()).sum();
        for i in 0..n {
            pb[i * mm + j] = (u(i) - mx).exp() / tot;
        }
    }
    let mut big_a = vec![T::zero(); mm * d];
    let mut big_b = vec![T::zero(); n * d];
    for i in 0..n {
        for j in 0..mm {
            let w = alpha[i] * a[i * mm + j];
            let bij = pb[i * mm + j] * mask[j];
            for k in 0..d {
                big_a[j * d + k] = big_a[j * d + k] + w * phi[i * d + k];
                big_b[i * d + k] = big_b[i * d + k] + bij * m[j * d + k];
            }
        }
    }
    Fwd { pn, mh, s, z, ca, rb, a, pb, big_a, big_b }
}

/// cos(u, v) with each norm clamped at eps, and its gradient for u.
fn cos_grad<T: Real>(u: &[T], v: &[T], g: T, out: &mut [T]) -> T {
    let e = T::of(1e-8);
    let (nu, nv) = (norm(u), norm(v));
    let den = nu.max(e) * nv.max(e);
    let c = dot(u, v) / den;
    let k = if nu > e { c / (nu * nu) } else { T::zero() };
    for i in 0..u.len() {
        out[i] = out[i] + g * (v[i] / den - k * u[i]);
    }
    c
}

fn counts<T: Real>(mask: &[T]) -> T {
    mask.iter().copied().sum::<T>().max(T::one())
}

/// `[2B]`: S_roi of every sample, then S_text of every sample.
pub fn cross_attention<T: Real>(p: &XAttn, phi: &[T], alpha: &[T], m: &[T], mask: &[T]) -> Vec<T> {
    let (b, n, mm, d) = (p.b as usize, p.n as usize, p.m as usize, p.d as usize);
    // samples are independent: one per thread
    let per_sample: Vec<(T, T)> = (0..b).into_par_iter().map(|s| {
        let (ph, al, ms, mk) = (&phi[s * n * d..(s + 1) * n * d], &alpha[s * n..(s + 1) * n], &m[s * mm * d..(s + 1) * mm * d], &mask[s * mm..(s + 1) * mm]);
        let f = forward(p, ph, al, ms, mk);
        let mut scratch = vec![T::zero(); d];
        let r_roi: T = (0..n).map(|i| cos_grad(&f.big_b[i * d..(i + 1) * d], &ph[i * d..(i + 1) * d], T::zero(), &mut scratch)).sum();
        let r_text: T = (0..mm).map(|j| mk[j] * cos_grad(&f.big_a[j * d..(j + 1) * d], &ms[j * d..(j + 1) * d], T::zero(), &mut scratch)).sum();
        (r_roi / T::of(n as f64), r_text / counts(mk))
    }).collect();
    let (s_roi, s_text): (Vec<T>, Vec<T>) = per_sample.into_iter().unzip();
    [s_roi, s_text].concat()
}

/// Gradients of phi `[B, N, d]` and alpha `[B, N]` for upstream `g` `[2B]`.
pub fn cross_attention_backward<T: Real>(p: &XAttn, phi: &[T], alpha: &[T], m: &[T], mask: &[T], g: &[T]) -> (Vec<T>, Vec<T>) {
    let (b, n, mm, d) = (p.b as usize, p.n as usize, p.m as usize, p.d as usize);
    let e = T::of(1e-8);
    let (la, lb, slope) = (T::of(p.lambda_a as f64), T::of(p.lambda_b as f64), T::of(p.slope as f64));
    let (mut gphi, mut galpha) = (vec![T::zero(); b * n * d], vec![T::zero(); b * n]);
    // samples are independent: one per thread, each writing its own slices
    gphi.par_chunks_mut((n * d).max(1)).zip(galpha.par_chunks_mut(n.max(1))).enumerate().for_each(|(s, (gp, ga))| {
        let (phs, al, ms, mk) = (&phi[s * n * d..(s + 1) * n * d], &alpha[s * n..(s + 1) * n], &m[s * mm * d..(s + 1) * mm * d], &mask[s * mm..(s + 1) * mm]);
        let f = forward(p, phs, al, ms, mk);
        let (g_roi, g_text) = (g[s] / T::of(n as f64), g[b + s] / counts(mk));
        // r_roi_i = cos(B_i, phi_i): to B_i and (directly) phi_i; then b_ij = m_j . g_B_i
        let mut g_b = vec![T::zero(); n * mm];
        for i in 0..n {
            let mut gbi = vec![T::zero(); d];
            cos_grad(&f.big_b[i * d..(i + 1) * d], &phs[i * d..(i + 1) * d], g_roi, &mut gbi);
            cos_grad(&phs[i * d..(i + 1) * d], &f.big_b[i * d..(i + 1) * d], g_roi, &mut gp[i * d..(i + 1) * d]);
            for j in 0..mm {
                g_b[i * mm + j] = dot(&ms[j * d..(j + 1) * d], &gbi) * mk[j];
            }
        }
        // r_text_j = cos(A_j, m_j): to A_j
        let mut g_a_big = vec![T::zero(); mm * d];
        for j in 0..mm {
            cos_grad(&f.big_a[j * d..(j + 1) * d], &ms[j * d..(j + 1) * d], g_text * mk[j], &mut g_a_big[j * d..(j + 1) * d]);
        }
        // A_j = sum_i alpha_i a_ij phi_i
        let mut g_a = vec![T::zero(); n * mm];
        for i in 0..n {
            for j in 0..mm {
                let gw = dot(&phs[i * d..(i + 1) * d], &g_a_big[j * d..(j + 1) * d]);
                ga[i] = ga[i] + f.a[i * mm + j] * gw;
                g_a[i * mm + j] = al[i] * gw;
                let w = al[i] * f.a[i * mm + j];
                for k in 0..d {
                    gp[i * d + k] = gp[i * d + k] + w * g_a_big[j * d + k];
                }
            }
        }
        // a = softmax_j(la za), za = z / (ca_j + e) normalised over i
        let mut g_za = vec![T::zero(); n * mm];
        for i in 0..n {
            let dotp: T = (0..mm).map(|j| f.a[i * mm + j] * g_a[i * mm + j]).sum();
            for j in 0..mm {
                g_za[i * mm + j] = la * f.a[i * mm + j] * (g_a[i * mm + j] - dotp);
            }
        }
        // b = softmax_i(lb zb) * mask, zb = z / (rb_i + e) normalised over j
        let mut g_zb = vec![T::zero(); n * mm];
        for j in 0..mm {
            let dotp: T = (0..n).map(|i| f.pb[i * mm + j] * g_b[i * mm + j]).sum();
            for i in 0..n {
                g_zb[i * mm + j] = lb * f.pb[i * mm + j] * (g_b[i * mm + j] - dotp);
            }
        }
        let mut g_z = vec![T::zero(); n * mm];
        for j in 0..mm {
            let c = f.ca[j];
            let zg: T = (0..n).map(|i| f.z[i * mm + j] * g_za[i * mm + j]).sum();
            let k = if c > T::zero() { zg / ((c + e) * (c + e) * c) } else { T::zero() };
            for i in 0..n {
                g_z[i * mm + j] = g_z[i * mm + j] + g_za[i * mm + j] / (c + e) - f.z[i * mm + j] * k;
            }
        }
        for i in 0..n {
            let r = f.rb[i];
            let zg: T = (0..mm).map(|j| f.z[i * mm + j] * g_zb[i * mm + j]).sum();
            let k = if r > T::zero() { zg / ((r + e) * (r + e) * r) } else { T::zero() };
            for j in 0..mm {
                g_z[i * mm + j] = g_z[i * mm + j] + g_zb[i * mm + j] / (r + e) - f.z[i * mm + j] * k;
            }
        }
        // z = leaky(s) * mask ; s_ij = ph_i . mh_j ; ph = phi / (|phi| + e)
        for i in 0..n {
            let mut g_ph = vec![T::zero(); d];
            for j in 0..mm {
                let gs = g_z[i * mm + j] * mk[j] * if f.s[i * mm + j] > T::zero() { T::one() } else { slope };
                for k in 0..d {
                    g_ph[k] = g_ph[k] + gs * f.mh[j * d + k];
                }
            }
            let pn = f.pn[i];
            let xg = dot(&phs[i * d..(i + 1) * d], &g_ph);
            let k = if pn > T::zero() { xg / ((pn + e) * (pn + e) * pn) } else { T::zero() };
            for q in 0..d {
                gp[i * d + q] = gp[i * d + q] + g_ph[q] / (pn + e) - phs[i * d + q] * k;
            }
        }
    });
    (gphi, galpha)
}


impl<T: Real> AttentionOps for Cpu<T> {
    fn cross_attention(&self, p: &XAttn, phi: &Vec<T>, alpha: &Vec<T>, m: &Vec<T>, mask: &Vec<T>) -> Result<Vec<T>> {
        check_xattn(p, phi, alpha, m, mask)?;
        Ok(cross_attention(p, phi, alpha, m, mask))
    }

    fn cross_attention_backward(&self, p: &XAttn, phi: &Vec<T>, alpha: &Vec<T>, m: &Vec<T>, mask: &Vec<T>, g: &Vec<T>) -> Result<(Vec<T>, Vec<T>)> {
        check_xattn(p, phi, alpha, m, mask)?;
        ensure!(g.len() == 2 * p.b as usize, "cross_attention_backward: {} upstream values for {} samples", g.len(), p.b);
        Ok(cross_attention_backward(p, phi, alpha, m, mask, g))
    }
}
