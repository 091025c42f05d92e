//! The CUDA backend: launches the engine's own kernels from `cuda/*.cu`
//! (compiled to PTX by build.rs, embedded in the binary, loaded once per
//! context). libcuda is loaded at run time, so the binary runs without CUDA.
//! Every kernel is looked up by name through `Cuda::f`; a test checks that
//! each name used here is an entry of the embedded PTX.

use super::{Adam, Backend, Binary, BoxLoss, Conv2d, Gemm, Permute, Pool2d, Sgd, Unary, XAttn};
use crate::detect::{boxes::BoxCoder, matcher::Matcher};
use crate::kernels::MODULES;
use crate::shape::{AxisLayout, Broadcast, ReduceLayout};
use anyhow::{anyhow, bail, ensure, Context, Result};
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchArgs, LaunchConfig, PushKernelArg};
use std::collections::HashMap;
use std::sync::Arc;

// SAFETY: plain repr(C) structs of integers and floats, mirrored in cuda/common.cuh.
unsafe impl DeviceRepr for Broadcast {}
unsafe impl DeviceRepr for ReduceLayout {}
unsafe impl DeviceRepr for Gemm {}
unsafe impl DeviceRepr for Conv2d {}
unsafe impl DeviceRepr for Pool2d {}
unsafe impl DeviceRepr for Permute {}
unsafe impl DeviceRepr for XAttn {}

#[derive(Clone)]
pub struct Cuda {
    inner: Arc<Inner>,
    /// Convolutions on TF32 tensor cores (`--tf32`); full f32 otherwise.
    tf32: bool,
}

struct Inner {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    funcs: HashMap<String, CudaFunction>,
}

/// Names of the kernels (`.entry`) in a PTX text.
pub fn ptx_entries(ptx: &str) -> Vec<String> {
    ptx.lines()
        .filter_map(|l| l.trim().strip_prefix(".visible .entry "))
        .map(|l| l.trim_end_matches('(').trim().to_string())
        .collect()
}

/// Why no CUDA device can be used, or `None` when one can.
pub fn unavailable_reason() -> Option<String> {
    if MODULES.is_empty() {
        return Some("this build has no CUDA kernels (nvcc was not found when it was built)".into());
    }
    // SAFETY: only tries to load the library; never calls into it.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Some("no CUDA driver (libcuda) on this machine".into());
    }
    match CudaContext::device_count() {
        Ok(n) if n > 0 => None,
        Ok(_) => Some("the CUDA driver reports no GPU".into()),
        Err(e) => Some(format!("the CUDA driver reports no usable GPU ({e})")),
    }
}

mod boxes;
mod conv;
pub use conv::round_tf32;
mod xattn;

const THREADS: u32 = 256;

/// Grid-stride launch over `n` elements.
fn cfg_elems(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(THREADS as usize).clamp(1, 65_535) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// One warp per line (8 lines per block).
fn cfg_lines(lines: usize) -> LaunchConfig {
    let warps = THREADS as usize / 32;
    LaunchConfig { grid_dim: (lines.div_ceil(warps).max(1) as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// A single block (scalar reductions).
fn cfg_single() -> LaunchConfig {
    LaunchConfig { grid_dim: (1, 1, 1), block_dim: (1024, 1, 1), shared_mem_bytes: 0 }
}

/// Pushes an optional buffer, or a null pointer.
fn arg_opt<'a>(b: &mut LaunchArgs<'a>, x: Option<&'a CudaSlice<f32>>, null: &'a u64) {
    match x {
        Some(x) => b.arg(x),
        None => b.arg(null),
    };
}

fn dims(l: &AxisLayout) -> (i32, i32, i32) {
    (l.outer as i32, l.n as i32, l.inner as i32)
}

impl Cuda {
    /// Opens GPU `ordinal` and loads every kernel module.
    pub fn new(ordinal: usize) -> Result<Self> {
        if let Some(why) = unavailable_reason() {
            bail!("CUDA is not available: {why}");
        }
        let ctx = CudaContext::new(ordinal).with_context(|| format!("cannot open CUDA device {ordinal}"))?;
        // One stream: the driver orders all work, so cudarc's per-buffer events are not needed.
        // SAFETY: no buffer is shared between streams in this backend.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let mut funcs = HashMap::new();
        for (module, ptx) in MODULES {
            let m = ctx
                .load_module(cudarc::nvrtc::Ptx::from_src(*ptx))
                .with_context(|| format!("cannot load kernel module {module} (driver too old for this PTX?)"))?;
            for entry in ptx_entries(ptx) {
                let f = m.load_function(&entry).with_context(|| format!("kernel {entry} of module {module}"))?;
                funcs.insert(entry, f);
            }
        }
        Ok(Cuda { inner: Arc::new(Inner { ctx, stream, funcs }), tf32: false })
    }

    /// The same device with convolutions on TF32 tensor cores (10-bit
    /// mantissa, f32 accumulation; PyTorch's default for cuDNN convolutions)
    /// or, the default, in full f32.
    pub fn with_tf32(mut self, on: bool) -> Self {
        self.tf32 = on;
        self
    }

    pub fn tf32(&self) -> bool {
        self.tf32
    }

    fn f(&self, name: &str) -> Result<&CudaFunction> {
        self.inner.funcs.get(name).ok_or_else(|| anyhow!("kernel {name} is missing from the embedded PTX"))
    }

    fn stream(&self) -> &Arc<CudaStream> {
        &self.inner.stream
    }

    /// (total, free) device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize)> {
        let (free, total) = self.inner.ctx.mem_get_info()?;
        Ok((total, free))
    }

    pub fn compute_capability(&self) -> Result<(i32, i32)> {
        Ok(self.inner.ctx.compute_capability()?)
    }

    pub fn upload_u32(&self, host: &[u32]) -> Result<CudaSlice<u32>> {
        ensure!(!host.is_empty(), "cannot upload an empty buffer");
        Ok(self.stream().clone_htod(host)?)
    }

    /// word2vec SGNS updates for `pairs` (flattened (context, centre) word
    /// ids) with negatives from `table`; returns the summed loss of the pairs.
    #[allow(clippy::too_many_arguments)]
    pub fn word2vec_sgns(&self, syn0: &mut CudaSlice<f32>, syn1: &mut CudaSlice<f32>, pairs: &CudaSlice<u32>, table: &CudaSlice<u32>,
                         dim: usize, negative: usize, alpha: f32, seed: u64) -> Result<f64> {
        ensure!(dim <= 256, "word2vec on CUDA supports up to 256 dimensions, got {dim}");
        let n_pairs = pairs.len() / 2;
        let warps = (THREADS / 32) as usize;
        let blocks = n_pairs.div_ceil(warps).max(1);
        let mut block_loss = self.alloc(blocks)?;
        let (np, tl, d, k) = (n_pairs as i32, table.len() as i64, dim as i32, negative as i32);
        let mut b = self.stream().launch_builder(self.f("word2vec_sgns")?);
        b.arg(syn0).arg(syn1).arg(pairs).arg(&np).arg(table).arg(&tl).arg(&d).arg(&k).arg(&alpha).arg(&seed).arg(&mut block_loss);
        let cfg = LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: pair ids index syn0/syn1 rows of `dim` (the caller built both from one vocabulary); block_loss holds one slot per block.
        unsafe { b.launch(cfg) }?;
        // the loss comes back with the launch: it also paces the host to the GPU
        Ok(self.download(&block_loss)?.iter().map(|&v| v as f64).sum())
    }

    fn alloc(&self, n: usize) -> Result<CudaSlice<f32>> {
        ensure!(n > 0, "cannot allocate an empty CUDA buffer");
        // SAFETY: every caller writes all n elements before they are read.
        Ok(unsafe { self.stream().alloc::<f32>(n) }?)
    }

    fn check_len(&self, what: &str, x: &CudaSlice<f32>, n: usize) -> Result<()> {
        ensure!(x.len() >= n, "{what}: buffer of {} elements, expected {n}", x.len());
        Ok(())
    }
}

impl Backend for Cuda {
    type Buf = CudaSlice<f32>;

    fn name(&self) -> String {
        self.inner.ctx.name().unwrap_or_else(|_| "CUDA device".into())
    }
    fn len(&self, x: &Self::Buf) -> usize {
        x.len()
    }
    fn zeros(&self, n: usize) -> Result<Self::Buf> {
        ensure!(n > 0, "cannot allocate an empty CUDA buffer");
        Ok(self.stream().alloc_zeros::<f32>(n)?)
    }
    fn fill(&self, n: usize, value: f32) -> Result<Self::Buf> {
        let mut y = self.alloc(n)?;
        let n64 = n as i64;
        let mut b = self.stream().launch_builder(self.f("fill")?);
        b.arg(&mut y).arg(&value).arg(&n64);
        // SAFETY: y holds n elements.
        unsafe { b.launch(cfg_elems(n)) }?;
        Ok(y)
    }
    fn upload(&self, host: &[f32]) -> Result<Self::Buf> {
        ensure!(!host.is_empty(), "cannot upload an empty tensor");
        Ok(self.stream().clone_htod(host)?)
    }
    fn download(&self, x: &Self::Buf) -> Result<Vec<f32>> {
        let v = self.stream().clone_dtoh(x)?;
        self.stream().synchronize()?;
        Ok(v)
    }
    fn copy(&self, x: &Self::Buf) -> Result<Self::Buf> {
        Ok(self.stream().clone_dtod(x)?)
    }
    fn synchronize(&self) -> Result<()> {
        Ok(self.stream().synchronize()?)
    }

    fn unary(&self, op: Unary, x: &Self::Buf) -> Result<Self::Buf> {
        let n = x.len();
        let mut y = self.alloc(n)?;
        let (code, p) = op.code();
        let n64 = n as i64;
        let mut b = self.stream().launch_builder(self.f("unary_fwd")?);
        b.arg(&code).arg(&p).arg(x).arg(&mut y).arg(&n64);
        // SAFETY: x and y hold n elements.
        unsafe { b.launch(cfg_elems(n)) }?;
        Ok(y)
    }

    fn unary_backward(&self, op: Unary, x: &Self::Buf, y: &Self::Buf, gy: &Self::Buf) -> Result<Self::Buf> {
        let n = gy.len();
        self.check_len("unary_backward x", x, n)?;
        self.check_len("unary_backward y", y, n)?;
        let mut gx = self.alloc(n)?;
        let (code, p) = op.code();
        let n64 = n as i64;
        let mut b = self.stream().launch_builder(self.f("unary_bwd")?);
        b.arg(&code).arg(&p).arg(x).arg(y).arg(gy).arg(&mut gx).arg(&n64);
        // SAFETY: every buffer holds n elements (checked above).
        unsafe { b.launch(cfg_elems(n)) }?;
        Ok(gx)
    }

    fn binary(&self, op: Binary, a: &Self::Buf, bb: &Self::Buf, l: &Broadcast) -> Result<Self::Buf> {
        let n = l.out_numel();
        let mut y = self.alloc(n)?;
        let code = op.code();
        let n64 = n as i64;
        let mut b = self.stream().launch_builder(self.f("binary_fwd")?);
        b.arg(&code).arg(l).arg(a).arg(bb).arg(&mut y).arg(&n64);
        // SAFETY: the layout was built from the shapes of a and b; y holds n elements.
        unsafe { b.launch(cfg_elems(n)) }?;
        Ok(y)
    }

    fn reduce_broadcast(&self, g: &Self::Buf, l: &ReduceLayout) -> Result<Self::Buf> {
        let (kept, red) = (l.kept_numel(), l.red_numel());
        self.check_len("reduce_broadcast", g, kept * red)?;
        // Partial sums of 64 reduced elements each (RED_CHUNK in elementwise.cu), then their sum.
        let chunks = red.div_ceil(64);
        ensure!(chunks <= 65_535, "reduce_broadcast: {red} reduced elements is over the grid limit");
        let mut partial = self.alloc(chunks * kept)?;
        let mut out = self.alloc(kept)?;
        let (kept64, red64, chunks32) = (kept as i64, red as i64, chunks as i32);
        let blocks = kept.div_ceil(THREADS as usize) as u32;
        let mut b = self.stream().launch_builder(self.f("reduce_broadcast")?);
        b.arg(l).arg(g).arg(&mut partial).arg(&kept64).arg(&red64);
        let cfg = LaunchConfig { grid_dim: (blocks, chunks as u32, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: g holds kept*red elements, partial chunks*kept.
        unsafe { b.launch(cfg) }?;
        let mut b = self.stream().launch_builder(self.f("reduce_broadcast_sum")?);
        b.arg(&partial).arg(&mut out).arg(&kept64).arg(&chunks32);
        let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: partial holds chunks*kept elements, out kept.
        unsafe { b.launch(cfg) }?;
        Ok(out)
    }

    fn axpy(&self, acc: &mut Self::Buf, alpha: f32, x: &Self::Buf) -> Result<()> {
        let n = acc.len();
        ensure!(x.len() == n, "axpy: lengths {n} and {} differ", x.len());
        let n64 = n as i64;
        let mut b = self.stream().launch_builder(self.f("axpy")?);
        b.arg(acc).arg(&alpha).arg(x).arg(&n64);
        // SAFETY: both hold n elements.
        unsafe { b.launch(cfg_elems(n)) }?;
        Ok(())
    }

    fn sum_axis(&self, x: &Self::Buf, l: AxisLayout, mean: bool) -> Result<Self::Buf> {
        self.check_len("sum_axis", x, l.numel())?;
        let mut y = self.alloc(l.lines())?;
        let (o, n, i) = dims(&l);
        let mean32 = mean as i32;
        let mut b = self.stream().launch_builder(self.f("sum_axis_fwd")?);
        b.arg(x).arg(&mut y).arg(&o).arg(&n).arg(&i).arg(&mean32);
        // SAFETY: x holds outer*n*inner, y outer*inner elements.
        unsafe { b.launch(cfg_lines(l.lines())) }?;
        Ok(y)
    }

    fn sum_axis_backward(&self, gy: &Self::Buf, l: AxisLayout, mean: bool) -> Result<Self::Buf> {
        self.check_len("sum_axis_backward", gy, l.lines())?;
        let mut gx = self.alloc(l.numel())?;
        let (o, n, i) = dims(&l);
        let mean32 = mean as i32;
        let mut b = self.stream().launch_builder(self.f("sum_axis_bwd")?);
        b.arg(gy).arg(&mut gx).arg(&o).arg(&n).arg(&i).arg(&mean32);
        // SAFETY: as sum_axis.
        unsafe { b.launch(cfg_lines(l.lines())) }?;
        Ok(gx)
    }

    fn softmax(&self, x: &Self::Buf, mask: Option<&Self::Buf>, l: AxisLayout, scale: f32) -> Result<Self::Buf> {
        self.check_len("softmax", x, l.numel())?;
        let mut y = self.alloc(l.numel())?;
        let (o, n, i) = dims(&l);
        let null: u64 = 0;
        let mut b = self.stream().launch_builder(self.f("softmax_fwd")?);
        b.arg(x);
        match mask {
            Some(m) => {
                self.check_len("softmax mask", m, l.numel())?;
                b.arg(m)
            }
            None => b.arg(&null),
        };
        b.arg(&mut y).arg(&o).arg(&n).arg(&i).arg(&scale);
        // SAFETY: x, mask and y hold outer*n*inner elements; a null mask is allowed.
        unsafe { b.launch(cfg_lines(l.lines())) }?;
        Ok(y)
    }

    fn softmax_backward(&self, y: &Self::Buf, gy: &Self::Buf, l: AxisLayout, scale: f32) -> Result<Self::Buf> {
        self.check_len("softmax_backward", y, l.numel())?;
        self.check_len("softmax_backward", gy, l.numel())?;
        let mut gx = self.alloc(l.numel())?;
        let (o, n, i) = dims(&l);
        let mut b = self.stream().launch_builder(self.f("softmax_bwd")?);
        b.arg(y).arg(gy).arg(&mut gx).arg(&o).arg(&n).arg(&i).arg(&scale);
        // SAFETY: all hold outer*n*inner elements.
        unsafe { b.launch(cfg_lines(l.lines())) }?;
        Ok(gx)
    }

    fn layer_norm(&self, x: &Self::Buf, gamma: &Self::Buf, beta: &Self::Buf, rows: usize, d: usize, eps: f32)
        -> Result<(Self::Buf, Self::Buf, Self::Buf)> {
        self.check_len("layer_norm x", x, rows * d)?;
        self.check_len("layer_norm gamma", gamma, d)?;
        self.check_len("layer_norm beta", beta, d)?;
        let (mut y, mut mean, mut rstd) = (self.alloc(rows * d)?, self.alloc(rows)?, self.alloc(rows)?);
        let rows32 = rows as i32;
        let d32 = d as i32;
        let mut b = self.stream().launch_builder(self.f("layer_norm_fwd")?);
        b.arg(x).arg(gamma).arg(beta).arg(&mut y).arg(&mut mean).arg(&mut rstd).arg(&rows32).arg(&d32).arg(&eps);
        // SAFETY: lengths checked above.
        unsafe { b.launch(cfg_lines(rows)) }?;
        Ok((y, mean, rstd))
    }

    fn layer_norm_backward(&self, x: &Self::Buf, gamma: &Self::Buf, mean: &Self::Buf, rstd: &Self::Buf, gy: &Self::Buf, rows: usize, d: usize)
        -> Result<(Self::Buf, Self::Buf, Self::Buf)> {
        self.check_len("layer_norm_backward gy", gy, rows * d)?;
        self.check_len("layer_norm_backward x", x, rows * d)?;
        self.check_len("layer_norm_backward mean", mean, rows)?;
        let (mut gx, mut gg, mut gb) = (self.alloc(rows * d)?, self.alloc(d)?, self.alloc(d)?);
        let (r, dd) = (rows as i32, d as i32);
        let mut b = self.stream().launch_builder(self.f("layer_norm_bwd")?);
        b.arg(x).arg(gamma).arg(mean).arg(rstd).arg(gy).arg(&mut gx).arg(&r).arg(&dd);
        // SAFETY: lengths checked above.
        unsafe { b.launch(cfg_lines(rows)) }?;
        let chunks = rows.div_ceil(256);
        let (mut pg, mut pb) = (self.alloc(chunks * d)?, self.alloc(chunks * d)?);
        let mut b = self.stream().launch_builder(self.f("layer_norm_param_bwd")?);
        b.arg(x).arg(mean).arg(rstd).arg(gy).arg(&mut pg).arg(&mut pb).arg(&r).arg(&dd);
        let cfg = LaunchConfig { grid_dim: (d.div_ceil(THREADS as usize) as u32, chunks as u32, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: partial buffers hold chunks * d elements.
        unsafe { b.launch(cfg) }?;
        let c32 = chunks as i32;
        let mut b = self.stream().launch_builder(self.f("layer_norm_param_sum")?);
        b.arg(&pg).arg(&pb).arg(&mut gg).arg(&mut gb).arg(&c32).arg(&dd);
        // SAFETY: gg and gb hold d elements.
        unsafe { b.launch(LaunchConfig { grid_dim: (d.div_ceil(THREADS as usize) as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }) }?;
        Ok((gx, gg, gb))
    }

    fn l2_normalize(&self, x: &Self::Buf, l: AxisLayout, eps: f32) -> Result<(Self::Buf, Self::Buf)> {
        self.check_len("l2_normalize", x, l.numel())?;
        let (mut y, mut norm) = (self.alloc(l.numel())?, self.alloc(l.lines())?);
        let (o, n, i) = dims(&l);
        let mut b = self.stream().launch_builder(self.f("l2_normalize_fwd")?);
        b.arg(x).arg(&mut y).arg(&mut norm).arg(&o).arg(&n).arg(&i).arg(&eps);
        // SAFETY: lengths checked / allocated above.
        unsafe { b.launch(cfg_lines(l.lines())) }?;
        Ok((y, norm))
    }

    fn l2_normalize_backward(&self, x: &Self::Buf, norm: &Self::Buf, gy: &Self::Buf, l: AxisLayout, eps: f32) -> Result<Self::Buf> {
        self.check_len("l2_normalize_backward x", x, l.numel())?;
        self.check_len("l2_normalize_backward gy", gy, l.numel())?;
        self.check_len("l2_normalize_backward norm", norm, l.lines())?;
        let mut gx = self.alloc(l.numel())?;
        let (o, n, i) = dims(&l);
        let mut b = self.stream().launch_builder(self.f("l2_normalize_bwd")?);
        b.arg(x).arg(norm).arg(gy).arg(&mut gx).arg(&o).arg(&n).arg(&i).arg(&eps);
        // SAFETY: lengths checked above.
        unsafe { b.launch(cfg_lines(l.lines())) }?;
        Ok(gx)
    }

    fn cosine(&self, a: &Self::Buf, bb: &Self::Buf, l: AxisLayout, eps: f32) -> Result<Self::Buf> {
        self.check_len("cosine a", a, l.numel())?;
        self.check_len("cosine b", bb, l.numel())?;
        let mut y = self.alloc(l.lines())?;
        let (o, n, i) = dims(&l);
        let mut b = self.stream().launch_builder(self.f("cosine_fwd")?);
        b.arg(a).arg(bb).arg(&mut y).arg(&o).arg(&n).arg(&i).arg(&eps);
        // SAFETY: lengths checked above.
        unsafe { b.launch(cfg_lines(l.lines())) }?;
        Ok(y)
    }

    fn cosine_backward(&self, a: &Self::Buf, bb: &Self::Buf, gy: &Self::Buf, l: AxisLayout, eps: f32) -> Result<(Self::Buf, Self::Buf)> {
        self.check_len("cosine_backward a", a, l.numel())?;
        self.check_len("cosine_backward b", bb, l.numel())?;
        self.check_len("cosine_backward gy", gy, l.lines())?;
        let (mut ga, mut gb) = (self.alloc(l.numel())?, self.alloc(l.numel())?);
        let (o, n, i) = dims(&l);
        let mut b = self.stream().launch_builder(self.f("cosine_bwd")?);
        b.arg(a).arg(bb).arg(gy).arg(&mut ga).arg(&mut gb).arg(&o).arg(&n).arg(&i).arg(&eps);
        // SAFETY: lengths checked above.
        unsafe { b.launch(cfg_lines(l.lines())) }?;
        Ok((ga, gb))
    }

    fn bce_with_logits(&self, x: &Self::Buf, t: &Self::Buf) -> Result<Self::Buf> {
        ensure!(x.len() == t.len(), "bce_with_logits: {} logits but {} targets", x.len(), t.len());
        let mut loss = self.alloc(1)?;
        let n64 = x.len() as i64;
        let mut b = self.stream().launch_builder(self.f("bce_with_logits_fwd")?);
        b.arg(x).arg(t).arg(&mut loss).arg(&n64);
        // SAFETY: x and t have equal lengths; loss holds 1 element.
        unsafe { b.launch(cfg_single()) }?;
        Ok(loss)
    }

    fn bce_with_logits_backward(&self, x: &Self::Buf, t: &Self::Buf, gy: &Self::Buf) -> Result<Self::Buf> {
        ensure!(x.len() == t.len(), "bce_with_logits_backward: {} logits but {} targets", x.len(), t.len());
        let n = x.len();
        let mut gx = self.alloc(n)?;
        let n64 = n as i64;
        let mut b = self.stream().launch_builder(self.f("bce_with_logits_bwd")?);
        b.arg(x).arg(t).arg(gy).arg(&mut gx).arg(&n64);
        // SAFETY: x, t and gx hold n elements, gy one.
        unsafe { b.launch(cfg_elems(n)) }?;
        Ok(gx)
    }

    fn triplet_hinge(&self, x: &Self::Buf, margin: f32) -> Result<Self::Buf> {
        ensure!(x.len() % 4 == 0, "triplet_hinge: expects rows of 4 scores, got {} values", x.len());
        let mut loss = self.alloc(1)?;
        let rows = (x.len() / 4) as i32;
        let mut b = self.stream().launch_builder(self.f("triplet_hinge_fwd")?);
        b.arg(x).arg(&mut loss).arg(&rows).arg(&margin);
        // SAFETY: x holds rows*4 elements.
        unsafe { b.launch(cfg_single()) }?;
        Ok(loss)
    }

    fn triplet_hinge_backward(&self, x: &Self::Buf, margin: f32, gy: &Self::Buf) -> Result<Self::Buf> {
        let rows = x.len() / 4;
        let mut gx = self.alloc(x.len())?;
        let rows32 = rows as i32;
        let mut b = self.stream().launch_builder(self.f("triplet_hinge_bwd")?);
        b.arg(x).arg(gy).arg(&mut gx).arg(&rows32).arg(&margin);
        // SAFETY: x and gx hold rows*4 elements.
        unsafe { b.launch(cfg_elems(rows)) }?;
        Ok(gx)
    }

    fn gemm(&self, g: &Gemm, a: &Self::Buf, bb: &Self::Buf, c: &mut Self::Buf) -> Result<()> {
        let (la, lb, lc) = g.min_lens();
        ensure!(a.len() >= la && bb.len() >= lb && c.len() >= lc,
            "gemm {}x{}x{} (batch {}): buffers of {}, {}, {} elements are too short (need {la}, {lb}, {lc})",
            g.m, g.n, g.k, g.batch, a.len(), bb.len(), c.len());
        ensure!(g.batch <= 65_535, "gemm: batch {} is over the grid limit 65535", g.batch);
        // Few output tiles and a long K (weight gradients): split K so that the GPU fills up.
        let tiles = (g.n.div_ceil(128) * g.m.div_ceil(128)) as usize;
        if g.batch == 1 && tiles < 64 && g.k >= 2048 {
            let splits = (264 / tiles).clamp(2, (g.k / 512) as usize);
            let chunk = (g.k as usize).div_ceil(splits).div_ceil(8) * 8;
            let splits = (g.k as usize).div_ceil(chunk);
            let mn = (g.m * g.n) as usize;
            let mut partial = self.alloc(splits * mn)?;
            let c32 = chunk as i32;
            let mut b = self.stream().launch_builder(self.f("gemm_f32_splitk")?);
            b.arg(g).arg(a).arg(bb).arg(&mut partial).arg(&c32);
            let cfg = LaunchConfig { grid_dim: (g.n.div_ceil(128), g.m.div_ceil(128), splits as u32), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
            // SAFETY: lengths checked above; partial holds splits * m * n.
            unsafe { b.launch(cfg) }?;
            let (mn64, s32) = (mn as i64, splits as i32);
            let mut b = self.stream().launch_builder(self.f("gemm_splitk_sum")?);
            b.arg(&partial).arg(c).arg(&mn64).arg(&s32).arg(&g.alpha).arg(&g.beta);
            // SAFETY: c holds at least m * n (checked above).
            unsafe { b.launch(LaunchConfig { grid_dim: ((mn as u32).div_ceil(THREADS), 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }) }?;
            return Ok(());
        }
        let cfg = LaunchConfig {
            grid_dim: (g.n.div_ceil(128), g.m.div_ceil(128), g.batch),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = self.stream().launch_builder(self.f("gemm_f32")?);
        b.arg(g).arg(a).arg(bb).arg(c);
        // SAFETY: lengths checked above cover every matrix of the batch.
        unsafe { b.launch(cfg) }?;
        Ok(())
    }

    fn conv2d(&self, p: &Conv2d, x: &Self::Buf, w: &Self::Buf, bias: Option<&Self::Buf>) -> Result<Self::Buf> {
        self.conv2d_gpu(p, x, w, bias)
    }

    fn conv2d_backward_data(&self, p: &Conv2d, gy: &Self::Buf, w: &Self::Buf) -> Result<Self::Buf> {
        self.conv2d_dgrad_gpu(p, gy, w)
    }

    fn conv2d_backward_weight(&self, p: &Conv2d, x: &Self::Buf, gy: &Self::Buf) -> Result<Self::Buf> {
        self.conv2d_wgrad_gpu(p, x, gy)
    }

    fn channel_affine(&self, x: &Self::Buf, scale: &Self::Buf, shift: Option<&Self::Buf>, c: usize, hw: usize) -> Result<Self::Buf> {
        self.check_len("channel_affine scale", scale, c)?;
        let n = x.len();
        ensure!(n % (c * hw) == 0, "channel_affine: {n} elements are not [n, {c}, {hw}]");
        let mut y = self.alloc(n)?;
        let (n64, c32, hw32, null) = (n as i64, c as i32, hw as i32, 0u64);
        let mut b = self.stream().launch_builder(self.f("channel_affine")?);
        b.arg(x).arg(scale);
        arg_opt(&mut b, shift, &null);
        b.arg(&mut y).arg(&n64).arg(&c32).arg(&hw32);
        // SAFETY: x and y hold n elements, scale and shift c.
        unsafe { b.launch(cfg_elems(n)) }?;
        Ok(y)
    }

    fn batch_norm_train(&self, x: &Self::Buf, gamma: &Self::Buf, beta: &Self::Buf, n: usize, c: usize, hw: usize, eps: f32)
        -> Result<(Self::Buf, Self::Buf, Self::Buf)> {
        self.check_len("batch_norm input", x, n * c * hw)?;
        self.check_len("batch_norm gamma", gamma, c)?;
        self.check_len("batch_norm beta", beta, c)?;
        let (mut mean, mut var, mut y) = (self.alloc(c)?, self.alloc(c)?, self.alloc(n * c * hw)?);
        let (n32, c32, hw32, total) = (n as i32, c as i32, hw as i32, (n * c * hw) as i64);
        let mut b = self.stream().launch_builder(self.f("batch_norm_stats")?);
        b.arg(x).arg(&mut mean).arg(&mut var).arg(&n32).arg(&c32).arg(&hw32);
        // SAFETY: one block per channel over n*hw elements each.
        unsafe { b.launch(LaunchConfig { grid_dim: (c as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }) }?;
        let mut b = self.stream().launch_builder(self.f("batch_norm_apply")?);
        b.arg(x).arg(&mean).arg(&var).arg(gamma).arg(beta).arg(&mut y).arg(&total).arg(&c32).arg(&hw32).arg(&eps);
        // SAFETY: lengths checked above.
        unsafe { b.launch(cfg_elems(n * c * hw)) }?;
        Ok((y, mean, var))
    }

    fn batch_norm_backward(&self, x: &Self::Buf, gamma: &Self::Buf, mean: &Self::Buf, var: &Self::Buf, gy: &Self::Buf,
                           n: usize, c: usize, hw: usize, eps: f32) -> Result<(Self::Buf, Self::Buf, Self::Buf)> {
        self.check_len("batch_norm_backward input", x, n * c * hw)?;
        self.check_len("batch_norm_backward gy", gy, n * c * hw)?;
        let (mut gg, mut gb, mut gx) = (self.alloc(c)?, self.alloc(c)?, self.alloc(n * c * hw)?);
        let (n32, c32, hw32, total) = (n as i32, c as i32, hw as i32, (n * c * hw) as i64);
        let mut b = self.stream().launch_builder(self.f("batch_norm_bwd_reduce")?);
        b.arg(x).arg(gy).arg(mean).arg(var).arg(&mut gg).arg(&mut gb).arg(&n32).arg(&c32).arg(&hw32).arg(&eps);
        // SAFETY: one block per channel.
        unsafe { b.launch(LaunchConfig { grid_dim: (c as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }) }?;
        let mut b = self.stream().launch_builder(self.f("batch_norm_bwd_apply")?);
        b.arg(x).arg(gy).arg(mean).arg(var).arg(gamma).arg(&gg).arg(&gb).arg(&mut gx).arg(&total).arg(&n32).arg(&c32).arg(&hw32).arg(&eps);
        // SAFETY: lengths checked above.
        unsafe { b.launch(cfg_elems(n * c * hw)) }?;
        Ok((gx, gg, gb))
    }

    fn max_pool2d(&self, p: &Pool2d, x: &Self::Buf) -> Result<(Self::Buf, Self::Buf)> {
        self.check_len("max_pool2d", x, p.x_len())?;
        let (mut y, mut arg) = (self.alloc(p.y_len())?, self.alloc(p.y_len())?);
        let mut b = self.stream().launch_builder(self.f("max_pool2d_fwd")?);
        b.arg(p).arg(x).arg(&mut y).arg(&mut arg);
        // SAFETY: x holds p.x_len(), y and arg p.y_len() elements.
        unsafe { b.launch(cfg_elems(p.y_len())) }?;
        Ok((y, arg))
    }

    fn max_pool2d_backward(&self, p: &Pool2d, gy: &Self::Buf, argmax: &Self::Buf) -> Result<Self::Buf> {
        self.check_len("max_pool2d_backward gy", gy, p.y_len())?;
        self.check_len("max_pool2d_backward argmax", argmax, p.y_len())?;
        let mut gx = self.alloc(p.x_len())?;
        let mut b = self.stream().launch_builder(self.f("max_pool2d_bwd")?);
        b.arg(p).arg(gy).arg(argmax).arg(&mut gx);
        // SAFETY: as above.
        unsafe { b.launch(cfg_elems(p.x_len())) }?;
        Ok(gx)
    }

    fn upsample_nearest(&self, p: &Pool2d, x: &Self::Buf) -> Result<Self::Buf> {
        self.check_len("upsample_nearest", x, p.x_len())?;
        let mut y = self.alloc(p.y_len())?;
        let mut b = self.stream().launch_builder(self.f("upsample_nearest_fwd")?);
        b.arg(p).arg(x).arg(&mut y);
        // SAFETY: x holds p.x_len(), y p.y_len() elements.
        unsafe { b.launch(cfg_elems(p.y_len())) }?;
        Ok(y)
    }

    fn upsample_nearest_backward(&self, p: &Pool2d, gy: &Self::Buf) -> Result<Self::Buf> {
        self.check_len("upsample_nearest_backward", gy, p.y_len())?;
        let mut gx = self.alloc(p.x_len())?;
        let mut b = self.stream().launch_builder(self.f("upsample_nearest_bwd")?);
        b.arg(p).arg(gy).arg(&mut gx);
        // SAFETY: as above.
        unsafe { b.launch(cfg_elems(p.x_len())) }?;
        Ok(gx)
    }

    fn permute(&self, x: &Self::Buf, l: &Permute) -> Result<Self::Buf> {
        let n: usize = l.out_dims[..l.rank as usize].iter().map(|&d| d as usize).product();
        self.check_len("permute", x, n)?;
        let mut y = self.alloc(n)?;
        let n64 = n as i64;
        let mut b = self.stream().launch_builder(self.f("permute")?);
        b.arg(l).arg(x).arg(&mut y).arg(&n64);
        // SAFETY: x and y hold n elements; the layout indexes within them.
        unsafe { b.launch(cfg_elems(n)) }?;
        Ok(y)
    }

    fn axis_slice(&self, x: &Self::Buf, l: AxisLayout, start: usize, len: usize) -> Result<Self::Buf> {
        ensure!(x.len() == l.numel() && start + len <= l.n, "axis_slice: rows {start}..{} of {l:?}", start + len);
        let n = l.outer * len * l.inner;
        let mut y = self.alloc(n)?;
        let (o, ln, i, t, st, dir) = (l.outer as i32, len as i32, l.inner as i32, l.n as i32, start as i32, 0i32);
        let mut b = self.stream().launch_builder(self.f("axis_copy")?);
        b.arg(x).arg(&mut y).arg(&o).arg(&ln).arg(&i).arg(&t).arg(&st).arg(&dir);
        // SAFETY: bounds checked above.
        unsafe { b.launch(cfg_elems(n)) }?;
        Ok(y)
    }

    fn axis_insert(&self, dst: &mut Self::Buf, l: AxisLayout, start: usize, src: &Self::Buf) -> Result<()> {
        let len = src.len() / (l.outer * l.inner).max(1);
        ensure!(dst.len() == l.numel() && start + len <= l.n && src.len() == l.outer * len * l.inner, "axis_insert: rows {start}..{} of {l:?}", start + len);
        let (o, ln, i, t, st, dir) = (l.outer as i32, len as i32, l.inner as i32, l.n as i32, start as i32, 1i32);
        let mut b = self.stream().launch_builder(self.f("axis_copy")?);
        b.arg(src).arg(dst).arg(&o).arg(&ln).arg(&i).arg(&t).arg(&st).arg(&dir);
        // SAFETY: bounds checked above.
        unsafe { b.launch(cfg_elems(src.len())) }?;
        Ok(())
    }

    fn focal_loss(&self, x: &Self::Buf, t: &Self::Buf, w: Option<&Self::Buf>, alpha: f32, gamma: f32) -> Result<Self::Buf> {
        ensure!(x.len() == t.len() && w.is_none_or(|w| w.len() == x.len()), "focal_loss: logits, targets and weights differ in length");
        let mut loss = self.alloc(1)?;
        let (n64, null) = (x.len() as i64, 0u64);
        let mut b = self.stream().launch_builder(self.f("focal_loss_fwd")?);
        b.arg(x).arg(t);
        arg_opt(&mut b, w, &null);
        b.arg(&mut loss).arg(&n64).arg(&alpha).arg(&gamma);
        // SAFETY: equal lengths checked; loss holds 1.
        unsafe { b.launch(cfg_single()) }?;
        Ok(loss)
    }

    fn focal_loss_backward(&self, x: &Self::Buf, t: &Self::Buf, w: Option<&Self::Buf>, alpha: f32, gamma: f32, gy: &Self::Buf) -> Result<Self::Buf> {
        ensure!(x.len() == t.len() && w.is_none_or(|w| w.len() == x.len()), "focal_loss_backward: lengths differ");
        let mut gx = self.alloc(x.len())?;
        let (n64, null) = (x.len() as i64, 0u64);
        let mut b = self.stream().launch_builder(self.f("focal_loss_bwd")?);
        b.arg(x).arg(t);
        arg_opt(&mut b, w, &null);
        b.arg(gy).arg(&mut gx).arg(&n64).arg(&alpha).arg(&gamma);
        // SAFETY: equal lengths checked.
        unsafe { b.launch(cfg_elems(x.len())) }?;
        Ok(gx)
    }

    fn box_loss(&self, kind: BoxLoss, x: &Self::Buf, t: &Self::Buf, w: Option<&Self::Buf>) -> Result<Self::Buf> {
        ensure!(x.len() == t.len() && w.is_none_or(|w| w.len() == x.len()), "box_loss: predictions, targets and weights differ in length");
        let mut loss = self.alloc(1)?;
        let (n64, null, beta) = (x.len() as i64, 0u64, kind.beta());
        let mut b = self.stream().launch_builder(self.f("box_loss_fwd")?);
        b.arg(x).arg(t);
        arg_opt(&mut b, w, &null);
        b.arg(&mut loss).arg(&n64).arg(&beta);
        // SAFETY: equal lengths checked; loss holds 1.
        unsafe { b.launch(cfg_single()) }?;
        Ok(loss)
    }

    fn box_loss_backward(&self, kind: BoxLoss, x: &Self::Buf, t: &Self::Buf, w: Option<&Self::Buf>, gy: &Self::Buf) -> Result<Self::Buf> {
        ensure!(x.len() == t.len() && w.is_none_or(|w| w.len() == x.len()), "box_loss_backward: lengths differ");
        let mut gx = self.alloc(x.len())?;
        let (n64, null, beta) = (x.len() as i64, 0u64, kind.beta());
        let mut b = self.stream().launch_builder(self.f("box_loss_bwd")?);
        b.arg(x).arg(t);
        arg_opt(&mut b, w, &null);
        b.arg(gy).arg(&mut gx).arg(&n64).arg(&beta);
        // SAFETY: equal lengths checked.
        unsafe { b.launch(cfg_elems(x.len())) }?;
        Ok(gx)
    }

    fn cross_attention(&self, p: &XAttn, phi: &Self::Buf, alpha: &Self::Buf, m: &Self::Buf, mask: &Self::Buf) -> Result<Self::Buf> {
        self.cross_attention_gpu(p, phi, alpha, m, mask)
    }

    fn cross_attention_backward(&self, p: &XAttn, phi: &Self::Buf, alpha: &Self::Buf, m: &Self::Buf, mask: &Self::Buf, g: &Self::Buf)
        -> Result<(Self::Buf, Self::Buf)> {
        self.cross_attention_backward_gpu(p, phi, alpha, m, mask, g)
    }

    fn box_iou(&self, a: &Self::Buf, b: &Self::Buf) -> Result<Self::Buf> {
        self.box_iou_gpu(a, b)
    }

    fn box_encode(&self, coder: &BoxCoder, gt: &Self::Buf, anchors: &Self::Buf) -> Result<Self::Buf> {
        self.box_encode_gpu(coder, gt, anchors)
    }

    fn box_decode(&self, coder: &BoxCoder, d: &Self::Buf, anchors: &Self::Buf, clip: Option<[usize; 2]>) -> Result<Self::Buf> {
        self.box_decode_gpu(coder, d, anchors, clip)
    }

    fn anchors(&self, image_size: [usize; 2], grids: &[[usize; 2]], scale: f32) -> Result<Self::Buf> {
        self.anchors_gpu(image_size, grids, scale)
    }

    fn nms(&self, boxes: &Self::Buf, scores: &Self::Buf, threshold: f32) -> Result<Vec<usize>> {
        self.nms_gpu(boxes, scores, threshold)
    }

    fn match_anchors(&self, matcher: &Matcher, gt: &Self::Buf, anchors: &Self::Buf) -> Result<Vec<i64>> {
        self.match_anchors_gpu(matcher, gt, anchors)
    }

    fn sgd_step(&self, h: &Sgd, p: &mut Self::Buf, g: &Self::Buf, mom: &mut Self::Buf) -> Result<()> {
        let n = p.len();
        ensure!(g.len() == n && mom.len() == n, "sgd_step: parameter, gradient and momentum lengths differ");
        let n64 = n as i64;
        let mut b = self.stream().launch_builder(self.f("sgd_step")?);
        b.arg(p).arg(g).arg(mom).arg(&n64).arg(&h.lr).arg(&h.momentum).arg(&h.weight_decay);
        // SAFETY: all hold n elements.
        unsafe { b.launch(cfg_elems(n)) }?;
        Ok(())
    }

    fn adam_step(&self, h: &Adam, p: &mut Self::Buf, g: &Self::Buf, m: &mut Self::Buf, v: &mut Self::Buf) -> Result<()> {
        let n = p.len();
        ensure!(g.len() == n && m.len() == n && v.len() == n, "adam_step: parameter, gradient and moment lengths differ");
        let bc1 = 1.0 - h.beta1.powi(h.step as i32);
        let bc2 = 1.0 - h.beta2.powi(h.step as i32);
        let n64 = n as i64;
        let mut b = self.stream().launch_builder(self.f("adam_step")?);
        b.arg(p).arg(g).arg(m).arg(v).arg(&n64).arg(&h.lr).arg(&h.beta1).arg(&h.beta2).arg(&h.eps)
            .arg(&h.weight_decay).arg(&bc1).arg(&bc2);
        // SAFETY: all hold n elements.
        unsafe { b.launch(cfg_elems(n)) }?;
        Ok(())
    }

    fn sum_squares(&self, x: &Self::Buf) -> Result<f64> {
        let n = x.len();
        let cfg = cfg_elems(n);
        let blocks = cfg.grid_dim.0.min(1024);
        let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), ..cfg };
        let mut partial = self.stream().alloc_zeros::<f64>(blocks as usize)?;
        let n64 = n as i64;
        let mut b = self.stream().launch_builder(self.f("sum_squares")?);
        b.arg(x).arg(&mut partial).arg(&n64);
        // SAFETY: x holds n elements, partial one per block.
        unsafe { b.launch(cfg) }?;
        let host = self.stream().clone_dtoh(&partial)?;
        self.stream().synchronize()?;
        Ok(host.iter().sum())
    }

    fn scale_inplace(&self, x: &mut Self::Buf, c: f32) -> Result<()> {
        let n = x.len();
        let n64 = n as i64;
        let mut b = self.stream().launch_builder(self.f("scale_inplace")?);
        b.arg(x).arg(&c).arg(&n64);
        // SAFETY: x holds n elements.
        unsafe { b.launch(cfg_elems(n)) }?;
        Ok(())
    }
}
