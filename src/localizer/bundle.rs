//! Model files. `engine detector train` writes the detector's
//! `model.safetensors`: the weights under torchvision's names (loadable by
//! PyTorch) with the configuration in its metadata (`engine_model`). `engine
//! train` writes the bundle that `engine infer`, the demo and `engine eval`
//! read: the detector and the attention model in one file, each with its
//! metadata (`engine_model`, `engine_attention`). Both are written atomically.

use crate::nn::attention::{init_params, HeadConfig};
use crate::backend::Backend;
use crate::nn::retinanet::RetinaConfig;
use crate::params::ParamSet;
use crate::weights::{assign_strict, read, save_params, write, StoreDtype, TensorFile};
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
    let mut params = crate::nn::retinanet::init_params(b, &meta.retina, 0)?;
    let model: BTreeMap<String, crate::weights::HostTensor> =
        file.tensors.iter().filter(|(k, _)| !k.starts_with("optimizer.")).map(|(k, v)| (k.clone(), v.clone())).collect();
    let only_model = crate::weights::TensorFile { tensors: model, ..file };
    assign_strict(b, &mut params, &only_model, "")?;
    Ok((params, meta))
}

/// What a trained attention model needs besides its weights.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct AttnMeta {
    pub head: HeadConfig,
    pub attributes: Vec<String>,
    pub top_n: usize,
    pub test_ids: Vec<String>,
}

/// Writes the attention model `head` and the detector `det` to `path`.
pub fn save_bundle<B: Backend>(b: &B, head: &ParamSet<B>, det: &ParamSet<B>, meta: &AttnMeta, det_meta: &ModelMeta, path: &Path) -> Result<()> {
    let mut t = Vec::new();
    for p in head.params.iter().chain(&det.params) {
        t.push((p.name.clone(), p.value.shape.clone(), p.value.to_host(b)?));
    }
    let mut m = BTreeMap::new();
    m.insert("engine_attention".to_string(), serde_json::to_string(meta)?);
    m.insert("engine_model".to_string(), serde_json::to_string(det_meta)?);
    write(path, &t, StoreDtype::F32, &m)
}

/// (attention parameters, attention metadata, detector parameters, detector metadata) of a bundle.
pub fn load_bundle<B: Backend>(b: &B, path: &Path) -> Result<(ParamSet<B>, AttnMeta, ParamSet<B>, ModelMeta)> {
    let f = read(path)?;
    let meta: AttnMeta = serde_json::from_str(f.metadata.get("engine_attention").with_context(|| format!("{}: not an attention model (no engine_attention metadata)", path.display()))?)?;
    let mut head = init_params(b, &meta.head, 0)?;
    let names: Vec<String> = head.params.iter().map(|p| p.name.clone()).collect();
    let pick = |want_head: bool| TensorFile {
        tensors: f.tensors.iter().filter(|(k, _)| names.contains(k) == want_head).map(|(k, v)| (k.clone(), v.clone())).collect(),
        path: f.path.clone(),
        metadata: f.metadata.clone(),
    };
    assign_strict(b, &mut head, &pick(true), "")?;
    let det_file = pick(false);
    let det_meta: ModelMeta = det_file.meta("engine_model")?;
    let mut det = crate::nn::retinanet::init_params(b, &det_meta.retina, 0)?;
    assign_strict(b, &mut det, &det_file, "")?;
    Ok((head, meta, det, det_meta))
}

/// What a trained classifier (`engine classifier train`) needs besides its weights.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ClassifierMeta {
    /// Square input side.
    pub image_size: usize,
    /// The finding it tells from its absence.
    pub finding: String,
}

pub fn save_classifier<B: Backend>(b: &B, params: &ParamSet<B>, meta: &ClassifierMeta, path: &Path) -> Result<()> {
    let mut m = BTreeMap::new();
    m.insert("engine_classifier".to_string(), serde_json::to_string(meta)?);
    save_params(b, params, path, StoreDtype::F32, &m)
}

/// A classifier file of `engine classifier train`.
pub fn load_classifier<B: Backend>(b: &B, path: &Path) -> Result<(ParamSet<B>, ClassifierMeta)> {
    let file = read(path)?;
    let meta: ClassifierMeta = serde_json::from_str(file.metadata.get("engine_classifier").with_context(|| format!("{}: not a classifier (no engine_classifier metadata)", path.display()))?)?;
    let mut params = crate::nn::classifier::init_params(b, 0)?;
    let only: BTreeMap<String, crate::weights::HostTensor> = file.tensors.iter().filter(|(k, _)| !k.starts_with("optimizer.")).map(|(k, v)| (k.clone(), v.clone())).collect();
    assign_strict(b, &mut params, &TensorFile { tensors: only, ..file }, "")?;
    Ok((params, meta))
}
