//! word2vec SGNS updates on the CPU (reference of cuda/word2vec.cu): the
//! same negatives (the kernel's hash of seed, pair and draw), the pairs
//! applied one after another. `text::word2vec::train_cpu` is the fast CPU
//! trainer (Hogwild threads, its own sampling); this is the op.

use super::{sigmoid, Cpu, Real};
use crate::backend::ops::Word2vecOps;
use anyhow::{ensure, Result};

const MAX_EXP: f64 = 6.0;

/// The kernel's counter-based hash (splitmix64's finalizer).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ceb9fe1a85ec53);
    x ^ (x >> 33)
}

impl<T: Real> Word2vecOps for Cpu<T> {
    fn word2vec_sgns(&self, syn0: &mut Vec<T>, syn1: &mut Vec<T>, pairs: &Vec<u32>, table: &Vec<u32>, dim: usize, negative: usize,
                     alpha: f32, seed: u64) -> Result<f64> {
        let vocab = syn0.len() / dim.max(1);
        ensure!(dim > 0 && syn0.len() == vocab * dim && syn1.len() == syn0.len() && !table.is_empty(),
            "word2vec_sgns: syn0 {} and syn1 {} values are not [vocab, {dim}], or the noise table is empty", syn0.len(), syn1.len());
        ensure!(pairs.len() % 2 == 0 && pairs.iter().chain(table.iter()).all(|&w| (w as usize) < vocab),
            "word2vec_sgns: pairs and noise table must hold word ids below {vocab}");
        let (alpha, one, zero) = (T::of(alpha as f64), T::one(), T::zero());
        let mut loss = 0.0;
        for (pair, cw) in pairs.chunks_exact(2).enumerate() {
            let (context, word) = (cw[0] as usize, cw[1]);
            let ctx: Vec<T> = syn0[context * dim..(context + 1) * dim].to_vec();
            let mut neu = vec![zero; dim];
            for k in 0..=negative {
                let (target, label) = if k == 0 {
                    (word, one)
                } else {
                    let t = table[(mix(seed ^ (pair as u64 * 131 + k as u64)) % table.len() as u64) as usize];
                    if t == word {
                        continue;
                    }
                    (t, zero)
                };
                let out = &mut syn1[target as usize * dim..(target as usize + 1) * dim];
                let f: T = ctx.iter().zip(out.iter()).map(|(&c, &o)| c * o).sum();
                let p = if f.f64() > MAX_EXP { one } else if f.f64() < -MAX_EXP { zero } else { sigmoid(f) };
                loss -= (if label > zero { p } else { one - p }).f64().max(1e-7).ln();
                let g = (label - p) * alpha;
                for i in 0..dim {
                    neu[i] = neu[i] + g * out[i];
                    out[i] = out[i] + g * ctx[i];
                }
            }
            for (v, n) in syn0[context * dim..(context + 1) * dim].iter_mut().zip(&neu) {
                *v = *v + *n;
            }
        }
        Ok(loss)
    }
}
