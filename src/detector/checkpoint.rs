//! Detector checkpoints: `model.safetensors` holds the weights under
//! torchvision's names (loadable by PyTorch) with the configuration in its
//! metadata; `checkpoint.safetensors` adds the optimizer state and the epoch
//! for `--resume`. Both are written atomically.

use crate::backend::Backend;
use crate::nn::retinanet::{init_params, RetinaConfig};
use crate::optim::Optimizer;
use crate::params::ParamSet;
use crate::weights::{assign_strict, read, save_params, write, StoreDtype};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Configuration stored with the weights.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ModelMeta {
    pub retina: RetinaConfig,
    /// Square input side the model was trained at.
    pub image_size: usize,
}

pub fn save_model<B: Backend>(b: &B, params: &ParamSet<B>, meta: &ModelMeta, path: &Path) -> Result<()> {
    let mut m = BTreeMap::new();
    m.insert("engine_model".to_string(), serde_json::to_string(meta)?);
    save_params(b, params, path, StoreDtype::F32, &m)
}

/// A model file from `engine detector train` (or any torchvision RetinaNet
/// state dict with `--num-classes` given through `meta`).
pub fn load_model<B: Backend>(b: &B, path: &Path, fallback: Option<ModelMeta>) -> Result<(ParamSet<B>, ModelMeta)> {
    let file = read(path)?;
    let meta: ModelMeta = match file.metadata.get("engine_model") {
        Some(s) => serde_json::from_str(s).with_context(|| format!("{}: unreadable engine_model metadata", path.display()))?,
        None => fallback.with_context(|| format!("{}: no engine_model metadata (not written by the engine)", path.display()))?,
    };
    let mut params = init_params(b, &meta.retina, 0)?;
    let model: BTreeMap<String, crate::weights::HostTensor> =
        file.tensors.iter().filter(|(k, _)| !k.starts_with("optimizer.")).map(|(k, v)| (k.clone(), v.clone())).collect();
    let only_model = crate::weights::TensorFile { tensors: model, ..file };
    assign_strict(b, &mut params, &only_model, "")?;
    Ok((params, meta))
}

/// Training state for `--resume`.
pub struct Resume {
    pub epoch: usize,
    pub step: usize,
}

pub fn save_checkpoint<B: Backend>(b: &B, params: &ParamSet<B>, opt: &Optimizer<B>, meta: &ModelMeta, state: &Resume, path: &Path) -> Result<()> {
    let mut tensors = Vec::new();
    for p in &params.params {
        tensors.push((p.name.clone(), p.value.shape.clone(), p.value.to_host(b)?));
    }
    tensors.extend(opt.state_tensors(b, params)?);
    let mut m = BTreeMap::new();
    m.insert("engine_model".to_string(), serde_json::to_string(meta)?);
    m.insert("epoch".to_string(), state.epoch.to_string());
    m.insert("step".to_string(), state.step.to_string());
    write(path, &tensors, StoreDtype::F32, &m)
}

/// Loads weights and optimizer state; returns the finished epoch count and step.
pub fn load_checkpoint<B: Backend>(b: &B, params: &mut ParamSet<B>, opt: &mut Optimizer<B>, path: &Path) -> Result<Resume> {
    let file = read(path)?;
    let model: BTreeMap<String, crate::weights::HostTensor> =
        file.tensors.iter().filter(|(k, _)| !k.starts_with("optimizer.")).map(|(k, v)| (k.clone(), v.clone())).collect();
    let only_model = crate::weights::TensorFile { tensors: model, path: file.path.clone(), metadata: file.metadata.clone() };
    assign_strict(b, params, &only_model, "")?;
    opt.load_state(b, params, &file)?;
    Ok(Resume { epoch: file.meta("epoch")?, step: file.meta("step")? })
}
