//! The bundle `engine train` writes and `engine infer`, the demo and `engine
//! eval` read: the detector and the attention model in one safetensors file,
//! each with its metadata (`engine_model`, `engine_attention`).

use crate::attention::model::{init_params, HeadConfig};
use crate::backend::Backend;
use crate::detector::checkpoint::ModelMeta;
use crate::params::ParamSet;
use crate::weights::{assign_strict, read, write, StoreDtype, TensorFile};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

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
