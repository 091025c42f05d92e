//! Network modules with torchvision's parameter names: a small builder
//! (`Net`) over the tape, ResNet-50, the FPN with P6/P7 and the RetinaNet
//! heads and losses, and the cross-attention model (`attention`).

pub mod attention;
pub mod classifier;
pub mod resnet;
pub mod retinanet;

use crate::autograd::{Graph, Var};
use crate::tensor::Tensor;
use crate::backend::Backend;
use crate::params::ParamSet;
use crate::rng::Rng;
use anyhow::{Context, Result};
use std::collections::HashMap;

/// How batch norm runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum BnMode {
    /// Fixed statistics and affine (torchvision FrozenBatchNorm2d; also
    /// inference of a model trained with `train`).
    Frozen,
    /// Batch statistics, trainable affine, running statistics updated.
    Train,
}

/// Per-channel scale and shift of every batch norm, from its four tensors:
/// scale = w / sqrt(var + eps), shift = b - mean * scale.
pub struct FrozenBn<B: Backend> {
    map: HashMap<String, (Tensor<B>, Tensor<B>)>,
}

impl<B: Backend> FrozenBn<B> {
    pub fn from_params(b: &B, params: &ParamSet<B>, eps: f32) -> Result<Self> {
        let mut map = HashMap::new();
        for p in &params.params {
            let Some(prefix) = p.name.strip_suffix(".running_var") else { continue };
            let get = |s: &str| -> Result<Vec<f32>> { params.get(&format!("{prefix}.{s}"))?.value.to_host(b) };
            let (w, bias, mean, var) = (get("weight")?, get("bias")?, get("running_mean")?, get("running_var")?);
            let scale: Vec<f32> = w.iter().zip(&var).map(|(w, v)| w / (v + eps).sqrt()).collect();
            let shift: Vec<f32> = bias.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
            let c = scale.len();
            map.insert(prefix.to_string(), (Tensor::from_host(b, &scale, &[c])?, Tensor::from_host(b, &shift, &[c])?));
        }
        Ok(FrozenBn { map })
    }
}

/// Batch statistics of one training-mode batch norm, for the running averages.
pub struct BnBatchStats<B: Backend> {
    pub prefix: String,
    pub mean: Tensor<B>,
    pub var: Tensor<B>,
    /// elements per channel (n * h * w)
    pub count: usize,
}

/// A forward pass under construction: the tape, the parameters, and how
/// batch norm runs.
pub struct Net<'a, B: Backend> {
    pub g: &'a mut Graph<B>,
    pub params: &'a ParamSet<B>,
    /// `Some`: frozen batch norm; `None`: training mode.
    pub frozen: Option<&'a FrozenBn<B>>,
    pub bn_eps: f32,
    pub bn_stats: Vec<BnBatchStats<B>>,
}

impl<'a, B: Backend> Net<'a, B> {
    pub fn new(g: &'a mut Graph<B>, params: &'a ParamSet<B>, frozen: Option<&'a FrozenBn<B>>) -> Self {
        Net { g, params, frozen, bn_eps: 1e-5, bn_stats: Vec::new() }
    }

    pub fn p(&mut self, name: &str) -> Result<Var> {
        self.g.param_named(self.params, name)
    }

    /// Convolution `name` (weight, and bias when the model has one).
    pub fn conv(&mut self, name: &str, x: Var, stride: usize, padding: usize) -> Result<Var> {
        let w = self.p(&format!("{name}.weight"))?;
        let bias = match self.params.index(&format!("{name}.bias")) {
            Ok(i) => Some(self.g.param(self.params, i)),
            Err(_) => None,
        };
        self.g.conv2d(x, w, bias, stride, padding, 1, 1).with_context(|| format!("convolution {name}"))
    }

    /// Batch norm `name`, frozen or in training mode.
    pub fn bn(&mut self, name: &str, x: Var) -> Result<Var> {
        if let Some(f) = self.frozen {
            let (scale, shift) = f.map.get(name).with_context(|| format!("no batch norm named {name}"))?;
            return self.g.channel_affine(x, scale, shift);
        }
        let (w, b) = (self.p(&format!("{name}.weight"))?, self.p(&format!("{name}.bias"))?);
        let (y, mean, var) = self.g.batch_norm_train(x, w, b, self.bn_eps)?;
        let s = self.g.shape(x);
        let count = s[0] * s[2..].iter().product::<usize>();
        self.bn_stats.push(BnBatchStats { prefix: name.to_string(), mean, var, count });
        Ok(y)
    }

    pub fn relu(&mut self, x: Var) -> Result<Var> {
        self.g.relu(x)
    }
}

/// Running-statistics update after a training step (torch momentum 0.1,
/// unbiased variance): running = (1 - m) running + m batch.
pub fn update_running_stats<B: Backend>(b: &B, params: &mut ParamSet<B>, stats: Vec<BnBatchStats<B>>, momentum: f32) -> Result<()> {
    for s in stats {
        let unbias = s.count as f32 / (s.count.max(2) - 1) as f32;
        for (name, batch, k) in [("running_mean", &s.mean, 1.0), ("running_var", &s.var, unbias)] {
            let idx = params.index(&format!("{}.{name}", s.prefix))?;
            let (value, _) = params.value_mut(idx)?;
            b.scale_inplace(value, 1.0 - momentum)?;
            b.axpy(value, momentum * k, &batch.buf)?;
        }
    }
    Ok(())
}

/// Initializers (torch.nn.init).
pub fn kaiming_normal_fan_out(rng: &mut Rng, shape: &[usize]) -> Vec<f32> {
    let fan_out = shape[0] * shape[2..].iter().product::<usize>();
    let std = (2.0 / fan_out as f64).sqrt();
    (0..shape.iter().product()).map(|_| (rng.normal() * std) as f32).collect()
}

/// kaiming_uniform with a = 1: bound sqrt(3 / fan_in).
pub fn kaiming_uniform_a1(rng: &mut Rng, shape: &[usize]) -> Vec<f32> {
    let fan_in: usize = shape[1..].iter().product();
    let bound = (3.0 / fan_in as f64).sqrt();
    rng.uniforms(shape.iter().product(), -bound, bound)
}

pub fn normal(rng: &mut Rng, shape: &[usize], std: f64) -> Vec<f32> {
    (0..shape.iter().product()).map(|_| (rng.normal() * std) as f32).collect()
}

/// Adds a parameter initialized with `data`.
pub fn add<B: Backend>(b: &B, params: &mut ParamSet<B>, name: &str, shape: &[usize], data: Vec<f32>, trainable: bool) -> Result<()> {
    let i = params.add(name, Tensor::from_host(b, &data, shape)?)?;
    params.params[i].trainable = trainable;
    Ok(())
}
