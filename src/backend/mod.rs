//! One trait, two backends: the CPU reference (`cpu`) and CUDA (`cuda`).
//!
//! Every method is one op (forward or backward); method names match the CUDA
//! kernel names in `cuda/*.cu`. Buffers are flat f32 arrays on the device;
//! shapes live in the caller (`autograd`). Gradient convention (as llm.c):
//! backward methods return fresh buffers, and the tape accumulates them.

pub mod cpu;
pub mod cuda;
pub mod device;

use crate::shape::{AxisLayout, Broadcast, ReduceLayout};
use anyhow::Result;

/// Element-wise ops with one input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    Relu,
    LeakyRelu(f32),
    Sigmoid,
    Tanh,
    /// Multiply by a constant.
    Scale(f32),
}

impl Unary {
    /// (op code, parameter) as the CUDA kernels read them.
    pub fn code(self) -> (i32, f32) {
        match self {
            Unary::Relu => (0, 0.0),
            Unary::LeakyRelu(s) => (1, s),
            Unary::Sigmoid => (2, 0.0),
            Unary::Tanh => (3, 0.0),
            Unary::Scale(c) => (4, c),
        }
    }
}

/// Element-wise ops with two (broadcast) inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    Add,
    Mul,
}

impl Binary {
    pub fn code(self) -> i32 {
        match self {
            Binary::Add => 0,
            Binary::Mul => 1,
        }
    }
}

/// A batched matrix product `C = alpha * op(A) op(B) + beta * C`, row-major:
/// `op(A)` is `[m, k]` (`A` stored `[k, m]` when `trans_a`), `op(B)` is
/// `[k, n]` (stored `[n, k]` when `trans_b`), `C` is `[m, n]`; matrix `i` of
/// the batch starts at `i * stride_*` (stride 0 shares one matrix).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    pub batch: u32,
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub trans_a: u32,
    pub trans_b: u32,
    pub stride_a: u64,
    pub stride_b: u64,
    pub stride_c: u64,
    pub alpha: f32,
    pub beta: f32,
}

impl Gemm {
    /// Plain `C = op(A) op(B)` for one or `batch` contiguous matrices.
    pub fn new(batch: usize, m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> Self {
        Gemm {
            batch: batch as u32,
            m: m as u32,
            n: n as u32,
            k: k as u32,
            trans_a: trans_a as u32,
            trans_b: trans_b as u32,
            stride_a: (m * k) as u64,
            stride_b: (k * n) as u64,
            stride_c: (m * n) as u64,
            alpha: 1.0,
            beta: 0.0,
        }
    }
    pub fn flops(&self) -> f64 {
        2.0 * self.batch as f64 * self.m as f64 * self.n as f64 * self.k as f64
    }
    /// Buffer lengths A, B and C must have at least.
    pub fn min_lens(&self) -> (usize, usize, usize) {
        let last = (self.batch as usize).saturating_sub(1);
        (
            last * self.stride_a as usize + (self.m * self.k) as usize,
            last * self.stride_b as usize + (self.k * self.n) as usize,
            last * self.stride_c as usize + (self.m * self.n) as usize,
        )
    }
}

/// SGD with momentum and (coupled, L2) weight decay, as `torch.optim.SGD`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
}

/// Adam (`torch.optim.Adam`, L2 weight decay); `step` counts from 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub step: u32,
}

impl Default for Adam {
    fn default() -> Self {
        Adam { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, step: 1 }
    }
}

pub trait Backend: Clone + Send + Sync + 'static {
    type Buf: Send + Sync + 'static;

    /// "CPU (2 threads)" or the GPU's name.
    fn name(&self) -> String;
    fn len(&self, x: &Self::Buf) -> usize;
    fn zeros(&self, n: usize) -> Result<Self::Buf>;
    fn fill(&self, n: usize, value: f32) -> Result<Self::Buf>;
    fn upload(&self, host: &[f32]) -> Result<Self::Buf>;
    fn download(&self, x: &Self::Buf) -> Result<Vec<f32>>;
    fn copy(&self, x: &Self::Buf) -> Result<Self::Buf>;
    /// Full precision where the backend computes in f64 (gradient checks).
    fn upload_f64(&self, host: &[f64]) -> Result<Self::Buf> {
        self.upload(&host.iter().map(|&v| v as f32).collect::<Vec<_>>())
    }
    fn download_f64(&self, x: &Self::Buf) -> Result<Vec<f64>> {
        Ok(self.download(x)?.into_iter().map(f64::from).collect())
    }
    /// Wait for queued work (a no-op on the CPU).
    fn synchronize(&self) -> Result<()>;

    // element-wise ----------------------------------------------------------
    fn unary(&self, op: Unary, x: &Self::Buf) -> Result<Self::Buf>;
    /// `gx = gy * f'(x)`, from `x` (ReLU family) or `y = f(x)` (sigmoid, tanh).
    fn unary_backward(&self, op: Unary, x: &Self::Buf, y: &Self::Buf, gy: &Self::Buf) -> Result<Self::Buf>;
    fn binary(&self, op: Binary, a: &Self::Buf, b: &Self::Buf, l: &Broadcast) -> Result<Self::Buf>;
    /// Sum of `g` (the broadcast output's shape) over the broadcast dims.
    fn reduce_broadcast(&self, g: &Self::Buf, l: &ReduceLayout) -> Result<Self::Buf>;
    /// `acc += alpha * x` (gradient accumulation).
    fn axpy(&self, acc: &mut Self::Buf, alpha: f32, x: &Self::Buf) -> Result<()>;

    // reductions and normalizations along one axis ---------------------------
    /// `[outer, n, inner] -> [outer, inner]`, sum or mean.
    fn sum_axis(&self, x: &Self::Buf, l: AxisLayout, mean: bool) -> Result<Self::Buf>;
    fn sum_axis_backward(&self, gy: &Self::Buf, l: AxisLayout, mean: bool) -> Result<Self::Buf>;
    /// `softmax(scale * x)` along the axis; where `mask` is 0 the input is
    /// -inf (probability 0; a fully masked line is all 0).
    fn softmax(&self, x: &Self::Buf, mask: Option<&Self::Buf>, l: AxisLayout, scale: f32) -> Result<Self::Buf>;
    fn softmax_backward(&self, y: &Self::Buf, gy: &Self::Buf, l: AxisLayout, scale: f32) -> Result<Self::Buf>;
    /// Over the last axis of `rows x d`: returns (y, mean, rstd).
    fn layer_norm(&self, x: &Self::Buf, gamma: &Self::Buf, beta: &Self::Buf, rows: usize, d: usize, eps: f32)
        -> Result<(Self::Buf, Self::Buf, Self::Buf)>;
    /// Returns (gx, ggamma, gbeta).
    #[allow(clippy::too_many_arguments)]
    fn layer_norm_backward(&self, x: &Self::Buf, gamma: &Self::Buf, mean: &Self::Buf, rstd: &Self::Buf, gy: &Self::Buf, rows: usize, d: usize)
        -> Result<(Self::Buf, Self::Buf, Self::Buf)>;
    /// `y = x / (||x|| + eps)` along the axis; returns (y, ||x|| of each line).
    fn l2_normalize(&self, x: &Self::Buf, l: AxisLayout, eps: f32) -> Result<(Self::Buf, Self::Buf)>;
    fn l2_normalize_backward(&self, x: &Self::Buf, norm: &Self::Buf, gy: &Self::Buf, l: AxisLayout, eps: f32) -> Result<Self::Buf>;
    /// `a.b / (max(||a||, eps) max(||b||, eps))` along the axis -> `[outer, inner]`.
    fn cosine(&self, a: &Self::Buf, b: &Self::Buf, l: AxisLayout, eps: f32) -> Result<Self::Buf>;
    fn cosine_backward(&self, a: &Self::Buf, b: &Self::Buf, gy: &Self::Buf, l: AxisLayout, eps: f32) -> Result<(Self::Buf, Self::Buf)>;

    // losses (scalar outputs are 1-element buffers) --------------------------
    /// Mean over all elements of BCE with logits.
    fn bce_with_logits(&self, x: &Self::Buf, target: &Self::Buf) -> Result<Self::Buf>;
    fn bce_with_logits_backward(&self, x: &Self::Buf, target: &Self::Buf, gy: &Self::Buf) -> Result<Self::Buf>;
    /// `x` is `rows x 4` of (S+, S-, S'+, S'-):
    /// `sum_rows relu(margin - S+ + S-) + relu(margin - S'+ + S'-)`.
    fn triplet_hinge(&self, x: &Self::Buf, margin: f32) -> Result<Self::Buf>;
    fn triplet_hinge_backward(&self, x: &Self::Buf, margin: f32, gy: &Self::Buf) -> Result<Self::Buf>;

    // matrix product -----------------------------------------------------------
    fn gemm(&self, g: &Gemm, a: &Self::Buf, b: &Self::Buf, c: &mut Self::Buf) -> Result<()>;

    // optimizers ---------------------------------------------------------------
    fn sgd_step(&self, h: &Sgd, param: &mut Self::Buf, grad: &Self::Buf, momentum: &mut Self::Buf) -> Result<()>;
    fn adam_step(&self, h: &Adam, param: &mut Self::Buf, grad: &Self::Buf, m: &mut Self::Buf, v: &mut Self::Buf) -> Result<()>;
    /// Sum of squares (for gradient-norm clipping), accumulated in f64.
    fn sum_squares(&self, x: &Self::Buf) -> Result<f64>;
    fn scale_inplace(&self, x: &mut Self::Buf, c: f32) -> Result<()>;
}
