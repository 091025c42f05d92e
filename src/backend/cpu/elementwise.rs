//! Element-wise ops on the CPU (reference of cuda/elementwise.cu).

use super::{map, sigmoid, zip3, Cpu, Real, PAR_MIN};
use crate::backend::{Binary, Unary};
use crate::backend::ops::ElementwiseOps;
use crate::shape::{Broadcast, ReduceLayout};
use anyhow::{ensure, Result};
use rayon::prelude::*;

impl<T: Real> ElementwiseOps for Cpu<T> {
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
}
