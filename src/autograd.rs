//! Reverse-mode autograd: a tape of ops in execution order (already a
//! topological order), one `match` with every backward rule, gradient
//! accumulation, and a no-grad mode for inference.
//!
//! Shapes in comments: `[rows, d]` etc. Gradients of a node's inputs are
//! accumulated (`+=`) into the tape's gradient slots; parameter gradients
//! are accumulated into the `ParamSet` after the pass.

use crate::backend::{Backend, Binary, BoxLoss, Conv2d, Gemm, Permute, Pool2d, Unary, XAttn};
use crate::params::ParamSet;
pub use crate::tensor::Tensor;
use crate::shape::{numel, reduced_shape, AxisLayout, Broadcast};
use anyhow::{bail, ensure, Context, Result};

/// A node of the tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var(pub usize);

enum Op<B: Backend> {
    Leaf,
    Unary(Var, Unary),
    Binary(Var, Var, Binary, Broadcast),
    /// `g` describes the forward product; `shared_b`: one B for the whole batch.
    Matmul { a: Var, b: Var, g: Gemm, shared_b: bool },
    Reshape(Var),
    Sum { x: Var, l: AxisLayout, mean: bool },
    Softmax { x: Var, l: AxisLayout, scale: f32 },
    LayerNorm { x: Var, gamma: Var, beta: Var, rows: usize, d: usize, mean: B::Buf, rstd: B::Buf },
    L2Normalize { x: Var, l: AxisLayout, eps: f32, norm: B::Buf },
    Cosine { a: Var, b: Var, l: AxisLayout, eps: f32 },
    BceWithLogits { x: Var, target: Var },
    Conv2d { x: Var, w: Var, bias: Option<Var>, p: Conv2d },
    /// Frozen batch norm: constant per-channel scale and shift.
    ChannelAffine { x: Var, scale: Tensor<B>, c: usize, hw: usize },
    BatchNorm { x: Var, gamma: Var, beta: Var, mean: B::Buf, var: B::Buf, n: usize, c: usize, hw: usize, eps: f32 },
    MaxPool { x: Var, p: Pool2d, argmax: B::Buf },
    Upsample { x: Var, p: Pool2d },
    Permute { x: Var, perm: Vec<usize> },
    Concat { xs: Vec<Var>, l: AxisLayout },
    FocalLoss { x: Var, target: Var, weight: Option<Var>, alpha: f32, gamma: f32 },
    BoxLoss { x: Var, target: Var, weight: Option<Var>, kind: BoxLoss },
    Slice { x: Var, l: AxisLayout, start: usize },
    /// The fused cross-attention; `m` and `mask` get no gradient.
    CrossAttention { phi: Var, alpha: Var, m: Var, mask: Tensor<B>, p: XAttn },
    TripletHinge { x: Var, margin: f32 },
}

impl<B: Backend> Op<B> {
    fn name(&self) -> &'static str {
        match self {
            Op::Leaf => "leaf",
            Op::Unary(..) => "unary",
            Op::Binary(..) => "binary",
            Op::Matmul { .. } => "matmul",
            Op::Reshape(_) => "reshape",
            Op::Sum { .. } => "sum",
            Op::Softmax { .. } => "softmax",
            Op::LayerNorm { .. } => "layer_norm",
            Op::L2Normalize { .. } => "l2_normalize",
            Op::Cosine { .. } => "cosine",
            Op::BceWithLogits { .. } => "bce_with_logits",
            Op::TripletHinge { .. } => "triplet_hinge",
            Op::Conv2d { .. } => "conv2d",
            Op::ChannelAffine { .. } => "channel_affine",
            Op::BatchNorm { .. } => "batch_norm",
            Op::MaxPool { .. } => "max_pool",
            Op::Upsample { .. } => "upsample",
            Op::Permute { .. } => "permute",
            Op::Concat { .. } => "concat",
            Op::FocalLoss { .. } => "focal_loss",
            Op::BoxLoss { .. } => "box_loss",
            Op::Slice { .. } => "slice",
            Op::CrossAttention { .. } => "cross_attention",
        }
    }

    /// The profile's row: the op's name, and a convolution's shape (they differ most in cost).
    fn profile_key(&self) -> String {
        match self {
            Op::Conv2d { p, .. } => format!("conv2d {}-{} {}x{} s{} @{}x{} b{}", p.c, p.k, p.r, p.s, p.stride_h, p.h, p.w, p.n),
            op => op.name().to_string(),
        }
    }
}

/// Per-op timing (`ENGINE_PROFILE=1`): every op synchronizes the device and
/// adds its wall time here, forward and backward apart. For finding what is
/// slow, not for measuring (the synchronisation itself costs).
pub mod profile {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    static TABLE: Mutex<BTreeMap<String, (f64, usize)>> = Mutex::new(BTreeMap::new());

    pub fn enabled() -> bool {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ON.get_or_init(|| std::env::var_os("ENGINE_PROFILE").is_some())
    }

    pub fn add(key: String, seconds: f64) {
        let mut t = TABLE.lock().unwrap();
        let e = t.entry(key).or_default();
        e.0 += seconds;
        e.1 += 1;
    }

    /// The table so far, slowest first: (op, total ms, calls).
    pub fn report() -> Vec<(String, f64, usize)> {
        let t = TABLE.lock().unwrap();
        let mut v: Vec<(String, f64, usize)> = t.iter().map(|(k, (s, n))| (k.clone(), s * 1e3, *n)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }

    /// Prints the table to stderr when profiling is on.
    pub fn print() {
        if enabled() {
            eprintln!("engine: per-op time (ENGINE_PROFILE), slowest first:");
            for (op, ms, calls) in report().iter().take(std::env::var("ENGINE_PROFILE_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(40)) {
                eprintln!("  {op:<44} {ms:10.1} ms {calls:8} calls");
            }
        }
    }
}

struct Node<B: Backend> {
    value: Tensor<B>,
    op: Op<B>,
    requires_grad: bool,
    /// Index in the ParamSet when this leaf is a parameter.
    param: Option<usize>,
}

pub struct Graph<B: Backend> {
    pub b: B,
    nodes: Vec<Node<B>>,
    record: bool,
    /// When the last op finished (profiling only).
    last: Option<std::time::Instant>,
}

/// Gradients of a backward pass, one slot per node.
pub struct Grads<B: Backend> {
    slots: Vec<Option<B::Buf>>,
    shapes: Vec<Vec<usize>>,
    params: Vec<Option<usize>>,
}

impl<B: Backend> Grads<B> {
    /// The gradient of `v`, if anything flowed to it.
    pub fn get(&self, b: &B, v: Var) -> Result<Option<Tensor<B>>> {
        match &self.slots[v.0] {
            Some(g) => Ok(Some(Tensor::new(b.copy(g)?, &self.shapes[v.0]))),
            None => Ok(None),
        }
    }

    pub fn take(&mut self, v: Var) -> Option<Tensor<B>> {
        let shape = self.shapes[v.0].clone();
        self.slots[v.0].take().map(|g| Tensor::new(g, &shape))
    }

    /// Adds the gradients of parameter leaves into their `ParamSet` slots.
    pub fn accumulate_into(mut self, b: &B, params: &mut ParamSet<B>) -> Result<()> {
        for i in 0..self.slots.len() {
            if let (Some(p), Some(g)) = (self.params[i], self.slots[i].take()) {
                params.accumulate_grad(b, p, g)?;
            }
        }
        Ok(())
    }
}

impl<B: Backend> Graph<B> {
    /// A graph that records ops for a backward pass.
    pub fn new(b: B) -> Self {
        Graph { b, nodes: Vec::new(), record: true, last: None }
    }

    /// Inference: nothing is recorded, no gradient can be asked for.
    pub fn no_grad(b: B) -> Self {
        Graph { b, nodes: Vec::new(), record: false, last: None }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn value(&self, v: Var) -> &Tensor<B> {
        &self.nodes[v.0].value
    }
    pub fn shape(&self, v: Var) -> &[usize] {
        &self.nodes[v.0].value.shape
    }
    pub fn to_host(&self, v: Var) -> Result<Vec<f32>> {
        self.value(v).to_host(&self.b)
    }

    fn push(&mut self, value: Tensor<B>, op: Op<B>, requires_grad: bool) -> Var {
        if profile::enabled() {
            let _ = self.b.synchronize();
            if let Some(t) = self.last.take() {
                profile::add(format!("forward {}", op.profile_key()), t.elapsed().as_secs_f64());
            }
            self.last = Some(std::time::Instant::now());
        }
        let (op, requires_grad) = if self.record { (op, requires_grad) } else { (Op::Leaf, false) };
        self.nodes.push(Node { value, op, requires_grad, param: None });
        Var(self.nodes.len() - 1)
    }

    fn rg(&self, vars: &[Var]) -> bool {
        vars.iter().any(|v| self.nodes[v.0].requires_grad)
    }

    /// A constant input (no gradient).
    pub fn input(&mut self, t: Tensor<B>) -> Var {
        self.push(t, Op::Leaf, false)
    }

    /// An input whose gradient is wanted (gradient checks, input gradients).
    pub fn input_grad(&mut self, t: Tensor<B>) -> Var {
        self.push(t, Op::Leaf, true)
    }

    /// Parameter `idx` of `params` as a leaf; its gradient goes back to `params`.
    pub fn param(&mut self, params: &ParamSet<B>, idx: usize) -> Var {
        let p = &params.params[idx];
        let v = self.push(p.value.clone(), Op::Leaf, p.trainable);
        self.nodes[v.0].param = Some(idx);
        v
    }

    /// Parameter by name (an error names it when it is missing).
    pub fn param_named(&mut self, params: &ParamSet<B>, name: &str) -> Result<Var> {
        Ok(self.param(params, params.index(name)?))
    }

    // element-wise -------------------------------------------------------------

    pub fn unary(&mut self, x: Var, op: Unary) -> Result<Var> {
        let y = self.b.unary(op, &self.value(x).buf)?;
        let t = Tensor::new(y, self.shape(x));
        let rg = self.rg(&[x]);
        Ok(self.push(t, Op::Unary(x, op), rg))
    }
    pub fn relu(&mut self, x: Var) -> Result<Var> {
        self.unary(x, Unary::Relu)
    }
    pub fn leaky_relu(&mut self, x: Var, slope: f32) -> Result<Var> {
        self.unary(x, Unary::LeakyRelu(slope))
    }
    pub fn sigmoid(&mut self, x: Var) -> Result<Var> {
        self.unary(x, Unary::Sigmoid)
    }
    pub fn tanh(&mut self, x: Var) -> Result<Var> {
        self.unary(x, Unary::Tanh)
    }
    pub fn scale(&mut self, x: Var, c: f32) -> Result<Var> {
        self.unary(x, Unary::Scale(c))
    }

    pub fn binary(&mut self, a: Var, b: Var, op: Binary) -> Result<Var> {
        let (l, out) = Broadcast::new(self.shape(a), self.shape(b))?;
        let y = self.b.binary(op, &self.value(a).buf, &self.value(b).buf, &l)?;
        let rg = self.rg(&[a, b]);
        Ok(self.push(Tensor::new(y, &out), Op::Binary(a, b, op, l), rg))
    }
    /// `a + b`, broadcast as NumPy.
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, Binary::Add)
    }
    /// `a * b` element-wise, broadcast as NumPy.
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, Binary::Mul)
    }

    /// Same data, new shape (no copy).
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        ensure!(numel(shape) == self.value(x).numel(), "cannot reshape {:?} to {shape:?}", self.shape(x));
        let t = Tensor { buf: self.value(x).buf.clone(), shape: shape.to_vec() };
        let rg = self.rg(&[x]);
        Ok(self.push(t, Op::Reshape(x), rg))
    }

    // matrix products ------------------------------------------------------------

    /// `op(a) op(b)`: `a` is `[..., m, k]` (`[..., k, m]` if `ta`), `b` is
    /// `[..., k, n]` (`[..., n, k]` if `tb`) with the same batch dims, or 2-D
    /// and shared by the whole batch.
    pub fn matmul(&mut self, a: Var, b: Var, ta: bool, tb: bool) -> Result<Var> {
        let (sa, sb) = (self.shape(a).to_vec(), self.shape(b).to_vec());
        ensure!(sa.len() >= 2 && sb.len() >= 2, "matmul needs matrices, got shapes {sa:?} and {sb:?}");
        let (ra, rb) = (sa.len(), sb.len());
        let (m, ka) = if ta { (sa[ra - 1], sa[ra - 2]) } else { (sa[ra - 2], sa[ra - 1]) };
        let (kb, n) = if tb { (sb[rb - 1], sb[rb - 2]) } else { (sb[rb - 2], sb[rb - 1]) };
        ensure!(ka == kb, "matmul: inner dimensions differ ({sa:?}{} x {sb:?}{})",
            if ta { "^T" } else { "" }, if tb { "^T" } else { "" });
        let batch_dims = &sa[..ra - 2];
        let shared_b = rb == 2;
        ensure!(shared_b || sb[..rb - 2] == *batch_dims, "matmul: batch dims of {sa:?} and {sb:?} differ");
        let batch = numel(batch_dims);
        let mut g = Gemm::new(batch, m, n, ka, ta, tb);
        if shared_b {
            g.stride_b = 0;
        }
        let mut c = self.b.zeros(batch * m * n)?;
        self.b.gemm(&g, &self.value(a).buf, &self.value(b).buf, &mut c)?;
        let mut out = batch_dims.to_vec();
        out.extend([m, n]);
        let rg = self.rg(&[a, b]);
        Ok(self.push(Tensor::new(c, &out), Op::Matmul { a, b, g, shared_b }, rg))
    }

    /// `x W^T + bias` over the last axis of `x` (torch.nn.Linear):
    /// `x [..., in]`, `w [out, in]`, `bias [out]`.
    pub fn linear(&mut self, x: Var, w: Var, bias: Option<Var>) -> Result<Var> {
        let sx = self.shape(x).to_vec();
        let (out_f, in_f) = match self.shape(w) {
            [o, i] => (*o, *i),
            s => bail!("linear: weight must be [out, in], got {s:?}"),
        };
        ensure!(sx.last() == Some(&in_f), "linear: input {sx:?} does not end in {in_f} features (weight [{out_f}, {in_f}])");
        let rows = numel(&sx[..sx.len() - 1]);
        let x2 = self.reshape(x, &[rows, in_f])?;
        let mut y = self.matmul(x2, w, false, true)?;
        if let Some(bias) = bias {
            ensure!(self.shape(bias) == [out_f], "linear: bias {:?} for {out_f} outputs", self.shape(bias));
            y = self.add(y, bias)?;
        }
        let mut out = sx[..sx.len() - 1].to_vec();
        out.push(out_f);
        self.reshape(y, &out)
    }

    // along one axis ---------------------------------------------------------------

    fn reduce(&mut self, x: Var, axis: isize, mean: bool) -> Result<Var> {
        let l = AxisLayout::new(self.shape(x), axis)?;
        let out = reduced_shape(self.shape(x), axis)?;
        let y = self.b.sum_axis(&self.value(x).buf, l, mean)?;
        let rg = self.rg(&[x]);
        Ok(self.push(Tensor::new(y, &out), Op::Sum { x, l, mean }, rg))
    }
    /// Sum over `axis` (removed from the shape).
    pub fn sum(&mut self, x: Var, axis: isize) -> Result<Var> {
        self.reduce(x, axis, false)
    }
    /// Mean over `axis` (removed from the shape).
    pub fn mean(&mut self, x: Var, axis: isize) -> Result<Var> {
        self.reduce(x, axis, true)
    }

    /// `softmax(scale * x)` along `axis`; `mask` (same shape, 0/1) marks the
    /// valid entries: masked ones get probability 0.
    pub fn softmax(&mut self, x: Var, axis: isize, scale: f32, mask: Option<&Tensor<B>>) -> Result<Var> {
        let l = AxisLayout::new(self.shape(x), axis)?;
        if let Some(m) = mask {
            ensure!(m.shape == self.shape(x), "softmax: mask {:?} for input {:?}", m.shape, self.shape(x));
        }
        let y = self.b.softmax(&self.value(x).buf, mask.map(|m| &*m.buf), l, scale)?;
        let t = Tensor::new(y, self.shape(x));
        let rg = self.rg(&[x]);
        Ok(self.push(t, Op::Softmax { x, l, scale }, rg))
    }

    /// Layer norm over the last axis with affine `gamma`, `beta` (`[d]`).
    pub fn layer_norm(&mut self, x: Var, gamma: Var, beta: Var, eps: f32) -> Result<Var> {
        let s = self.shape(x).to_vec();
        let d = *s.last().context("layer_norm of a scalar")?;
        ensure!(self.shape(gamma) == [d] && self.shape(beta) == [d],
            "layer_norm: gamma {:?} / beta {:?} for {d} features", self.shape(gamma), self.shape(beta));
        let rows = numel(&s) / d;
        let (y, mean, rstd) = self.b.layer_norm(&self.value(x).buf, &self.value(gamma).buf, &self.value(beta).buf, rows, d, eps)?;
        let rg = self.rg(&[x, gamma, beta]);
        Ok(self.push(Tensor::new(y, &s), Op::LayerNorm { x, gamma, beta, rows, d, mean, rstd }, rg))
    }

    /// `x / (||x|| + eps)` along `axis`.
    pub fn l2_normalize(&mut self, x: Var, axis: isize, eps: f32) -> Result<Var> {
        let l = AxisLayout::new(self.shape(x), axis)?;
        let (y, norm) = self.b.l2_normalize(&self.value(x).buf, l, eps)?;
        let t = Tensor::new(y, self.shape(x));
        let rg = self.rg(&[x]);
        Ok(self.push(t, Op::L2Normalize { x, l, eps, norm }, rg))
    }

    /// Cosine similarity along `axis` (torch.nn.functional.cosine_similarity).
    pub fn cosine(&mut self, a: Var, b: Var, axis: isize, eps: f32) -> Result<Var> {
        ensure!(self.shape(a) == self.shape(b), "cosine: shapes {:?} and {:?} differ", self.shape(a), self.shape(b));
        let l = AxisLayout::new(self.shape(a), axis)?;
        let out = reduced_shape(self.shape(a), axis)?;
        let y = self.b.cosine(&self.value(a).buf, &self.value(b).buf, l, eps)?;
        let rg = self.rg(&[a, b]);
        Ok(self.push(Tensor::new(y, &out), Op::Cosine { a, b, l, eps }, rg))
    }

    // losses -----------------------------------------------------------------------

    /// Mean BCE with logits; `target` gets no gradient.
    pub fn bce_with_logits(&mut self, x: Var, target: Var) -> Result<Var> {
        ensure!(self.shape(x) == self.shape(target), "bce_with_logits: logits {:?} and targets {:?} differ", self.shape(x), self.shape(target));
        let y = self.b.bce_with_logits(&self.value(x).buf, &self.value(target).buf)?;
        let rg = self.rg(&[x]);
        Ok(self.push(Tensor::new(y, &[]), Op::BceWithLogits { x, target }, rg))
    }

    /// `x [rows, 4]` of (S+, S-, S'+, S'-): the summed triplet hinge.
    pub fn triplet_hinge(&mut self, x: Var, margin: f32) -> Result<Var> {
        ensure!(self.shape(x).len() == 2 && self.shape(x)[1] == 4, "triplet_hinge: expects [rows, 4], got {:?}", self.shape(x));
        let y = self.b.triplet_hinge(&self.value(x).buf, margin)?;
        let rg = self.rg(&[x]);
        Ok(self.push(Tensor::new(y, &[]), Op::TripletHinge { x, margin }, rg))
    }

    // detector ops -------------------------------------------------------------------

    /// 2-D convolution, NCHW (torch.nn.functional.conv2d).
    pub fn conv2d(&mut self, x: Var, w: Var, bias: Option<Var>, stride: usize, padding: usize, dilation: usize, groups: usize) -> Result<Var> {
        let p = Conv2d::new(self.shape(x), self.shape(w), [stride; 2], [padding; 2], [dilation; 2], groups)?;
        if let Some(b) = bias {
            ensure!(self.shape(b) == [p.k as usize], "conv2d: bias {:?} for {} channels", self.shape(b), p.k);
        }
        let y = self.b.conv2d(&p, &self.value(x).buf, &self.value(w).buf, bias.map(|b| &*self.nodes[b.0].value.buf))?;
        let mut ins = vec![x, w];
        ins.extend(bias);
        let rg = self.rg(&ins);
        Ok(self.push(Tensor::new(y, &p.out_shape()), Op::Conv2d { x, w, bias, p }, rg))
    }

    /// `x * scale[c] + shift[c]` with constant per-channel tensors (frozen batch norm).
    pub fn channel_affine(&mut self, x: Var, scale: &Tensor<B>, shift: &Tensor<B>) -> Result<Var> {
        let s = self.shape(x).to_vec();
        ensure!(s.len() >= 2, "channel_affine: input {s:?} has no channel axis");
        let (c, hw) = (s[1], numel(&s[2..]));
        ensure!(scale.shape == [c] && shift.shape == [c], "channel_affine: scale/shift for {c} channels");
        let y = self.b.channel_affine(&self.value(x).buf, &scale.buf, Some(&*shift.buf), c, hw)?;
        let rg = self.rg(&[x]);
        Ok(self.push(Tensor::new(y, &s), Op::ChannelAffine { x, scale: scale.clone(), c, hw }, rg))
    }

    /// Batch norm in training mode; returns the output and the batch (mean,
    /// biased variance) for the caller's running statistics.
    pub fn batch_norm_train(&mut self, x: Var, gamma: Var, beta: Var, eps: f32) -> Result<(Var, Tensor<B>, Tensor<B>)> {
        let s = self.shape(x).to_vec();
        ensure!(s.len() >= 2, "batch_norm: input {s:?} has no channel axis");
        let (n, c, hw) = (s[0], s[1], numel(&s[2..]));
        ensure!(self.shape(gamma) == [c] && self.shape(beta) == [c], "batch_norm: gamma/beta for {c} channels");
        let (y, mean, var) = self.b.batch_norm_train(&self.value(x).buf, &self.value(gamma).buf, &self.value(beta).buf, n, c, hw, eps)?;
        let stats = (Tensor::new(self.b.copy(&mean)?, &[c]), Tensor::new(self.b.copy(&var)?, &[c]));
        let rg = self.rg(&[x, gamma, beta]);
        let v = self.push(Tensor::new(y, &s), Op::BatchNorm { x, gamma, beta, mean, var, n, c, hw, eps }, rg);
        Ok((v, stats.0, stats.1))
    }

    pub fn max_pool2d(&mut self, x: Var, k: usize, stride: usize, pad: usize) -> Result<Var> {
        let p = Pool2d::max(self.shape(x), k, stride, pad)?;
        let (y, argmax) = self.b.max_pool2d(&p, &self.value(x).buf)?;
        let rg = self.rg(&[x]);
        Ok(self.push(Tensor::new(y, &p.out_shape()), Op::MaxPool { x, p, argmax }, rg))
    }

    /// Nearest upsampling to `size` (torch.nn.functional.interpolate, mode nearest).
    pub fn upsample_nearest(&mut self, x: Var, size: [usize; 2]) -> Result<Var> {
        let p = Pool2d::upsample(self.shape(x), size)?;
        let y = self.b.upsample_nearest(&p, &self.value(x).buf)?;
        let rg = self.rg(&[x]);
        Ok(self.push(Tensor::new(y, &p.out_shape()), Op::Upsample { x, p }, rg))
    }

    /// Axis permutation: `out.shape[i] = x.shape[perm[i]]`.
    pub fn permute(&mut self, x: Var, perm: &[usize]) -> Result<Var> {
        let (l, out) = Permute::new(self.shape(x), perm)?;
        let y = self.b.permute(&self.value(x).buf, &l)?;
        let rg = self.rg(&[x]);
        Ok(self.push(Tensor::new(y, &out), Op::Permute { x, perm: perm.to_vec() }, rg))
    }

    /// Concatenation along `axis` (all other dims equal).
    pub fn concat(&mut self, xs: &[Var], axis: isize) -> Result<Var> {
        ensure!(!xs.is_empty(), "concat of nothing");
        let first = self.shape(xs[0]).to_vec();
        let a = crate::shape::normalize_axis(first.len(), axis)?;
        let mut out = first.clone();
        out[a] = 0;
        for &x in xs {
            let s = self.shape(x);
            ensure!(s.len() == first.len() && s.iter().enumerate().all(|(i, &d)| i == a || d == first[i]),
                "concat along axis {a}: shapes {first:?} and {s:?} differ elsewhere");
            out[a] += s[a];
        }
        let l = AxisLayout::new(&out, a as isize)?;
        let mut y = self.b.zeros(numel(&out))?;
        let mut start = 0;
        for &x in xs {
            self.b.axis_insert(&mut y, l, start, &self.value(x).buf)?;
            start += self.shape(x)[a];
        }
        let rg = self.rg(xs);
        Ok(self.push(Tensor::new(y, &out), Op::Concat { xs: xs.to_vec(), l }, rg))
    }

    /// Sigmoid focal loss summed with per-element weights (targets and weights get no gradient).
    pub fn focal_loss(&mut self, x: Var, target: Var, weight: Option<Var>, alpha: f32, gamma: f32) -> Result<Var> {
        ensure!(self.shape(x) == self.shape(target), "focal_loss: logits {:?} and targets {:?} differ", self.shape(x), self.shape(target));
        let w = weight.map(|w| &*self.nodes[w.0].value.buf);
        let y = self.b.focal_loss(&self.value(x).buf, &self.value(target).buf, w, alpha, gamma)?;
        let rg = self.rg(&[x]);
        Ok(self.push(Tensor::new(y, &[]), Op::FocalLoss { x, target, weight, alpha, gamma }, rg))
    }

    /// L1 or smooth-L1 loss summed with per-element weights.
    pub fn box_loss(&mut self, kind: BoxLoss, x: Var, target: Var, weight: Option<Var>) -> Result<Var> {
        ensure!(self.shape(x) == self.shape(target), "box_loss: predictions {:?} and targets {:?} differ", self.shape(x), self.shape(target));
        let w = weight.map(|w| &*self.nodes[w.0].value.buf);
        let y = self.b.box_loss(kind, &self.value(x).buf, &self.value(target).buf, w)?;
        let rg = self.rg(&[x]);
        Ok(self.push(Tensor::new(y, &[]), Op::BoxLoss { x, target, weight, kind }, rg))
    }

    /// Rows `[start, start + len)` of `axis`.
    pub fn slice(&mut self, x: Var, axis: isize, start: usize, len: usize) -> Result<Var> {
        let s = self.shape(x).to_vec();
        let a = crate::shape::normalize_axis(s.len(), axis)?;
        ensure!(start + len <= s[a] && len > 0, "slice {start}..{} of axis {a} with {} rows", start + len, s[a]);
        let l = AxisLayout::new(&s, a as isize)?;
        let y = self.b.axis_slice(&self.value(x).buf, l, start, len)?;
        let mut out = s.clone();
        out[a] = len;
        let rg = self.rg(&[x]);
        Ok(self.push(Tensor::new(y, &out), Op::Slice { x, l, start }, rg))
    }

    /// Fused cross-attention (literal variant): `[2, B]` of (S_roi, S_text)
    /// from phi `[B, N, d]`, alpha `[B, N]`, embeddings `m` `[B, M, d]` and
    /// the 0/1 `mask` `[B, M]`.
    pub fn cross_attention(&mut self, phi: Var, alpha: Var, m: Var, mask: &Tensor<B>, lambda_a: f32, lambda_b: f32, slope: f32) -> Result<Var> {
        let (sp, sm) = (self.shape(phi).to_vec(), self.shape(m).to_vec());
        ensure!(sp.len() == 3 && sm.len() == 3 && sp[0] == sm[0] && sp[2] == sm[2], "cross_attention: phi {sp:?} and m {sm:?}");
        ensure!(self.shape(alpha) == &sp[..2] && mask.shape == sm[..2], "cross_attention: alpha {:?}, mask {:?}", self.shape(alpha), mask.shape);
        let p = XAttn { b: sp[0] as i32, n: sp[1] as i32, m: sm[1] as i32, d: sp[2] as i32, lambda_a, lambda_b, slope };
        let y = self.b.cross_attention(&p, &self.value(phi).buf, &self.value(alpha).buf, &self.value(m).buf, &mask.buf)?;
        let rg = self.rg(&[phi, alpha]);
        Ok(self.push(Tensor::new(y, &[2, sp[0]]), Op::CrossAttention { phi, alpha, m, mask: mask.clone(), p }, rg))
    }

    // the reverse pass -----------------------------------------------------------------

    /// Gradients of the scalar `loss` with respect to every node that needs one.
    pub fn backward(&self, loss: Var) -> Result<Grads<B>> {
        ensure!(self.record, "backward in no-grad mode");
        ensure!(self.value(loss).numel() == 1, "backward needs a scalar loss, got shape {:?}", self.shape(loss));
        let b = &self.b;
        let mut slots: Vec<Option<B::Buf>> = (0..self.nodes.len()).map(|_| None).collect();
        slots[loss.0] = Some(b.fill(1, 1.0)?);
        let need = |v: Var| self.nodes[v.0].requires_grad;
        let acc = |slots: &mut Vec<Option<B::Buf>>, v: Var, g: B::Buf| -> Result<()> {
            if !need(v) {
                return Ok(());
            }
            match &mut slots[v.0] {
                Some(s) => b.axpy(s, 1.0, &g),
                slot => {
                    *slot = Some(g);
                    Ok(())
                }
            }
        };
        for i in (0..=loss.0).rev() {
            let node = &self.nodes[i];
            if !node.requires_grad || matches!(node.op, Op::Leaf) {
                continue;
            }
            let Some(gy) = slots[i].take() else { continue };
            let val = |v: Var| &*self.nodes[v.0].value.buf;
            let t0 = if profile::enabled() { b.synchronize()?; Some(std::time::Instant::now()) } else { None };
            match &node.op {
                Op::Leaf => unreachable!(),
                Op::Unary(x, op) => {
                    let gx = b.unary_backward(*op, val(*x), &node.value.buf, &gy)?;
                    acc(&mut slots, *x, gx)?;
                }
                Op::Binary(x, y, op, l) => {
                    let mut wanted: Vec<(Var, Var, bool)> = [(*x, *y, false), (*y, *x, true)].into_iter().filter(|&(v, _, _)| need(v)).collect();
                    // broadcast inputs first, so that the last input of full size can take the gradient over
                    wanted.sort_by_key(|&(_, _, is_b)| l.reduce_for(is_b).red_numel() <= 1);
                    let mut gy = Some(gy);
                    for (i, &(input, other, is_b)) in wanted.iter().enumerate() {
                        let last = i + 1 == wanted.len();
                        let r = l.reduce_for(is_b);
                        let reduce = |g: B::Buf| if r.red_numel() > 1 { b.reduce_broadcast(&g, &r) } else { Ok(g) };
                        let g_out = gy.as_ref().expect("taken only by the last input");
                        // d(a+b)/da = 1, d(a*b)/da = b; then sum over what `input` was broadcast along.
                        let g = match op {
                            // a bias reads the output gradient directly; the last full-size input takes it over
                            Binary::Add if r.red_numel() > 1 => b.reduce_broadcast(g_out, &r)?,
                            Binary::Add if last => gy.take().expect("present until the last input"),
                            Binary::Add => b.copy(g_out)?,
                            Binary::Mul => {
                                let (lo, _) = Broadcast::new(&node.value.shape, self.shape(other))?;
                                reduce(b.binary(Binary::Mul, g_out, val(other), &lo)?)?
                            }
                        };
                        acc(&mut slots, input, g)?;
                    }
                }
                Op::Matmul { a, b: bm, g, shared_b } => {
                    let (m, n, k) = (g.m as usize, g.n as usize, g.k as usize);
                    let (ta, tb) = (g.trans_a != 0, g.trans_b != 0);
                    let batch = g.batch as usize;
                    if need(*a) {
                        // !ta: dA = dC op(B)^T;  ta: dA (stored [k,m]) = op(B) dC^T
                        let mut d = if ta { Gemm::new(batch, k, m, n, tb, true) } else { Gemm::new(batch, m, k, n, false, !tb) };
                        let (sb, sc) = (g.stride_b, (m * n) as u64);
                        if ta { (d.stride_a, d.stride_b) = (sb, sc) } else { (d.stride_a, d.stride_b) = (sc, sb) }
                        let mut ga = b.zeros(batch * m * k)?;
                        if ta { b.gemm(&d, val(*bm), &gy, &mut ga)? } else { b.gemm(&d, &gy, val(*bm), &mut ga)? }
                        acc(&mut slots, *a, ga)?;
                    }
                    if need(*bm) {
                        // !tb: dB = op(A)^T dC;  tb: dB (stored [n,k]) = dC^T op(A)
                        let mut d = if tb { Gemm::new(batch, n, k, m, true, ta) } else { Gemm::new(batch, k, n, m, !ta, false) };
                        let (sa, sc) = ((m * k) as u64, (m * n) as u64);
                        if tb { (d.stride_a, d.stride_b) = (sc, sa) } else { (d.stride_a, d.stride_b) = (sa, sc) }
                        let mut gb = b.zeros(batch * k * n)?;
                        if tb { b.gemm(&d, &gy, val(*a), &mut gb)? } else { b.gemm(&d, val(*a), &gy, &mut gb)? }
                        if *shared_b && batch > 1 {
                            // one B served every matrix of the batch: sum their gradients
                            gb = b.sum_axis(&gb, AxisLayout { outer: 1, n: batch, inner: k * n }, false)?;
                        }
                        acc(&mut slots, *bm, gb)?;
                    }
                }
                Op::Reshape(x) => acc(&mut slots, *x, gy)?,
                Op::Sum { x, l, mean } => {
                    let gx = b.sum_axis_backward(&gy, *l, *mean)?;
                    acc(&mut slots, *x, gx)?;
                }
                Op::Softmax { x, l, scale } => {
                    let gx = b.softmax_backward(&node.value.buf, &gy, *l, *scale)?;
                    acc(&mut slots, *x, gx)?;
                }
                Op::LayerNorm { x, gamma, beta, rows, d, mean, rstd } => {
                    let (gx, gg, gbeta) = b.layer_norm_backward(val(*x), val(*gamma), mean, rstd, &gy, *rows, *d)?;
                    acc(&mut slots, *x, gx)?;
                    acc(&mut slots, *gamma, gg)?;
                    acc(&mut slots, *beta, gbeta)?;
                }
                Op::L2Normalize { x, l, eps, norm } => {
                    let gx = b.l2_normalize_backward(val(*x), norm, &gy, *l, *eps)?;
                    acc(&mut slots, *x, gx)?;
                }
                Op::Cosine { a, b: bv, l, eps } => {
                    let (ga, gb) = b.cosine_backward(val(*a), val(*bv), &gy, *l, *eps)?;
                    acc(&mut slots, *a, ga)?;
                    acc(&mut slots, *bv, gb)?;
                }
                Op::BceWithLogits { x, target } => {
                    let gx = b.bce_with_logits_backward(val(*x), val(*target), &gy)?;
                    acc(&mut slots, *x, gx)?;
                }
                Op::TripletHinge { x, margin } => {
                    let gx = b.triplet_hinge_backward(val(*x), *margin, &gy)?;
                    acc(&mut slots, *x, gx)?;
                }
                Op::Conv2d { x, w, bias, p } => {
                    if need(*x) {
                        let gx = b.conv2d_backward_data(p, &gy, val(*w))?;
                        acc(&mut slots, *x, gx)?;
                    }
                    if need(*w) {
                        let gw = b.conv2d_backward_weight(p, val(*x), &gy)?;
                        acc(&mut slots, *w, gw)?;
                    }
                    if let Some(bias) = bias {
                        // sum over n, oh, ow of [n, k, oh*ow]
                        let (l, _) = Broadcast::new(&[p.n as usize, p.k as usize, (p.oh * p.ow) as usize], &[p.k as usize, 1])?;
                        let gb = b.reduce_broadcast(&gy, &l.reduce_for(true))?;
                        acc(&mut slots, *bias, gb)?;
                    }
                }
                Op::ChannelAffine { x, scale, c, hw } => {
                    let gx = b.channel_affine(&gy, &scale.buf, None, *c, *hw)?;
                    acc(&mut slots, *x, gx)?;
                }
                Op::BatchNorm { x, gamma, beta, mean, var, n, c, hw, eps } => {
                    let (gx, gg, gb) = b.batch_norm_backward(val(*x), val(*gamma), mean, var, &gy, *n, *c, *hw, *eps)?;
                    acc(&mut slots, *x, gx)?;
                    acc(&mut slots, *gamma, gg)?;
                    acc(&mut slots, *beta, gb)?;
                }
                Op::MaxPool { x, p, argmax } => {
                    let gx = b.max_pool2d_backward(p, &gy, argmax)?;
                    acc(&mut slots, *x, gx)?;
                }
                Op::Upsample { x, p } => {
                    let gx = b.upsample_nearest_backward(p, &gy)?;
                    acc(&mut slots, *x, gx)?;
                }
                Op::Permute { x, perm } => {
                    let mut inv = vec![0; perm.len()];
                    for (i, &p) in perm.iter().enumerate() {
                        inv[p] = i;
                    }
                    let (l, _) = Permute::new(&node.value.shape, &inv)?;
                    let gx = b.permute(&gy, &l)?;
                    acc(&mut slots, *x, gx)?;
                }
                Op::Concat { xs, l } => {
                    let mut start = 0;
                    for &x in xs {
                        let len = self.value(x).numel() / (l.outer * l.inner);
                        if need(x) {
                            let gx = b.axis_slice(&gy, *l, start, len)?;
                            acc(&mut slots, x, gx)?;
                        }
                        start += len;
                    }
                }
                Op::FocalLoss { x, target, weight, alpha, gamma } => {
                    let w = weight.map(|w| val(w));
                    let gx = b.focal_loss_backward(val(*x), val(*target), w, *alpha, *gamma, &gy)?;
                    acc(&mut slots, *x, gx)?;
                }
                Op::Slice { x, l, start } => {
                    let mut gx = b.zeros(l.numel())?;
                    b.axis_insert(&mut gx, *l, *start, &gy)?;
                    acc(&mut slots, *x, gx)?;
                }
                Op::CrossAttention { phi, alpha, m, mask, p } => {
                    let (gp, ga) = b.cross_attention_backward(p, val(*phi), val(*alpha), val(*m), &mask.buf, &gy)?;
                    acc(&mut slots, *phi, gp)?;
                    acc(&mut slots, *alpha, ga)?;
                }
                Op::BoxLoss { x, target, weight, kind } => {
                    let w = weight.map(|w| val(w));
                    let gx = b.box_loss_backward(*kind, val(*x), val(*target), w, &gy)?;
                    acc(&mut slots, *x, gx)?;
                }
            }
            if let Some(t0) = t0 {
                b.synchronize()?;
                profile::add(format!("backward {}", node.op.profile_key()), t0.elapsed().as_secs_f64());
            }
        }
        Ok(Grads {
            slots,
            shapes: self.nodes.iter().map(|n| n.value.shape.clone()).collect(),
            params: self.nodes.iter().map(|n| n.param).collect(),
        })
    }
}
