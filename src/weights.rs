//! Weights on disk: safetensors with torchvision's tensor names. Reads f32,
//! f16, bf16 (and f64 / integer tensors, for fixtures) into f32; writes f32,
//! f16 or bf16 atomically (temporary file, fsync, rename). Every error names
//! the file.

use crate::tensor::Tensor;
use crate::backend::Backend;
use crate::params::ParamSet;
use anyhow::{bail, Context, Result};
use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A tensor in host memory, converted to f32.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    /// The dtype it had in the file.
    pub dtype: Dtype,
}

/// Everything a safetensors file holds.
#[derive(Clone, Debug, Default)]
pub struct TensorFile {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, HostTensor>,
    pub metadata: BTreeMap<String, String>,
}

impl TensorFile {
    /// The tensor `name`, or an error naming the file and the tensor.
    pub fn get(&self, name: &str) -> Result<&HostTensor> {
        self.tensors.get(name).with_context(|| format!("{}: no tensor named {name}", self.path.display()))
    }

    /// A metadata value parsed as JSON (the fixtures store numbers and lists so).
    pub fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T> {
        let raw = self.metadata.get(key).with_context(|| format!("{}: no metadata entry {key}", self.path.display()))?;
        serde_json::from_str(raw).with_context(|| format!("{}: metadata {key} = {raw:?} is not of the expected form", self.path.display()))
    }
}

/// Storage type when writing.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreDtype {
    #[default]
    F32,
    F16,
    Bf16,
}

fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    fn conv<const N: usize>(b: &[u8], f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        b.chunks_exact(N).map(|c| f(c.try_into().unwrap())).collect()
    }
    Some(match dtype {
        Dtype::F32 => conv(bytes, f32::from_le_bytes),
        Dtype::F16 => conv(bytes, |c| f16::from_le_bytes(c).to_f32()),
        Dtype::BF16 => conv(bytes, |c| bf16::from_le_bytes(c).to_f32()),
        Dtype::F64 => conv(bytes, |c| f64::from_le_bytes(c) as f32),
        Dtype::I64 => conv(bytes, |c| i64::from_le_bytes(c) as f32),
        Dtype::I32 => conv(bytes, |c| i32::from_le_bytes(c) as f32),
        Dtype::U8 | Dtype::BOOL => bytes.iter().map(|&b| b as f32).collect(),
        _ => return None,
    })
}

/// Reads a whole safetensors file. A truncated or malformed file is an error
/// naming it, never a panic.
pub fn read(path: &Path) -> Result<TensorFile> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a valid safetensors file ({e})", path.display()))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a valid safetensors file ({e})", path.display()))?;
    let mut file = TensorFile { path: path.to_path_buf(), ..Default::default() };
    if let Some(m) = meta.metadata() {
        file.metadata = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    }
    for (name, view) in st.tensors() {
        let data = to_f32(view.dtype(), view.data())
            .with_context(|| format!("{}: tensor {name} has unsupported dtype {:?}", path.display(), view.dtype()))?;
        file.tensors.insert(name, HostTensor { shape: view.shape().to_vec(), data, dtype: view.dtype() });
    }
    Ok(file)
}

fn encode(data: &[f32], dtype: StoreDtype) -> (Dtype, Vec<u8>) {
    match dtype {
        StoreDtype::F32 => (Dtype::F32, data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        StoreDtype::F16 => (Dtype::F16, data.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect()),
        StoreDtype::Bf16 => (Dtype::BF16, data.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect()),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync,
/// rename over the target, fsync of the folder. A crash leaves either the old
/// file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().with_context(|| format!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| -> Result<()> {
        let mut f = fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))?;
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all(); // best effort: not every file system syncs folders
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes named tensors (host data) as one safetensors file, atomically.
pub fn write(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)], dtype: StoreDtype, metadata: &BTreeMap<String, String>) -> Result<()> {
    let mut encoded = Vec::with_capacity(tensors.len());
    for (name, shape, data) in tensors {
        if data.len() != shape.iter().product::<usize>() {
            bail!("{}: tensor {name} has {} values for shape {shape:?}", path.display(), data.len());
        }
        let (dt, bytes) = encode(data, dtype);
        encoded.push((name.clone(), shape.clone(), dt, bytes));
    }
    let views = encoded
        .iter()
        .map(|(n, s, dt, b)| Ok((n.clone(), safetensors::tensor::TensorView::new(*dt, s.clone(), b)?)))
        .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>()
        .with_context(|| format!("{}: cannot encode tensors", path.display()))?;
    let meta: HashMap<String, String> = metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let bytes = safetensors::serialize(views, if meta.is_empty() { None } else { Some(meta) })
        .with_context(|| format!("{}: cannot serialize", path.display()))?;
    write_atomic(path, &bytes)
}

/// Saves every parameter under its name.
pub fn save_params<B: Backend>(b: &B, params: &ParamSet<B>, path: &Path, dtype: StoreDtype, metadata: &BTreeMap<String, String>) -> Result<()> {
    let tensors = params
        .params
        .iter()
        .map(|p| Ok((p.name.clone(), p.value.shape.clone(), p.value.to_host(b)?)))
        .collect::<Result<Vec<_>>>()?;
    write(path, &tensors, dtype, metadata)
}

/// Loads every parameter by name, strictly (as PyTorch's `load_state_dict`):
/// the error lists all missing, unexpected and mis-shaped tensors at once,
/// and nothing is changed unless everything fits.
pub fn load_params_strict<B: Backend>(b: &B, params: &mut ParamSet<B>, path: &Path) -> Result<TensorFile> {
    let file = read(path)?;
    assign_strict(b, params, &file, "")?;
    Ok(file)
}

/// As `load_params_strict`, from tensors already read, named `prefix` + the
/// parameter's name (tensors without the prefix are not considered).
pub fn assign_strict<B: Backend>(b: &B, params: &mut ParamSet<B>, file: &TensorFile, prefix: &str) -> Result<()> {
    let path = &file.path;
    let tensors: BTreeMap<&str, &HostTensor> = file.tensors.iter().filter_map(|(k, v)| k.strip_prefix(prefix).map(|n| (n, v))).collect();
    let mut missing = Vec::new();
    let mut misshaped = Vec::new();
    for p in &params.params {
        match tensors.get(p.name.as_str()) {
            None => missing.push(p.name.clone()),
            Some(t) if t.shape != p.value.shape => {
                misshaped.push(format!("{} (file {:?}, model {:?})", p.name, t.shape, p.value.shape))
            }
            Some(_) => {}
        }
    }
    let unexpected: Vec<&str> = tensors.keys().copied().filter(|k| params.index(k).is_err()).collect();
    if !(missing.is_empty() && misshaped.is_empty() && unexpected.is_empty()) {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("missing tensors: {}", missing.join(", ")));
        }
        if !unexpected.is_empty() {
            parts.push(format!("unexpected tensors: {}", unexpected.join(", ")));
        }
        if !misshaped.is_empty() {
            parts.push(format!("wrong shapes: {}", misshaped.join(", ")));
        }
        bail!("{}: weights do not fit the model: {}", path.display(), parts.join("; "));
    }
    for p in &mut params.params {
        let t = tensors[p.name.as_str()];
        p.value = Tensor::from_host(b, &t.data, &t.shape)?;
    }
    Ok(())
}

/// Loads the tensors of `file` whose names and shapes fit (PyTorch's
/// `strict=False`): returns (loaded, not in the file, wrong shape, not in the model).
pub fn assign_partial<B: Backend>(b: &B, params: &mut ParamSet<B>, file: &TensorFile) -> Result<(usize, Vec<String>, Vec<String>, Vec<String>)> {
    let (mut loaded, mut missing, mut misshaped) = (0, Vec::new(), Vec::new());
    for p in &mut params.params {
        match file.tensors.get(&p.name) {
            None => missing.push(p.name.clone()),
            Some(t) if t.shape != p.value.shape => misshaped.push(format!("{} (file {:?}, model {:?})", p.name, t.shape, p.value.shape)),
            Some(t) => {
                p.value = Tensor::from_host(b, &t.data, &t.shape)?;
                loaded += 1;
            }
        }
    }
    let unexpected = file.tensors.keys().filter(|k| params.index(k).is_err()).cloned().collect();
    Ok((loaded, missing, misshaped, unexpected))
}
