//! Convolutions on the CPU: im2col and one matrix product per chunk of images (reference of cuda/conv.cu).

use super::gemm::gemm_slices;
use super::{Cpu, Real};
use crate::backend::{Conv2d, Gemm};
use crate::backend::ops::ConvOps;
use anyhow::{ensure, Result};
use rayon::prelude::*;

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

fn check_conv<T>(p: &Conv2d, what: &str, got: &[T], want: usize) -> Result<()> {
    ensure!(got.len() == want, "conv2d {what}: {} elements, expected {want} for {p:?}", got.len());
    Ok(())
}

impl<T: Real> ConvOps for Cpu<T> {
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
}
