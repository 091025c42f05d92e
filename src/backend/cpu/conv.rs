//! Convolutions on the CPU: im2col and one matrix product (reference of cuda/conv.cu).
//!
//! Images with a large output plane go one at a time, so that the product
//! reads and writes the tensors in place (a 1x1 stride-1 convolution is then a
//! plain matrix product, without im2col); small planes go in chunks of images,
//! so that the product is wide enough to keep the cores busy.

use super::gemm::{gemm_nt_split_k, gemm_slices};
use super::{Cpu, Real};
use crate::backend::{Conv2d, Gemm};
use crate::backend::ops::ConvOps;
use anyhow::{ensure, Result};
use rayon::prelude::*;

/// Output planes at least this large are convolved one image at a time.
const IMAGE_AT_A_TIME: usize = 256;

/// Weight gradients with at most this many outputs per summed column split
/// their sum over threads (the stem, layer1 and the 1x1 reductions; README, "Detector on the CPU").
const SPLIT_K_RATIO: usize = 64;

/// Outputs `lo..hi` of a row of `out_len` whose input `o * stride + off` lies in `0..len`.
fn valid(out_len: usize, stride: usize, off: isize, len: usize) -> (usize, usize) {
    let lo = if off < 0 { ((-off) as usize).div_ceil(stride) } else { 0 };
    let last = len as isize - 1 - off; // the largest `o * stride` still inside
    let hi = if last < 0 { 0 } else { (last as usize / stride + 1).min(out_len) };
    (lo.min(hi), hi)
}

/// Geometry of one kernel tap (r, s): the valid output rows and columns and the input offsets.
struct Tap {
    rows: (usize, usize),
    cols: (usize, usize),
    off_h: isize,
    off_w: isize,
}

fn tap(p: &Conv2d, r: usize, s: usize) -> Tap {
    let off_h = (r * p.dil_h as usize) as isize - p.pad_h as isize;
    let off_w = (s * p.dil_w as usize) as isize - p.pad_w as isize;
    Tap {
        rows: valid(p.oh as usize, p.stride_h as usize, off_h, p.h as usize),
        cols: valid(p.ow as usize, p.stride_w as usize, off_w, p.w as usize),
        off_h,
        off_w,
    }
}

/// A 1x1 stride-1 unpadded convolution reads its input as the im2col matrix itself.
fn is_pointwise(p: &Conv2d) -> bool {
    p.r == 1 && p.s == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0
}

/// im2col of images `n0..n0 + nb`, group `g`: `col[(c, r, s), (n, oh, ow)]`
/// (zeros outside the input), rows filled in parallel, each output row as one
/// copy where the stride is 1.
fn im2col<T: Real>(p: &Conv2d, x: &[T], n0: usize, nb: usize, g: usize, col: &mut [T]) {
    let (cg, rr, ss) = ((p.c / p.groups) as usize, p.r as usize, p.s as usize);
    let (w, hw, oh, ow) = (p.w as usize, (p.h * p.w) as usize, p.oh as usize, p.ow as usize);
    let (sh, sw) = (p.stride_h as usize, p.stride_w as usize);
    let cols = nb * oh * ow;
    col[..cg * rr * ss * cols].par_chunks_mut(cols).with_min_len(8).enumerate().for_each(|(row_i, row)| {
        let (c, r, s) = (row_i / (rr * ss), (row_i / ss) % rr, row_i % ss);
        let t = tap(p, r, s);
        for b in 0..nb {
            let plane = &x[((n0 + b) * p.c as usize + g * cg + c) * hw..][..hw];
            let out = &mut row[b * oh * ow..(b + 1) * oh * ow];
            out[..t.rows.0 * ow].fill(T::zero());
            out[t.rows.1 * ow..].fill(T::zero());
            for y in t.rows.0..t.rows.1 {
                let src = &plane[(y * sh).wrapping_add_signed(t.off_h) * w..][..w];
                let o = &mut out[y * ow..(y + 1) * ow];
                o[..t.cols.0].fill(T::zero());
                o[t.cols.1..].fill(T::zero());
                let (lo, hi) = t.cols;
                if sw == 1 {
                    let start = lo.wrapping_add_signed(t.off_w);
                    o[lo..hi].copy_from_slice(&src[start..start + hi - lo]);
                } else {
                    for (xo, v) in o[lo..hi].iter_mut().enumerate() {
                        *v = src[((lo + xo) * sw).wrapping_add_signed(t.off_w)];
                    }
                }
            }
        }
    });
}

/// The adjoint of im2col: adds `col` back into images `n0..n0 + nb`, group `g` of `gx`.
fn col2im<T: Real>(p: &Conv2d, col: &[T], n0: usize, nb: usize, g: usize, gx: &mut [T]) {
    let (cg, rr, ss) = ((p.c / p.groups) as usize, p.r as usize, p.s as usize);
    let (w, hw, oh, ow) = (p.w as usize, (p.h * p.w) as usize, p.oh as usize, p.ow as usize);
    let (sh, sw) = (p.stride_h as usize, p.stride_w as usize);
    let cols = nb * oh * ow;
    let taps: Vec<Tap> = (0..rr * ss).map(|i| tap(p, i / ss, i % ss)).collect();
    for b in 0..nb {
        // each channel plane of the image is written by its own rows only: split by channel
        let img = &mut gx[((n0 + b) * p.c as usize + g * cg) * hw..][..cg * hw];
        img.par_chunks_mut(hw).enumerate().for_each(|(c, plane)| {
            for (i, t) in taps.iter().enumerate() {
                let row = &col[(c * rr * ss + i) * cols + b * oh * ow..][..oh * ow];
                let (lo, hi) = t.cols;
                for y in t.rows.0..t.rows.1 {
                    let dst = &mut plane[(y * sh).wrapping_add_signed(t.off_h) * w..][..w];
                    let src = &row[y * ow..(y + 1) * ow];
                    for xo in lo..hi {
                        let d = &mut dst[(xo * sw).wrapping_add_signed(t.off_w)];
                        *d = *d + src[xo];
                    }
                }
            }
        });
    }
}

/// Images per chunk: one when its output plane is large, else as many as keep
/// the im2col buffer under 32M elements.
fn conv_chunk(p: &Conv2d) -> usize {
    if (p.oh * p.ow) as usize >= IMAGE_AT_A_TIME {
        return 1;
    }
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

/// Where the chunk's operands live: in the tensors themselves for one image, else in buffers.
struct Chunk {
    n0: usize,
    nb: usize,
    g: usize,
}

impl Chunk {
    fn single(&self) -> bool {
        self.nb == 1
    }
    /// Offset of group `g` of image `n0` in a `[n, ch, plane]` tensor.
    fn at(&self, ch: usize, groups: usize, plane: usize) -> usize {
        (self.n0 * ch + self.g * (ch / groups)) * plane
    }
}

fn chunks(p: &Conv2d) -> impl Iterator<Item = Chunk> + '_ {
    let chunk = conv_chunk(p);
    (0..p.n as usize).step_by(chunk).flat_map(move |n0| {
        (0..p.groups as usize).map(move |g| Chunk { n0, nb: chunk.min(p.n as usize - n0), g })
    })
}

fn check_conv<T>(p: &Conv2d, what: &str, got: &[T], want: usize) -> Result<()> {
    ensure!(got.len() == want, "conv2d {what}: {} elements, expected {want} for {p:?}", got.len());
    Ok(())
}

/// The sizes every pass needs, and its scratch (left empty where a pass uses the tensors in place).
struct Plan<T> {
    kg: usize,
    crs: usize,
    ohw: usize,
    /// im2col of a chunk, `[crs, nb*ohw]`
    col: Vec<T>,
    /// the output (or its gradient) of a chunk, `[kg, nb*ohw]`
    rows: Vec<T>,
}

fn plan<T: Real>(p: &Conv2d) -> Plan<T> {
    let (kg, crs, ohw, chunk) = ((p.k / p.groups) as usize, p.w_len() / p.k as usize, (p.oh * p.ow) as usize, conv_chunk(p));
    let col = if is_pointwise(p) && chunk == 1 { Vec::new() } else { vec![T::zero(); crs * chunk * ohw] };
    let rows = if chunk == 1 { Vec::new() } else { vec![T::zero(); kg * chunk * ohw] };
    Plan { kg, crs, ohw, col, rows }
}

/// The chunk's im2col matrix: the input itself for one image of a pointwise convolution, else built in `col`.
fn columns<'a, T: Real>(p: &Conv2d, x: &'a [T], ch: &Chunk, col: &'a mut [T]) -> &'a [T] {
    if is_pointwise(p) && ch.single() {
        &x[ch.at(p.c as usize, p.groups as usize, (p.h * p.w) as usize)..][..(p.c / p.groups * p.h * p.w) as usize]
    } else {
        im2col(p, x, ch.n0, ch.nb, ch.g, col);
        col
    }
}

/// The chunk's output gradient as `[kg, nb*ohw]`: the tensor itself for one image, else gathered in `rows`.
fn output_rows<'a, T: Real>(p: &Conv2d, gy: &'a [T], ch: &Chunk, rows: &'a mut [T]) -> &'a [T] {
    let (kg, ohw) = ((p.k / p.groups) as usize, (p.oh * p.ow) as usize);
    if ch.single() {
        &gy[ch.at(p.k as usize, p.groups as usize, ohw)..][..kg * ohw]
    } else {
        gather_chunk(p, gy, ch.n0, ch.nb, ch.g, rows);
        rows
    }
}

impl<T: Real> ConvOps for Cpu<T> {
    fn conv2d(&self, p: &Conv2d, x: &Vec<T>, w: &Vec<T>, bias: Option<&Vec<T>>) -> Result<Vec<T>> {
        check_conv(p, "input", x, p.x_len())?;
        check_conv(p, "weight", w, p.w_len())?;
        let Plan { kg, crs, ohw, mut col, mut rows } = plan::<T>(p);
        let mut y = vec![T::zero(); p.y_len()];
        for ch in chunks(p) {
            let col = columns(p, x, &ch, &mut col);
            // out [kg, nb*ohw] = W_g [kg, crs] x col [crs, nb*ohw]
            let gm = Gemm::new(1, kg, ch.nb * ohw, crs, false, false);
            let wg = &w[ch.g * kg * crs..(ch.g + 1) * kg * crs];
            if ch.single() {
                gemm_slices(&gm, wg, col, &mut y[ch.at(p.k as usize, p.groups as usize, ohw)..][..kg * ohw])?;
            } else {
                gemm_slices(&gm, wg, col, &mut rows)?;
                scatter_chunk(p, &rows, ch.n0, ch.nb, ch.g, &mut y);
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
        let Plan { kg, crs, ohw, mut col, mut rows } = plan::<T>(p);
        let mut gx = vec![T::zero(); p.x_len()];
        for ch in chunks(p) {
            let g = output_rows(p, gy, &ch, &mut rows);
            // col [crs, nb*ohw] = W_g^T [crs, kg] x gy [kg, nb*ohw]
            let gm = Gemm::new(1, crs, ch.nb * ohw, kg, true, false);
            let wg = &w[ch.g * kg * crs..(ch.g + 1) * kg * crs];
            if is_pointwise(p) && ch.single() {
                let hw = (p.h * p.w) as usize;
                gemm_slices(&gm, wg, g, &mut gx[ch.at(p.c as usize, p.groups as usize, hw)..][..crs * hw])?;
            } else {
                gemm_slices(&gm, wg, g, &mut col)?;
                col2im(p, &col, ch.n0, ch.nb, ch.g, &mut gx);
            }
        }
        Ok(gx)
    }

    fn conv2d_backward_weight(&self, p: &Conv2d, x: &Vec<T>, gy: &Vec<T>) -> Result<Vec<T>> {
        check_conv(p, "input", x, p.x_len())?;
        check_conv(p, "output gradient", gy, p.y_len())?;
        let Plan { kg, crs, ohw, mut col, mut rows } = plan::<T>(p);
        let mut gw = vec![T::zero(); p.w_len()];
        for ch in chunks(p) {
            let col = columns(p, x, &ch, &mut col);
            let g = output_rows(p, gy, &ch, &mut rows);
            // gW_g [kg, crs] += gy [kg, nb*ohw] x col^T [nb*ohw, crs]
            let (cols, gw_g) = (ch.nb * ohw, &mut gw[ch.g * kg * crs..(ch.g + 1) * kg * crs]);
            if kg * crs <= SPLIT_K_RATIO * cols {
                gemm_nt_split_k(kg, crs, cols, g, col, gw_g)?;
            } else {
                let mut gm = Gemm::new(1, kg, crs, cols, false, true);
                gm.beta = 1.0;
                gemm_slices(&gm, g, col, gw_g)?;
            }
        }
        Ok(gw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The convolution by its definition, and its two adjoints, in f64: (y, gx, gw).
    fn direct(p: &Conv2d, x: &[f64], w: &[f64], gy: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (n, c, h, wd, k, r, s) = (p.n as usize, p.c as usize, p.h as isize, p.w as isize, p.k as usize, p.r as usize, p.s as usize);
        let (oh, ow, cg, kg) = (p.oh as usize, p.ow as usize, c / p.groups as usize, k / p.groups as usize);
        let (mut y, mut gx, mut gw) = (vec![0.0; p.y_len()], vec![0.0; p.x_len()], vec![0.0; p.w_len()]);
        for b in 0..n {
            for ko in 0..k {
                let g = ko / kg;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let yi = ((b * k + ko) * oh + oy) * ow + ox;
                        for ci in 0..cg {
                            for ri in 0..r {
                                for si in 0..s {
                                    let ih = (oy * p.stride_h as usize + ri * p.dil_h as usize) as isize - p.pad_h as isize;
                                    let iw = (ox * p.stride_w as usize + si * p.dil_w as usize) as isize - p.pad_w as isize;
                                    if ih < 0 || ih >= h || iw < 0 || iw >= wd {
                                        continue;
                                    }
                                    let xi = ((b * c + g * cg + ci) * h as usize + ih as usize) * wd as usize + iw as usize;
                                    let wi = ((ko * cg + ci) * r + ri) * s + si;
                                    y[yi] += x[xi] * w[wi];
                                    gx[xi] += gy[yi] * w[wi];
                                    gw[wi] += gy[yi] * x[xi];
                                }
                            }
                        }
                    }
                }
            }
        }
        (y, gx, gw)
    }

    /// Every path: one image at a time (planes >= 256) and chunks, 1x1 as a plain
    /// product, strides, padding wider than the kernel, dilation, groups.
    #[test]
    fn im2col_paths_match_the_definition() {
        let cases: [([usize; 4], [usize; 4], usize, usize, usize, usize); 9] = [
            ([2, 5, 16, 17], [6, 5, 1, 1], 1, 0, 1, 1),  // pointwise, image at a time
            ([3, 5, 6, 7], [4, 5, 1, 1], 1, 0, 1, 1),    // pointwise, chunked
            ([2, 4, 19, 18], [3, 4, 3, 3], 1, 1, 1, 1),  // 3x3, image at a time
            ([3, 3, 9, 11], [5, 3, 7, 7], 2, 3, 1, 1),   // the stem's geometry, chunked
            ([2, 3, 40, 36], [4, 3, 7, 7], 2, 3, 1, 1),  // the stem's geometry, image at a time
            ([2, 6, 8, 8], [4, 3, 3, 3], 1, 2, 2, 2),    // dilation and groups
            ([2, 4, 9, 9], [6, 4, 1, 1], 2, 0, 1, 1),    // strided 1x1 (downsample)
            ([1, 4, 34, 33], [4, 2, 3, 3], 2, 1, 1, 2),  // strided, grouped, image at a time
            ([2, 2, 5, 5], [3, 2, 3, 3], 1, 4, 1, 1),    // padding beyond the kernel: zero rows
        ];
        let cpu = Cpu::<f64>::new();
        let mut rng = Rng::new(7);
        for (xs, ws, stride, pad, dil, groups) in cases {
            let p = Conv2d::new(&xs, &ws, [stride; 2], [pad; 2], [dil; 2], groups).unwrap();
            let rand = |rng: &mut Rng, n: usize| rng.normals(n).into_iter().map(f64::from).collect::<Vec<f64>>();
            let (x, w, gy) = (rand(&mut rng, p.x_len()), rand(&mut rng, p.w_len()), rand(&mut rng, p.y_len()));
            let (y0, gx0, gw0) = direct(&p, &x, &w, &gy);
            let y = cpu.conv2d(&p, &x, &w, None).unwrap();
            let gx = cpu.conv2d_backward_data(&p, &gy, &w).unwrap();
            let gw = cpu.conv2d_backward_weight(&p, &x, &gy).unwrap();
            for (what, got, want) in [("forward", &y, &y0), ("data gradient", &gx, &gx0), ("weight gradient", &gw, &gw0)] {
                let err = got.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                assert!(err < 1e-9, "{what} of {p:?} (chunk {}): max error {err}", conv_chunk(&p));
            }
        }
    }
}
