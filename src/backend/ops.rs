//! The op traits, one per family, each mirroring one `cuda/*.cu`.
//!
//! Family traits rather than one trait of 60 methods: an op's signature, its
//! CPU reference (`cpu/<family>.rs`) and its launcher (`cuda/<family>.rs`) are
//! found by the same name, and adding an op touches its family only. Generic
//! code names one bound, `B: Backend` (every family, implemented for any type
//! that has them all); code on a concrete backend imports `backend::prelude`.
//! Method names match the CUDA kernel names. Gradient convention (as llm.c):
//! backward methods return fresh buffers, and the tape accumulates them.

use super::{Adam, Binary, BoxLoss, Conv2d, Gemm, Permute, Pool2d, Sgd, Unary, XAttn};
use crate::geometry::{boxes::BoxCoder, matcher::Matcher};
use crate::shape::{AxisLayout, Broadcast, ReduceLayout};
use anyhow::Result;

/// Buffers: allocation and host transfers. Buffers are flat f32 arrays on
/// the device; shapes live in the caller (`autograd`).
pub trait Storage: Clone + Send + Sync + 'static {
    type Buf: Send + Sync + 'static;
    /// Integer index buffers (word ids, noise tables).
    type Ids: Send + Sync + 'static;

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
    fn upload_ids(&self, host: &[u32]) -> Result<Self::Ids>;
    /// Wait for queued work (a no-op on the CPU).
    fn synchronize(&self) -> Result<()>;
}

/// Element-wise ops and the sum over broadcast dims (cuda/elementwise.cu).
pub trait ElementwiseOps: Storage {
    fn unary(&self, op: Unary, x: &Self::Buf) -> Result<Self::Buf>;
    /// `gx = gy * f'(x)`, from `x` (ReLU family) or `y = f(x)` (sigmoid, tanh).
    fn unary_backward(&self, op: Unary, x: &Self::Buf, y: &Self::Buf, gy: &Self::Buf) -> Result<Self::Buf>;
    fn binary(&self, op: Binary, a: &Self::Buf, b: &Self::Buf, l: &Broadcast) -> Result<Self::Buf>;
    /// Sum of `g` (the broadcast output's shape) over the broadcast dims.
    fn reduce_broadcast(&self, g: &Self::Buf, l: &ReduceLayout) -> Result<Self::Buf>;
    /// `acc += alpha * x` (gradient accumulation).
    fn axpy(&self, acc: &mut Self::Buf, alpha: f32, x: &Self::Buf) -> Result<()>;
}

/// Sums along one axis and of squares (cuda/reduce.cu).
pub trait ReduceOps: Storage {
    /// `[outer, n, inner] -> [outer, inner]`, sum or mean.
    fn sum_axis(&self, x: &Self::Buf, l: AxisLayout, mean: bool) -> Result<Self::Buf>;
    fn sum_axis_backward(&self, gy: &Self::Buf, l: AxisLayout, mean: bool) -> Result<Self::Buf>;
    /// Sum of squares (for gradient-norm clipping), accumulated in f64.
    fn sum_squares(&self, x: &Self::Buf) -> Result<f64>;
}

/// Softmax along one axis (cuda/softmax.cu).
pub trait SoftmaxOps: Storage {
    /// `softmax(scale * x)` along the axis; where `mask` is 0 the input is
    /// -inf (probability 0; a fully masked line is all 0).
    fn softmax(&self, x: &Self::Buf, mask: Option<&Self::Buf>, l: AxisLayout, scale: f32) -> Result<Self::Buf>;
    fn softmax_backward(&self, y: &Self::Buf, gy: &Self::Buf, l: AxisLayout, scale: f32) -> Result<Self::Buf>;
}

/// Normalizations: layer norm, L2, cosine, batch norm (cuda/norm.cu).
pub trait NormOps: Storage {
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
    /// `y = x * scale[c] + shift[c]` over `[n, c, hw]` (frozen batch norm; with
    /// `shift = None`, its input gradient).
    fn channel_affine(&self, x: &Self::Buf, scale: &Self::Buf, shift: Option<&Self::Buf>, c: usize, hw: usize) -> Result<Self::Buf>;
    /// Batch norm in training mode over `[n, c, hw]`: (y, batch mean, biased batch variance).
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_train(&self, x: &Self::Buf, gamma: &Self::Buf, beta: &Self::Buf, n: usize, c: usize, hw: usize, eps: f32)
        -> Result<(Self::Buf, Self::Buf, Self::Buf)>;
    /// (gx, ggamma, gbeta).
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward(&self, x: &Self::Buf, gamma: &Self::Buf, mean: &Self::Buf, var: &Self::Buf, gy: &Self::Buf,
                           n: usize, c: usize, hw: usize, eps: f32) -> Result<(Self::Buf, Self::Buf, Self::Buf)>;
}

/// The matrix product (cuda/gemm.cu).
pub trait GemmOps: Storage {
    fn gemm(&self, g: &Gemm, a: &Self::Buf, b: &Self::Buf, c: &mut Self::Buf) -> Result<()>;
}

/// 2-D convolution (cuda/conv.cu).
pub trait ConvOps: Storage {
    /// `y = conv(x, w) + bias` (bias `[k]`, optional).
    fn conv2d(&self, p: &Conv2d, x: &Self::Buf, w: &Self::Buf, bias: Option<&Self::Buf>) -> Result<Self::Buf>;
    /// Gradient of the input.
    fn conv2d_backward_data(&self, p: &Conv2d, gy: &Self::Buf, w: &Self::Buf) -> Result<Self::Buf>;
    /// Gradient of the weight.
    fn conv2d_backward_weight(&self, p: &Conv2d, x: &Self::Buf, gy: &Self::Buf) -> Result<Self::Buf>;
}

/// Max pooling and nearest upsampling (cuda/pool.cu).
pub trait PoolOps: Storage {
    /// (y, arg-max index within each plane, as f32).
    fn max_pool2d(&self, p: &Pool2d, x: &Self::Buf) -> Result<(Self::Buf, Self::Buf)>;
    fn max_pool2d_backward(&self, p: &Pool2d, gy: &Self::Buf, argmax: &Self::Buf) -> Result<Self::Buf>;
    fn upsample_nearest(&self, p: &Pool2d, x: &Self::Buf) -> Result<Self::Buf>;
    fn upsample_nearest_backward(&self, p: &Pool2d, gy: &Self::Buf) -> Result<Self::Buf>;
}

/// Axis permutations, slices and inserts (cuda/layout.cu).
pub trait LayoutOps: Storage {
    fn permute(&self, x: &Self::Buf, l: &Permute) -> Result<Self::Buf>;
    /// Rows `[start, start + len)` of axis view `l` (`l.n` = full length): `[outer, len, inner]`.
    fn axis_slice(&self, x: &Self::Buf, l: AxisLayout, start: usize, len: usize) -> Result<Self::Buf>;
    /// Writes `src` (`[outer, len, inner]`) into rows `[start, start + len)` of `dst`.
    fn axis_insert(&self, dst: &mut Self::Buf, l: AxisLayout, start: usize, src: &Self::Buf) -> Result<()>;
    /// `[lines.len(), l.n]`: row `i` is line `lines[i]` (= `o * l.inner + k`)
    /// of axis view `l` (the ROI features of chosen locations of a feature map).
    fn gather_lines(&self, x: &Self::Buf, l: AxisLayout, lines: &[u32]) -> Result<Self::Buf>;
}

/// Losses; scalar outputs are 1-element buffers, `w = None` weighs every element 1 (cuda/losses.cu).
pub trait LossOps: Storage {
    /// Mean over all elements of BCE with logits.
    fn bce_with_logits(&self, x: &Self::Buf, target: &Self::Buf) -> Result<Self::Buf>;
    fn bce_with_logits_backward(&self, x: &Self::Buf, target: &Self::Buf, gy: &Self::Buf) -> Result<Self::Buf>;
    /// `x` is `rows x 4` of (S+, S-, S'+, S'-):
    /// `sum_rows relu(margin - S+ + S-) + relu(margin - S'+ + S'-)`.
    fn triplet_hinge(&self, x: &Self::Buf, margin: f32) -> Result<Self::Buf>;
    fn triplet_hinge_backward(&self, x: &Self::Buf, margin: f32, gy: &Self::Buf) -> Result<Self::Buf>;
    #[allow(clippy::too_many_arguments)]
    fn focal_loss(&self, x: &Self::Buf, t: &Self::Buf, w: Option<&Self::Buf>, alpha: f32, gamma: f32) -> Result<Self::Buf>;
    #[allow(clippy::too_many_arguments)]
    fn focal_loss_backward(&self, x: &Self::Buf, t: &Self::Buf, w: Option<&Self::Buf>, alpha: f32, gamma: f32, gy: &Self::Buf) -> Result<Self::Buf>;
    fn box_loss(&self, kind: BoxLoss, x: &Self::Buf, t: &Self::Buf, w: Option<&Self::Buf>) -> Result<Self::Buf>;
    fn box_loss_backward(&self, kind: BoxLoss, x: &Self::Buf, t: &Self::Buf, w: Option<&Self::Buf>, gy: &Self::Buf) -> Result<Self::Buf>;
}

/// Optimizer steps (cuda/optim.cu).
pub trait OptimOps: Storage {
    fn sgd_step(&self, h: &Sgd, param: &mut Self::Buf, grad: &Self::Buf, momentum: &mut Self::Buf) -> Result<()>;
    fn adam_step(&self, h: &Adam, param: &mut Self::Buf, grad: &Self::Buf, m: &mut Self::Buf, v: &mut Self::Buf) -> Result<()>;
    fn scale_inplace(&self, x: &mut Self::Buf, c: f32) -> Result<()>;
}

/// The fused SCAN cross-attention of the literal variant (cuda/attention.cu).
pub trait AttentionOps: Storage {
    /// `[2B]`: S_roi then S_text of each sample, from phi `[B, N, d]`, alpha
    /// `[B, N]`, attribute embeddings `[B, M, d]` and their 0/1 mask `[B, M]`.
    fn cross_attention(&self, p: &XAttn, phi: &Self::Buf, alpha: &Self::Buf, m: &Self::Buf, mask: &Self::Buf) -> Result<Self::Buf>;
    /// (g_phi, g_alpha) for the upstream gradient `g` `[2B]`.
    fn cross_attention_backward(&self, p: &XAttn, phi: &Self::Buf, alpha: &Self::Buf, m: &Self::Buf, mask: &Self::Buf, g: &Self::Buf)
        -> Result<(Self::Buf, Self::Buf)>;
}

/// Box geometry, forward only; boxes are `[n, 4]` rows of x1, y1, x2, y2 (cuda/boxes.cu).
pub trait BoxOps: Storage {
    /// `[a, b]` IoUs of every box of `a` with every box of `b`.
    fn box_iou(&self, a: &Self::Buf, b: &Self::Buf) -> Result<Self::Buf>;
    /// Regression targets of `gt[i]` relative to `anchors[i]`.
    fn box_encode(&self, coder: &BoxCoder, gt: &Self::Buf, anchors: &Self::Buf) -> Result<Self::Buf>;
    /// The boxes regressions `d[i]` make of `anchors[i]`, clipped to an image of `[h, w]` when given.
    fn box_decode(&self, coder: &BoxCoder, d: &Self::Buf, anchors: &Self::Buf, clip: Option<[usize; 2]>) -> Result<Self::Buf>;
    /// RetinaNet's anchors of an image over pyramid `grids` (`geometry::anchors::anchors_for`).
    fn anchors(&self, image_size: [usize; 2], grids: &[[usize; 2]], scale: f32) -> Result<Self::Buf>;
    /// Kept indices of greedy NMS, by descending score (`geometry::nms::nms`).
    fn nms(&self, boxes: &Self::Buf, scores: &Self::Buf, threshold: f32) -> Result<Vec<usize>>;
    /// For each anchor its gt box, BACKGROUND or IGNORED (`geometry::matcher::Matcher::assign`).
    fn match_anchors(&self, matcher: &Matcher, gt: &Self::Buf, anchors: &Self::Buf) -> Result<Vec<i64>>;
}

/// word2vec skip-gram with negative sampling (cuda/word2vec.cu).
pub trait Word2vecOps: Storage {
    /// SGNS updates of `syn0` / `syn1` (`[vocab, dim]`) for `pairs` (flattened
    /// (context, centre) word ids), `negative` negatives per pair drawn from
    /// `table` by a hash of `seed`, the pair and the draw; returns the summed
    /// loss of the pairs. The pairs of one call are one minibatch: on CUDA they
    /// run in parallel (updates added atomically), on the CPU one after another.
    #[allow(clippy::too_many_arguments)]
    fn word2vec_sgns(&self, syn0: &mut Self::Buf, syn1: &mut Self::Buf, pairs: &Self::Ids, table: &Self::Ids, dim: usize, negative: usize,
                     alpha: f32, seed: u64) -> Result<f64>;
}

/// Every op family: what the autograd tape, the models and the commands need.
pub trait Backend: Storage + ElementwiseOps + ReduceOps + SoftmaxOps + NormOps + GemmOps + ConvOps + PoolOps + LayoutOps + LossOps + OptimOps + AttentionOps + BoxOps + Word2vecOps {}

impl<B: Storage + ElementwiseOps + ReduceOps + SoftmaxOps + NormOps + GemmOps + ConvOps + PoolOps + LayoutOps + LossOps + OptimOps + AttentionOps + BoxOps + Word2vecOps> Backend for B {}
