//! The localizer: the frozen detector (its weights, batch-norm constants and
//! metadata) and, once trained, the attention model. Every path from an
//! image to boxes goes through it: the detector's own boxes and scores
//! (`engine detector infer`), the ROI sets (the ROI cache of `engine train`),
//! and the attention model's prediction (`engine infer`, the demo, `engine
//! eval`). Checkpoint bundles are read and written by `bundle`.

pub mod bundle;
pub mod postprocess;
pub mod predict;
pub mod rois;

use crate::autograd::Graph;
use crate::backend::Backend;
use crate::data::image::{to_input, Gray};
use crate::localizer::bundle::{load_model, ModelMeta};
use crate::nn::retinanet::{self, Outputs};
use crate::nn::{FrozenBn, Net};
use crate::params::ParamSet;
use crate::tensor::Tensor;
use anyhow::{Context, Result};
use bundle::AttnMeta;
use postprocess::{Detections, PostProcess};
use predict::Prediction;
use rois::ImageRois;
use std::path::Path;

/// A trained attention model and what it needs besides its weights.
pub struct Attention<B: Backend> {
    pub params: ParamSet<B>,
    pub meta: AttnMeta,
}

pub struct Localizer<B: Backend> {
    pub backend: B,
    pub detector: ParamSet<B>,
    pub bn: FrozenBn<B>,
    pub meta: ModelMeta,
    pub attention: Option<Attention<B>>,
}

/// One RetinaNet forward pass over a batch of `n` images of `size` pixels;
/// its outputs stay on the backend until asked for.
pub struct Pass<B: Backend> {
    pub g: Graph<B>,
    pub out: Outputs,
    pub n: usize,
    pub size: usize,
}

impl<B: Backend> Pass<B> {
    /// The frozen detector on model inputs `x` (`[n, 3, size, size]`, as `to_input` makes them).
    pub fn run(b: &B, params: &ParamSet<B>, bn: &FrozenBn<B>, meta: &ModelMeta, x: &[f32], n: usize) -> Result<Self> {
        let size = meta.image_size;
        let mut g = Graph::no_grad(b.clone());
        let xv = g.input(Tensor::from_host(b, x, &[n, 3, size, size])?);
        let mut net = Net::new(&mut g, params, Some(bn));
        let out = retinanet::forward(&mut net, &meta.retina, xv)?;
        Ok(Pass { g, out, n, size })
    }

    /// RetinaNet's post-processing of each image; boxes in model-input pixels.
    pub fn detections(&self, pp: &PostProcess, meta: &ModelMeta) -> Result<Vec<Detections>> {
        let anchors = retinanet::anchors(&meta.retina, &self.out, [self.size, self.size]);
        let levels = retinanet::level_sizes(&self.out.grids);
        let (logits, reg) = (self.g.to_host(self.out.cls_logits)?, self.g.to_host(self.out.bbox_regression)?);
        let (a, k) = (anchors.len(), meta.retina.num_classes);
        Ok((0..self.n)
            .map(|i| pp.run(&logits[i * a * k..(i + 1) * a * k], &reg[i * a * 4..(i + 1) * a * 4], &anchors, &levels, k, [self.size; 2]))
            .collect())
    }
}

impl<B: Backend> Localizer<B> {
    /// A detector alone (frozen batch norm from its running statistics).
    pub fn new(b: &B, detector: ParamSet<B>, meta: ModelMeta) -> Result<Self> {
        let bn = FrozenBn::from_params(b, &detector, 1e-5)?;
        Ok(Localizer { backend: b.clone(), detector, bn, meta, attention: None })
    }

    pub fn with_attention(mut self, params: ParamSet<B>, meta: AttnMeta) -> Self {
        self.attention = Some(Attention { params, meta });
        self
    }

    /// The detector of `engine detector train` (model.safetensors).
    pub fn load_detector(b: &B, path: &Path) -> Result<Self> {
        let (params, meta) = load_model(b, path, None)?;
        Localizer::new(b, params, meta)
    }

    /// The detector and attention model of `engine train`.
    pub fn load_bundle(b: &B, path: &Path) -> Result<Self> {
        let (head, meta, det, det_meta) = bundle::load_bundle(b, path)?;
        Ok(Localizer::new(b, det, det_meta)?.with_attention(head, meta))
    }

    /// The attention model, or an error that says this checkpoint has none.
    pub fn attention(&self) -> Result<&Attention<B>> {
        self.attention.as_ref().context("this checkpoint holds a detector only, not an attention model (train one with `engine train`)")
    }

    /// The detector's forward pass over `imgs` (resized to the model's input).
    pub fn forward(&self, imgs: &[&Gray]) -> Result<Pass<B>> {
        let size = self.meta.image_size;
        let x: Vec<f32> = imgs.iter().flat_map(|g| to_input(g, size, &[], false).0).collect();
        Pass::run(&self.backend, &self.detector, &self.bn, &self.meta, &x, imgs.len())
    }

    /// The detector's boxes and scores of each image, in the image's own pixels.
    pub fn detections(&self, imgs: &[&Gray], pp: &PostProcess) -> Result<Vec<Detections>> {
        let size = self.meta.image_size as f32;
        let mut dets = self.forward(imgs)?.detections(pp, &self.meta)?;
        for (d, img) in dets.iter_mut().zip(imgs) {
            let (sx, sy) = (img.width as f32 / size, img.height as f32 / size);
            d.boxes.iter_mut().for_each(|b| *b = [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]);
        }
        Ok(dets)
    }

    /// Both ROI sets (top-N and bottom-N) of each `(id, image)`.
    pub fn rois(&self, imgs: &[(&str, &Gray)], top_n: usize) -> Result<Vec<ImageRois>> {
        let grays: Vec<&Gray> = imgs.iter().map(|(_, g)| *g).collect();
        let pass = self.forward(&grays)?;
        rois::select(&self.backend, &pass, &self.meta, imgs, top_n)
    }

    /// The attention model's prediction from ROI sets of its own size.
    pub fn predict(&self, rois: &[ImageRois], iou: f32, max_boxes: usize) -> Result<Vec<Prediction>> {
        let att = self.attention()?;
        predict::predict(&self.backend, &att.params, &att.meta, rois, iou, max_boxes)
    }

    /// From the image alone: ROI sets, then the attention model's prediction.
    pub fn locate(&self, imgs: &[(&str, &Gray)], iou: f32, max_boxes: usize) -> Result<(Vec<ImageRois>, Vec<Prediction>)> {
        let rois = self.rois(imgs, self.attention()?.meta.top_n)?;
        let preds = self.predict(&rois, iou, max_boxes)?;
        Ok((rois, preds))
    }
}
