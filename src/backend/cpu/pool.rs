//! Pooling and upsampling on the CPU (reference of cuda/pool.cu).

use super::{Cpu, Real};
use crate::backend::Pool2d;
use crate::backend::ops::PoolOps;
use anyhow::{ensure, Result};

fn nearest_src(dst: usize, input: usize, output: usize) -> usize {
    // PyTorch: floor(dst * (in / out)) computed in f32
    (((dst as f32) * (input as f32 / output as f32)).floor() as usize).min(input - 1)
}

impl<T: Real> PoolOps for Cpu<T> {
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
}
