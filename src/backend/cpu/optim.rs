//! Optimizer steps on the CPU (reference of cuda/optim.cu).

use super::{Cpu, Real};
use crate::backend::{Adam, Sgd};
use crate::backend::ops::OptimOps;
use anyhow::Result;

impl<T: Real> OptimOps for Cpu<T> {
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

    fn scale_inplace(&self, x: &mut Vec<T>, c: f32) -> Result<()> {
        let c = T::of(c as f64);
        x.iter_mut().for_each(|v| *v = *v * c);
        Ok(())
    }
}
