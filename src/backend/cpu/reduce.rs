//! Axis sums on the CPU (reference of cuda/reduce.cu).

use super::{at, each_line, Cpu, Real};
use crate::backend::ops::ReduceOps;
use crate::shape::AxisLayout;
use anyhow::Result;

impl<T: Real> ReduceOps for Cpu<T> {
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

    fn sum_squares(&self, x: &Vec<T>) -> Result<f64> {
        Ok(x.iter().map(|v| v.f64() * v.f64()).sum())
    }
}
