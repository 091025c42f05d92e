//! Named parameters (torchvision's names, so weights move between PyTorch and
//! the engine), their accumulated gradients, and gradient-norm clipping.

use crate::tensor::Tensor;
use crate::backend::Backend;
use crate::shape::numel;
use anyhow::{anyhow, ensure, Result};
use std::sync::Arc;

pub struct Param<B: Backend> {
    pub name: String,
    pub value: Tensor<B>,
    /// Accumulated gradient (`+=` over backward passes until `zero_grad`).
    pub grad: Option<B::Buf>,
    pub trainable: bool,
}

pub struct ParamSet<B: Backend> {
    pub params: Vec<Param<B>>,
}

impl<B: Backend> Default for ParamSet<B> {
    fn default() -> Self {
        ParamSet { params: Vec::new() }
    }
}

impl<B: Backend> ParamSet<B> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a trainable parameter; names are unique.
    pub fn add(&mut self, name: &str, value: Tensor<B>) -> Result<usize> {
        ensure!(self.params.iter().all(|p| p.name != name), "parameter {name} is defined twice");
        self.params.push(Param { name: name.to_string(), value, grad: None, trainable: true });
        Ok(self.params.len() - 1)
    }

    pub fn index(&self, name: &str) -> Result<usize> {
        self.params.iter().position(|p| p.name == name).ok_or_else(|| anyhow!("no parameter named {name}"))
    }

    pub fn get(&self, name: &str) -> Result<&Param<B>> {
        Ok(&self.params[self.index(name)?])
    }

    pub fn num_elements(&self) -> usize {
        self.params.iter().map(|p| numel(&p.value.shape)).sum()
    }

    pub fn accumulate_grad(&mut self, b: &B, idx: usize, g: B::Buf) -> Result<()> {
        let p = &mut self.params[idx];
        ensure!(b.len(&g) == p.value.numel(), "gradient of {} has {} elements, expected {}", p.name, b.len(&g), p.value.numel());
        match &mut p.grad {
            Some(acc) => b.axpy(acc, 1.0, &g),
            slot => {
                *slot = Some(g);
                Ok(())
            }
        }
    }

    pub fn zero_grad(&mut self) {
        self.params.iter_mut().for_each(|p| p.grad = None);
    }

    /// Mutable access to a value for an in-place update; fails while a graph
    /// still holds the parameter (drop the graph before the optimizer step).
    pub fn value_mut(&mut self, idx: usize) -> Result<(&mut B::Buf, Option<&B::Buf>)> {
        let p = &mut self.params[idx];
        let name = &p.name;
        let buf = Arc::get_mut(&mut p.value.buf).ok_or_else(|| anyhow!("parameter {name} is still in use by a graph"))?;
        Ok((buf, p.grad.as_ref()))
    }

    /// Global L2 norm of all gradients; scales them down to `max_norm` when
    /// above it (torch.nn.utils.clip_grad_norm_). Returns the norm before.
    pub fn clip_grad_norm(&mut self, b: &B, max_norm: f32) -> Result<f64> {
        let mut total = 0.0;
        for p in &self.params {
            if let Some(g) = &p.grad {
                total += b.sum_squares(g)?;
            }
        }
        let norm = total.sqrt();
        let coef = max_norm as f64 / (norm + 1e-6);
        if coef < 1.0 {
            for p in &mut self.params {
                if let Some(g) = &mut p.grad {
                    b.scale_inplace(g, coef as f32)?;
                }
            }
        }
        Ok(norm)
    }
}
