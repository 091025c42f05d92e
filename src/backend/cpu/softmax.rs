//! Softmax on the CPU (reference of cuda/softmax.cu).

use super::{at, each_line, Cpu, Real};
use crate::backend::ops::SoftmaxOps;
use crate::shape::AxisLayout;
use anyhow::Result;

impl<T: Real> SoftmaxOps for Cpu<T> {
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
}
