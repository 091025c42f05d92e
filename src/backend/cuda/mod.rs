//! The CUDA backend: launches the engine's own kernels from `cuda/*.cu`
//! (compiled to PTX by build.rs, embedded in the binary, loaded once per
//! context). libcuda is loaded at run time, so the binary runs without CUDA.
//! Every kernel is looked up by name through `Cuda::f`; a test checks that
//! each name used here is an entry of the embedded PTX.

use super::ops::Storage;
use super::{Conv2d, Gemm, Permute, Pool2d, XAttn};
use kernels::MODULES;
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

// One file per op family, named as its kernel file in cuda/.
mod attention;
mod boxes;
mod conv;
mod elementwise;
mod gemm;
mod layout;
mod losses;
mod norm;
mod optim;
mod pool;
mod reduce;
mod softmax;
mod word2vec;

/// The embedded PTX of every `cuda/*.cu` (empty in a build without nvcc).
pub mod kernels {
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
}
pub use conv::round_tf32;

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
fn arg_opt<'a>(launch: &mut LaunchArgs<'a>, x: Option<&'a CudaSlice<f32>>, null: &'a u64) {
    match x {
        Some(x) => launch.arg(x),
        None => launch.arg(null),
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

impl Storage for Cuda {
    type Buf = CudaSlice<f32>;
    type Ids = CudaSlice<u32>;

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
        let mut launch = self.stream().launch_builder(self.f("fill")?);
        launch.arg(&mut y).arg(&value).arg(&n64);
        // SAFETY: y holds n elements.
        unsafe { launch.launch(cfg_elems(n)) }?;
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

    fn upload_ids(&self, host: &[u32]) -> Result<CudaSlice<u32>> {
        self.upload_u32(host)
    }

    fn synchronize(&self) -> Result<()> {
        Ok(self.stream().synchronize()?)
    }
}
