//! The op traits (`ops`, one per family) and two backends: the CPU
//! reference (`cpu`) and CUDA (`cuda`), one file per family in each, named
//! as `cuda/*.cu`. This module holds the ops' parameter types.

pub mod cpu;
pub mod cuda;
pub mod device;
pub mod ops;

pub use ops::*;


/// Every op trait, for code that calls ops on a concrete backend.
pub mod prelude {
    pub use super::ops::{
        AttentionOps, Backend, BoxOps, ConvOps, ElementwiseOps, GemmOps, LayoutOps, LossOps, NormOps, OptimOps, PoolOps,
        ReduceOps, SoftmaxOps, Storage, Word2vecOps,
    };
}

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

/// A 2-D convolution: input `[n, c, h, w]`, weight `[k, c/groups, r, s]`,
/// output `[n, k, oh, ow]` (NCHW, as torchvision). Mirrored in cuda/common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    pub n: i32,
    pub c: i32,
    pub h: i32,
    pub w: i32,
    pub k: i32,
    pub r: i32,
    pub s: i32,
    pub oh: i32,
    pub ow: i32,
    pub stride_h: i32,
    pub stride_w: i32,
    pub pad_h: i32,
    pub pad_w: i32,
    pub dil_h: i32,
    pub dil_w: i32,
    pub groups: i32,
}

impl Conv2d {
    /// From the input and weight shapes; an error says what does not fit.
    pub fn new(x: &[usize], w: &[usize], stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2], groups: usize) -> anyhow::Result<Self> {
        use anyhow::ensure;
        ensure!(x.len() == 4 && w.len() == 4, "conv2d: input {x:?} and weight {w:?} must be 4-D");
        ensure!(groups >= 1 && x[1] % groups == 0 && w[0] % groups == 0, "conv2d: {groups} groups do not divide {} input / {} output channels", x[1], w[0]);
        ensure!(w[1] * groups == x[1], "conv2d: weight {w:?} expects {} input channels, input {x:?} has {}", w[1] * groups, x[1]);
        ensure!(stride.iter().chain(&dilation).all(|&v| v >= 1), "conv2d: stride and dilation must be at least 1");
        let out = |i: usize, k: usize, d: usize| (i + 2 * padding[d]).checked_sub(dilation[d] * (k - 1) + 1).map(|v| v / stride[d] + 1);
        let (oh, ow) = match (out(x[2], w[2], 0), out(x[3], w[3], 1)) {
            (Some(a), Some(b)) if a > 0 && b > 0 => (a, b),
            _ => anyhow::bail!("conv2d: input {x:?} is smaller than the kernel {w:?} with padding {padding:?}"),
        };
        Ok(Conv2d {
            n: x[0] as i32, c: x[1] as i32, h: x[2] as i32, w: x[3] as i32, k: w[0] as i32, r: w[2] as i32, s: w[3] as i32,
            oh: oh as i32, ow: ow as i32, stride_h: stride[0] as i32, stride_w: stride[1] as i32, pad_h: padding[0] as i32,
            pad_w: padding[1] as i32, dil_h: dilation[0] as i32, dil_w: dilation[1] as i32, groups: groups as i32,
        })
    }
    pub fn x_len(&self) -> usize {
        (self.n * self.c * self.h * self.w) as usize
    }
    pub fn w_len(&self) -> usize {
        (self.k * (self.c / self.groups) * self.r * self.s) as usize
    }
    pub fn y_len(&self) -> usize {
        (self.n * self.k * self.oh * self.ow) as usize
    }
    pub fn out_shape(&self) -> Vec<usize> {
        vec![self.n as usize, self.k as usize, self.oh as usize, self.ow as usize]
    }
    /// Multiply-adds of the forward pass, times two.
    pub fn flops(&self) -> f64 {
        2.0 * self.y_len() as f64 * ((self.c / self.groups) * self.r * self.s) as f64
    }
}

/// Max-pooling window `k` (stride, padding with -inf), or nearest upsampling
/// to `[oh, ow]` when `k == 0`, over `[n, c, h, w]`. Mirrored in cuda/common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    pub n: i32,
    pub c: i32,
    pub h: i32,
    pub w: i32,
    pub oh: i32,
    pub ow: i32,
    pub k: i32,
    pub stride: i32,
    pub pad: i32,
}

impl Pool2d {
    pub fn max(x: &[usize], k: usize, stride: usize, pad: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(x.len() == 4, "max_pool2d: input {x:?} must be 4-D");
        anyhow::ensure!(k >= 1 && stride >= 1 && pad * 2 <= k, "max_pool2d: window {k}, stride {stride}, padding {pad} are not valid");
        anyhow::ensure!(x[2] + 2 * pad >= k && x[3] + 2 * pad >= k, "max_pool2d: input {x:?} is smaller than the window {k}");
        let o = |i: usize| ((i + 2 * pad - k) / stride + 1) as i32;
        Ok(Pool2d { n: x[0] as i32, c: x[1] as i32, h: x[2] as i32, w: x[3] as i32, oh: o(x[2]), ow: o(x[3]), k: k as i32, stride: stride as i32, pad: pad as i32 })
    }
    pub fn upsample(x: &[usize], size: [usize; 2]) -> anyhow::Result<Self> {
        anyhow::ensure!(x.len() == 4 && size[0] > 0 && size[1] > 0, "upsample_nearest: input {x:?} must be 4-D and size {size:?} positive");
        Ok(Pool2d { n: x[0] as i32, c: x[1] as i32, h: x[2] as i32, w: x[3] as i32, oh: size[0] as i32, ow: size[1] as i32, k: 0, stride: 1, pad: 0 })
    }
    pub fn x_len(&self) -> usize {
        (self.n * self.c * self.h * self.w) as usize
    }
    pub fn y_len(&self) -> usize {
        (self.n * self.c * self.oh * self.ow) as usize
    }
    pub fn out_shape(&self) -> Vec<usize> {
        vec![self.n as usize, self.c as usize, self.oh as usize, self.ow as usize]
    }
}

/// Axis permutation: output dims and, for each, the input stride it walks.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Permute {
    pub rank: u32,
    pub out_dims: [u32; crate::shape::MAX_RANK],
    pub in_strides: [u32; crate::shape::MAX_RANK],
}

impl Permute {
    /// `out.shape[i] = shape[perm[i]]`.
    pub fn new(shape: &[usize], perm: &[usize]) -> anyhow::Result<(Self, Vec<usize>)> {
        let rank = shape.len();
        anyhow::ensure!(rank <= crate::shape::MAX_RANK && perm.len() == rank, "permute: {perm:?} for shape {shape:?}");
        let mut seen = [false; crate::shape::MAX_RANK];
        for &p in perm {
            anyhow::ensure!(p < rank && !seen[p], "permute: {perm:?} is not a permutation of {rank} axes");
            seen[p] = true;
        }
        let mut strides = vec![1usize; rank];
        for i in (0..rank.saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * shape[i + 1];
        }
        let mut l = Permute { rank: rank as u32, ..Default::default() };
        let mut out = Vec::with_capacity(rank);
        for (i, &p) in perm.iter().enumerate() {
            l.out_dims[i] = shape[p] as u32;
            l.in_strides[i] = strides[p] as u32;
            out.push(shape[p]);
        }
        Ok((l, out))
    }
    /// Input offset of output element `o`.
    pub fn source(&self, mut o: usize) -> usize {
        let mut src = 0;
        for d in (0..self.rank as usize).rev() {
            src += (o % self.out_dims[d] as usize) * self.in_strides[d] as usize;
            o /= self.out_dims[d] as usize;
        }
        src
    }
}

/// The fused cross-attention (literal variant) of B samples with N ROIs,
/// M attribute slots and d features. Mirrored in cuda/common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct XAttn {
    pub b: i32,
    pub n: i32,
    pub m: i32,
    pub d: i32,
    pub lambda_a: f32,
    pub lambda_b: f32,
    pub slope: f32,
}

/// The two box-regression losses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BoxLoss {
    L1,
    SmoothL1 { beta: f32 },
}

impl BoxLoss {
    pub fn beta(self) -> f32 {
        match self {
            BoxLoss::L1 => 0.0,
            BoxLoss::SmoothL1 { beta } => beta,
        }
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
