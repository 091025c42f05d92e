//! Training checkpoints (detector and classifier): `checkpoint.safetensors`
//! is the model file (`localizer::bundle`) plus the optimizer state and the
//! epoch, for `--resume`; written atomically.

use crate::backend::Backend;
use crate::optim::Optimizer;
use crate::params::ParamSet;
use crate::weights::{assign_strict, read, write, StoreDtype};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::Path;

/// Training state for `--resume`.
pub struct Resume {
    pub epoch: usize,
    pub step: usize,
}

/// Weights, optimizer state, epoch and step; `model` is the model file's
/// metadata entry (`engine_model`, `engine_classifier`).
pub fn save_checkpoint<B: Backend>(b: &B, params: &ParamSet<B>, opt: &Optimizer<B>, model: (&str, String), state: &Resume, path: &Path) -> Result<()> {
    let mut tensors = Vec::new();
    for p in &params.params {
        tensors.push((p.name.clone(), p.value.shape.clone(), p.value.to_host(b)?));
    }
    tensors.extend(opt.state_tensors(b, params)?);
    let mut m = BTreeMap::new();
    m.insert(model.0.to_string(), model.1);
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
