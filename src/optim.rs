//! Optimizers over a `ParamSet`: SGD with momentum and weight decay, and Adam,
//! each one kernel per parameter tensor (`sgd_step`, `adam_step`).

use crate::backend::{Adam, Backend, Sgd};
use crate::params::ParamSet;
use anyhow::Result;

pub enum Optimizer<B: Backend> {
    Sgd { h: Sgd, momentum: Vec<Option<B::Buf>> },
    Adam { h: Adam, m: Vec<Option<B::Buf>>, v: Vec<Option<B::Buf>> },
}

impl<B: Backend> Optimizer<B> {
    pub fn sgd(lr: f32, momentum: f32, weight_decay: f32) -> Self {
        Optimizer::Sgd { h: Sgd { lr, momentum, weight_decay }, momentum: Vec::new() }
    }

    pub fn adam(lr: f32, weight_decay: f32) -> Self {
        Optimizer::Adam { h: Adam { lr, weight_decay, step: 0, ..Adam::default() }, m: Vec::new(), v: Vec::new() }
    }

    pub fn set_lr(&mut self, lr: f32) {
        match self {
            Optimizer::Sgd { h, .. } => h.lr = lr,
            Optimizer::Adam { h, .. } => h.lr = lr,
        }
    }

    /// One update of every trainable parameter that has a gradient.
    pub fn step(&mut self, b: &B, params: &mut ParamSet<B>) -> Result<()> {
        let n = params.params.len();
        let grow = |v: &mut Vec<Option<B::Buf>>| v.resize_with(n, || None);
        match self {
            Optimizer::Sgd { h, momentum } => {
                grow(momentum);
                for i in 0..n {
                    if !params.params[i].trainable {
                        continue;
                    }
                    let len = params.params[i].value.numel();
                    let (value, grad) = params.value_mut(i)?;
                    let Some(grad) = grad else { continue };
                    let buf = match &mut momentum[i] {
                        Some(buf) => buf,
                        slot => slot.insert(b.zeros(len)?),
                    };
                    b.sgd_step(h, value, grad, buf)?;
                }
            }
            Optimizer::Adam { h, m, v } => {
                grow(m);
                grow(v);
                h.step += 1;
                for i in 0..n {
                    if !params.params[i].trainable {
                        continue;
                    }
                    let len = params.params[i].value.numel();
                    let (value, grad) = params.value_mut(i)?;
                    let Some(grad) = grad else { continue };
                    if m[i].is_none() {
                        m[i] = Some(b.zeros(len)?);
                        v[i] = Some(b.zeros(len)?);
                    }
                    let (mi, vi) = (m[i].as_mut().unwrap(), v[i].as_mut().unwrap());
                    b.adam_step(h, value, grad, mi, vi)?;
                }
            }
        }
        Ok(())
    }
}
