//! Optimizers over a `ParamSet`: SGD with momentum and weight decay, and Adam,
//! each one kernel per parameter tensor (`sgd_step`, `adam_step`).

use crate::backend::{Adam, Backend, Sgd};
use crate::params::ParamSet;
use crate::weights::TensorFile;
use anyhow::{Context, Result};

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

impl<B: Backend> Optimizer<B> {
    /// The optimizer's state as named host tensors (`optimizer.<slot>.<param>`),
    /// with the Adam step count as a one-element tensor.
    pub fn state_tensors(&self, b: &B, params: &ParamSet<B>) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>> {
        let mut out = Vec::new();
        let mut push = |slot: &str, bufs: &Vec<Option<B::Buf>>| -> Result<()> {
            for (i, buf) in bufs.iter().enumerate() {
                if let Some(buf) = buf {
                    let p = &params.params[i];
                    out.push((format!("optimizer.{slot}.{}", p.name), p.value.shape.clone(), b.download(buf)?));
                }
            }
            Ok(())
        };
        match self {
            Optimizer::Sgd { momentum, .. } => push("momentum", momentum)?,
            Optimizer::Adam { h, m, v } => {
                push("m", m)?;
                push("v", v)?;
                out.push(("optimizer.step".to_string(), vec![1], vec![h.step as f32]));
            }
        }
        Ok(out)
    }

    /// Restores what `state_tensors` wrote (missing slots start from zero).
    pub fn load_state(&mut self, b: &B, params: &ParamSet<B>, file: &TensorFile) -> Result<()> {
        let n = params.params.len();
        let load = |slot: &str, bufs: &mut Vec<Option<B::Buf>>| -> Result<()> {
            bufs.clear();
            bufs.resize_with(n, || None);
            for (i, p) in params.params.iter().enumerate() {
                if let Some(t) = file.tensors.get(&format!("optimizer.{slot}.{}", p.name)) {
                    anyhow::ensure!(t.shape == p.value.shape, "{}: optimizer state of {} has shape {:?}, expected {:?}", file.path.display(), p.name, t.shape, p.value.shape);
                    bufs[i] = Some(b.upload(&t.data)?);
                }
            }
            Ok(())
        };
        match self {
            Optimizer::Sgd { momentum, .. } => load("momentum", momentum)?,
            Optimizer::Adam { h, m, v } => {
                load("m", m)?;
                load("v", v)?;
                h.step = file.get("optimizer.step").ok().and_then(|t| t.data.first().copied()).context("optimizer.step")? as u32;
            }
        }
        Ok(())
    }
}
