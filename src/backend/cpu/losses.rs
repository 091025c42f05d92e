//! Losses on the CPU (reference of cuda/losses.cu).

use super::{sigmoid, Cpu, Real};
use crate::backend::BoxLoss;
use crate::backend::ops::LossOps;
use anyhow::{ensure, Result};

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

impl<T: Real> LossOps for Cpu<T> {
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
}
