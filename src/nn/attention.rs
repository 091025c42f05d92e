//! The cross-attention localization model (SPEC 3.9 and 4), exactly as
//! `../shared/reference/paper_head.py` (literal variant and defaults there),
//! with the SCAN-consistent variant, the temperatures, the margin, the sizes
//! and the ablation without the classification loss as settings.
//!
//! Shapes: B samples, N ROIs (positive set), Nn (negative set), M attribute
//! slots (padded, `mask` marks the valid ones), d joint size, K attributes.
//!   phi = W1 r + W2 [LN(Wg g) | LN(Ws s)]                 [B, N, d]
//!   alpha = softmax_i(wa . tanh(Va phi))                   [B, N]
//!   logits = C2 relu(C1 sum_i alpha_i phi_i)               [B, K]
//!   (S_roi, S_text) = cross-attention(phi, alpha, m, mask) [B], [B]
//!   L = mean_b [beta - S_roi(I,T) + S_roi(In,T)]_+ + [beta - S_text(I,T) + S_text(I,Tn)]_+  (+ BCE)

use crate::autograd::{Graph, Var};
use crate::tensor::Tensor;
use crate::backend::Backend;
use crate::params::ParamSet;
use crate::rng::Rng;
use anyhow::{ensure, Result};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Variant {
    /// As printed in the paper: a softmax over attributes of z normalised over ROIs; b the reverse.
    Literal,
    /// SCAN's convention: a softmax over ROIs of z normalised over attributes; b the reverse.
    Scan,
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HeadConfig {
    pub r_dim: usize,
    pub d: usize,
    pub geo: usize,
    pub att_hidden: usize,
    pub cls_hidden: usize,
    pub k: usize,
    pub lambda_a: f32,
    pub lambda_b: f32,
    pub beta: f32,
    pub slope: f32,
    pub variant: Variant,
    pub with_classification: bool,
    /// Dropout on the classifier's hidden layer while training (SPEC 4.2
    /// proposes 0.2; the reference has none: 0).
    #[serde(default)]
    pub dropout: f32,
    /// Ablation: phi without the box coordinates (g = 0 for every ROI).
    #[serde(default)]
    pub no_geometry: bool,
}

impl Default for HeadConfig {
    fn default() -> Self {
        HeadConfig { r_dim: 256, d: 200, geo: 64, att_hidden: 128, cls_hidden: 128, k: 22, lambda_a: 4.0, lambda_b: 9.0, beta: 0.8, slope: 0.1, variant: Variant::Literal, with_classification: true, dropout: 0.0, no_geometry: false }
    }
}

/// (name, [out, in], has bias) of every linear layer, and the two layer norms.
fn layers(c: &HeadConfig) -> Vec<(&'static str, [usize; 2], bool)> {
    vec![
        ("W1", [c.d, c.r_dim], true), ("Wg", [c.geo, 4], true), ("Ws", [c.geo, 1], true), ("W2", [c.d, 2 * c.geo], false),
        ("Va", [c.att_hidden, c.d], true), ("wa", [1, c.att_hidden], false), ("C1", [c.cls_hidden, c.d], true), ("C2", [c.k, c.cls_hidden], true),
    ]
}

/// Parameters with the reference's names: Xavier-uniform weights, zero
/// biases, layer norms at (1, 0).
pub fn init_params<B: Backend>(b: &B, c: &HeadConfig, seed: u64) -> Result<ParamSet<B>> {
    let mut rng = Rng::new(seed);
    let mut p = ParamSet::new();
    for (name, [o, i], bias) in layers(c) {
        let bound = (6.0 / (o + i) as f64).sqrt();
        p.add(&format!("{name}.weight"), Tensor::from_host(b, &rng.uniforms(o * i, -bound, bound), &[o, i])?)?;
        if bias {
            p.add(&format!("{name}.bias"), Tensor::from_host(b, &vec![0.0; o], &[o])?)?;
        }
    }
    for ln in ["ln_g", "ln_s"] {
        p.add(&format!("{ln}.weight"), Tensor::from_host(b, &vec![1.0; c.geo], &[c.geo])?)?;
        p.add(&format!("{ln}.bias"), Tensor::from_host(b, &vec![0.0; c.geo], &[c.geo])?)?;
    }
    Ok(p)
}

/// The model on a tape: parameters become leaves once per graph.
pub struct Head<'a, B: Backend> {
    pub cfg: HeadConfig,
    pub params: &'a ParamSet<B>,
    /// Training mode: the seed of this step's dropout mask (None: evaluation).
    pub dropout_seed: Option<u64>,
}

/// One set of ROIs: features `[B, N, r_dim]`, boxes `[B, N, 4]` in [0, 1], scores `[B, N, 1]`.
#[derive(Clone, Copy)]
pub struct Rois {
    pub r: Var,
    pub g: Var,
    pub s: Var,
}

/// Attributes of a batch: embeddings `[B, M, d]` and the valid-slot mask.
pub struct Attributes<B: Backend> {
    pub m: Var,
    /// `[B, M]`, 1 for valid slots
    pub mask: Vec<f32>,
    pub shape: [usize; 2],
    _b: std::marker::PhantomData<B>,
}

impl<B: Backend> Attributes<B> {
    pub fn new(m: Var, mask: Vec<f32>, batch: usize, slots: usize) -> Self {
        Attributes { m, mask, shape: [batch, slots], _b: std::marker::PhantomData }
    }
}

impl<'a, B: Backend> Head<'a, B> {
    /// The model in evaluation mode.
    pub fn new(cfg: HeadConfig, params: &'a ParamSet<B>) -> Self {
        Head { cfg, params, dropout_seed: None }
    }

    /// The model in training mode, dropout drawn from `seed`.
    pub fn training(cfg: HeadConfig, params: &'a ParamSet<B>, seed: u64) -> Self {
        Head { cfg, params, dropout_seed: Some(seed) }
    }

    /// Inverted dropout: each element kept with probability 1 - p and scaled by 1 / (1 - p).
    fn dropout(&self, g: &mut Graph<B>, x: Var) -> Result<Var> {
        let p = self.cfg.dropout;
        let Some(seed) = self.dropout_seed.filter(|_| p > 0.0) else { return Ok(x) };
        ensure!(p < 1.0, "dropout {p} must be below 1");
        let shape = g.shape(x).to_vec();
        let mut rng = Rng::new(seed);
        let keep = 1.0 / (1.0 - p);
        let mask: Vec<f32> = (0..shape.iter().product::<usize>()).map(|_| if rng.uniform() < p as f64 { 0.0 } else { keep }).collect();
        let m = g.input(Tensor::from_host(&g.b, &mask, &shape)?);
        g.mul(x, m)
    }

    fn lin(&self, g: &mut Graph<B>, name: &str, x: Var) -> Result<Var> {
        let w = g.param_named(self.params, &format!("{name}.weight"))?;
        let b = match self.params.index(&format!("{name}.bias")) {
            Ok(i) => Some(g.param(self.params, i)),
            Err(_) => None,
        };
        g.linear(x, w, b)
    }

    fn ln(&self, g: &mut Graph<B>, name: &str, x: Var) -> Result<Var> {
        let w = g.param_named(self.params, &format!("{name}.weight"))?;
        let b = g.param_named(self.params, &format!("{name}.bias"))?;
        g.layer_norm(x, w, b, 1e-5)
    }

    /// phi = W1 r + W2 [LN(Wg g) | LN(Ws s)]
    pub fn phi(&self, g: &mut Graph<B>, rois: Rois) -> Result<Var> {
        let a = self.lin(g, "W1", rois.r)?;
        let geometry = if self.cfg.no_geometry {
            let shape = g.shape(rois.g).to_vec();
            g.input(Tensor::from_host(&g.b, &vec![0.0; shape.iter().product()], &shape)?)
        } else {
            rois.g
        };
        let gg = self.lin(g, "Wg", geometry)?;
        let gg = self.ln(g, "ln_g", gg)?;
        let ss = self.lin(g, "Ws", rois.s)?;
        let ss = self.ln(g, "ln_s", ss)?;
        let cat = g.concat(&[gg, ss], -1)?;
        let b = self.lin(g, "W2", cat)?;
        g.add(a, b)
    }

    /// alpha = softmax over the ROIs of wa . tanh(Va phi + b)   [B, N]
    pub fn alpha(&self, g: &mut Graph<B>, phi: Var) -> Result<Var> {
        let h = self.lin(g, "Va", phi)?;
        let h = g.tanh(h)?;
        let e = self.lin(g, "wa", h)?;
        let s = g.shape(e).to_vec();
        let e = g.reshape(e, &s[..2])?;
        g.softmax(e, 1, 1.0, None)
    }

    /// Attribute logits from v = sum_i alpha_i phi_i.   [B, K]
    pub fn classify(&self, g: &mut Graph<B>, phi: Var, alpha: Var) -> Result<Var> {
        let s = g.shape(alpha).to_vec();
        let a3 = g.reshape(alpha, &[s[0], s[1], 1])?;
        let w = g.mul(a3, phi)?;
        let v = g.sum(w, 1)?;
        let h = self.lin(g, "C1", v)?;
        let h = g.relu(h)?;
        let h = self.dropout(g, h)?;
        self.lin(g, "C2", h)
    }

    /// (S_roi, S_text), each `[B]`, composed from single ops (the readable
    /// form; `attention::fused` computes the same in a few kernels).
    pub fn similarity(&self, g: &mut Graph<B>, phi: Var, alpha: Var, t: &Attributes<B>) -> Result<(Var, Var)> {
        let c = &self.cfg;
        let [bsz, m] = t.shape;
        let n = g.shape(phi)[1];
        let b = g.b.clone();
        // s_ij = cos(phi_i, m_j)
        let pn = g.l2_normalize(phi, -1, 1e-8)?;
        let mn = g.l2_normalize(t.m, -1, 1e-8)?;
        let s = g.matmul(pn, mn, false, true)?; // [B, N, M]
        let z = g.leaky_relu(s, c.slope)?;
        let mask3 = g.input(Tensor::from_host(&b, &t.mask, &[bsz, 1, m])?);
        let z = g.mul(z, mask3)?;
        let full_mask: Vec<f32> = (0..bsz).flat_map(|i| (0..n).flat_map(move |_| (0..m).map(move |j| (i, j)))).map(|(i, j)| t.mask[i * m + j]).collect();
        let full_mask = Tensor::from_host(&b, &full_mask, &[bsz, n, m])?;
        // literal: a over attributes of z normalised over ROIs, b over ROIs of z normalised over attributes
        let (norm_a, soft_a, norm_b, soft_b) = match c.variant {
            Variant::Literal => (1, 2, 2, 1),
            Variant::Scan => (2, 1, 1, 2),
        };
        let za = g.l2_normalize(z, norm_a, 1e-8)?;
        let zb = g.l2_normalize(z, norm_b, 1e-8)?;
        let a = g.softmax(za, soft_a, c.lambda_a, if soft_a == 2 { Some(&full_mask) } else { None })?;
        let bb = g.softmax(zb, soft_b, c.lambda_b, if soft_b == 2 { Some(&full_mask) } else { None })?;
        let bb = g.mul(bb, mask3)?;
        // A_j = sum_i alpha_i a_ij phi_i ; B_i = sum_j b_ij m_j
        let al3 = g.reshape(alpha, &[bsz, n, 1])?;
        let w = g.mul(a, al3)?;
        let big_a = g.matmul(w, phi, true, false)?; // [B, M, d]
        let big_b = g.matmul(bb, t.m, false, false)?; // [B, N, d]
        let r_text = g.cosine(big_a, t.m, -1, 1e-8)?; // [B, M]
        let r_roi = g.cosine(big_b, phi, -1, 1e-8)?; // [B, N]
        let mask2 = g.input(Tensor::from_host(&b, &t.mask, &[bsz, m])?);
        let rt = g.mul(r_text, mask2)?;
        let rt = g.sum(rt, 1)?;
        let inv: Vec<f32> = (0..bsz).map(|i| 1.0 / t.mask[i * m..(i + 1) * m].iter().sum::<f32>().max(1.0)).collect();
        let inv = g.input(Tensor::from_host(&b, &inv, &[bsz])?);
        let s_text = g.mul(rt, inv)?;
        let s_roi = g.mean(r_roi, 1)?;
        Ok((s_roi, s_text))
    }
}

/// One training batch on the tape.
pub struct Batch<B: Backend> {
    pub pos: Rois,
    pub neg: Rois,
    pub t: Attributes<B>,
    /// negative attributes `[B, M, d]` (same mask)
    pub tn: Var,
    /// multi-hot targets `[B, K]`
    pub y: Var,
}

/// What a loss evaluation leaves for inspection and logging.
pub struct LossParts {
    pub total: Var,
    pub triplet: Var,
    pub bce: Option<Var>,
    pub phi: Var,
    pub alpha: Var,
    pub logits: Var,
    pub s_roi: Var,
    pub s_text: Var,
}

/// How the similarity is computed: op by op (reference) or fused kernels.
pub type SimilarityFn<'f, B> = dyn Fn(&Head<B>, &mut Graph<B>, Var, Var, &Attributes<B>, Var) -> Result<(Var, Var)> + 'f;

/// The training loss of `reference.forward`: mean triplet hinge (+ BCE).
pub fn loss<B: Backend>(head: &Head<B>, g: &mut Graph<B>, batch: &Batch<B>, sim: &SimilarityFn<B>) -> Result<LossParts> {
    let c = &head.cfg;
    let phi = head.phi(g, batch.pos)?;
    let alpha = head.alpha(g, phi)?;
    let phin = head.phi(g, batch.neg)?;
    let alphan = head.alpha(g, phin)?;
    let (s_roi, s_text) = sim(head, g, phi, alpha, &batch.t, batch.t.m)?;
    let (s_roi_n, _) = sim(head, g, phin, alphan, &batch.t, batch.t.m)?;
    let (_, s_text_n) = sim(head, g, phi, alpha, &batch.t, batch.tn)?;
    let bsz = g.shape(s_roi)[0];
    let cols: Vec<Var> = [s_roi, s_roi_n, s_text, s_text_n].iter().map(|&v| g.reshape(v, &[bsz, 1])).collect::<Result<_>>()?;
    let x = g.concat(&cols, 1)?;
    let trip = g.triplet_hinge(x, c.beta)?;
    let triplet = g.scale(trip, 1.0 / bsz as f32)?;
    let logits = head.classify(g, phi, alpha)?;
    ensure!(g.shape(logits) == g.shape(batch.y), "targets {:?} for logits {:?}", g.shape(batch.y), g.shape(logits));
    let (total, bce) = if c.with_classification {
        let bce = g.bce_with_logits(logits, batch.y)?;
        (g.add(triplet, bce)?, Some(bce))
    } else {
        (triplet, None)
    };
    Ok(LossParts { total, triplet, bce, phi, alpha, logits, s_roi, s_text })
}

/// The op-by-op similarity (the readable reference).
pub fn similarity_ops<B: Backend>(head: &Head<B>, g: &mut Graph<B>, phi: Var, alpha: Var, t: &Attributes<B>, m: Var) -> Result<(Var, Var)> {
    let t2 = Attributes::new(m, t.mask.clone(), t.shape[0], t.shape[1]);
    head.similarity(g, phi, alpha, &t2)
}

/// Image-only inference: alpha over the ROIs and attribute probabilities.
pub fn infer<B: Backend>(head: &Head<B>, g: &mut Graph<B>, rois: Rois) -> Result<(Var, Var)> {
    let phi = head.phi(g, rois)?;
    let alpha = head.alpha(g, phi)?;
    let logits = head.classify(g, phi, alpha)?;
    let probs = g.sigmoid(logits)?;
    Ok((alpha, probs))
}

/// The fused similarity (a few kernels on CUDA; the SCAN variant falls back
/// to the op-by-op form).
pub fn similarity_fused<B: Backend>(head: &Head<B>, g: &mut Graph<B>, phi: Var, alpha: Var, t: &Attributes<B>, m: Var) -> Result<(Var, Var)> {
    let c = &head.cfg;
    if c.variant != Variant::Literal {
        return similarity_ops(head, g, phi, alpha, t, m);
    }
    let [bsz, slots] = t.shape;
    let mask = Tensor::from_host(&g.b, &t.mask, &[bsz, slots])?;
    let out = g.cross_attention(phi, alpha, m, &mask, c.lambda_a, c.lambda_b, c.slope)?;
    let s_roi = g.slice(out, 0, 0, 1)?;
    let s_text = g.slice(out, 0, 1, 1)?;
    Ok((g.reshape(s_roi, &[bsz])?, g.reshape(s_text, &[bsz])?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cpu;

    /// Attribute logits of 3 samples with 5 ROIs, from `head`.
    fn logits(head: &Head<Cpu>, b: &Cpu) -> Vec<f32> {
        let mut rng = Rng::new(3);
        let mut g = Graph::no_grad(b.clone());
        let c = head.cfg;
        let mut input = |n: usize, shape: &[usize]| g.input(Tensor::from_host(b, &rng.uniforms(n, 0.0, 1.0), shape).unwrap());
        let (r, gg, s) = (input(15 * c.r_dim, &[3, 5, c.r_dim]), input(60, &[3, 5, 4]), input(15, &[3, 5, 1]));
        let phi = head.phi(&mut g, Rois { r, g: gg, s }).unwrap();
        let alpha = head.alpha(&mut g, phi).unwrap();
        let l = head.classify(&mut g, phi, alpha).unwrap();
        g.to_host(l).unwrap()
    }

    #[test]
    fn dropout_acts_only_in_training_and_is_seeded() {
        let b = Cpu::<f32>::new();
        let cfg = HeadConfig { r_dim: 8, d: 6, geo: 4, att_hidden: 5, cls_hidden: 64, k: 3, dropout: 0.5, ..Default::default() };
        let params = init_params(&b, &cfg, 1).unwrap();
        let eval = logits(&Head::new(cfg, &params), &b);
        let off = logits(&Head::training(HeadConfig { dropout: 0.0, ..cfg }, &params, 7), &b);
        assert_eq!(eval, off, "dropout 0 in training is the evaluation model");
        let (a, a2, c) = (logits(&Head::training(cfg, &params, 7), &b), logits(&Head::training(cfg, &params, 7), &b), logits(&Head::training(cfg, &params, 8), &b));
        assert_eq!(a, a2, "one seed, one mask");
        assert!(a != eval && a != c, "a mask changes the logits, another seed another mask");
        // inverted dropout: the logits are linear in the masked layer, so their mean over masks is the evaluation's
        let runs = 2000;
        let mut mean = vec![0.0f64; eval.len()];
        for seed in 0..runs {
            for (m, v) in mean.iter_mut().zip(logits(&Head::training(cfg, &params, 100 + seed), &b)) {
                *m += v as f64 / runs as f64;
            }
        }
        let spread = eval.iter().map(|v| v.abs() as f64).fold(0.0, f64::max);
        for (m, e) in mean.iter().zip(&eval) {
            assert!((m - *e as f64).abs() < 0.05 * spread, "mean over masks {mean:?} vs evaluation {eval:?}");
        }
    }

    #[test]
    fn no_geometry_ignores_the_box_coordinates() {
        let b = Cpu::<f32>::new();
        let phi_of = |cfg: HeadConfig, boxes_seed: u64| {
            let params = init_params(&b, &cfg, 1).unwrap();
            let mut g = Graph::no_grad(b.clone());
            let mut rng = Rng::new(5);
            let r = g.input(Tensor::from_host(&b, &rng.uniforms(2 * 3 * cfg.r_dim, 0.0, 1.0), &[2, 3, cfg.r_dim]).unwrap());
            let s = g.input(Tensor::from_host(&b, &rng.uniforms(6, 0.0, 1.0), &[2, 3, 1]).unwrap());
            let gg = g.input(Tensor::from_host(&b, &Rng::new(boxes_seed).uniforms(24, 0.0, 1.0), &[2, 3, 4]).unwrap());
            let phi = Head::new(cfg, &params).phi(&mut g, Rois { r, g: gg, s }).unwrap();
            g.to_host(phi).unwrap()
        };
        let cfg = HeadConfig { r_dim: 8, d: 6, geo: 4, ..Default::default() };
        assert_ne!(phi_of(cfg, 1), phi_of(cfg, 2), "the reference model reads the boxes");
        let blind = HeadConfig { no_geometry: true, ..cfg };
        assert_eq!(phi_of(blind, 1), phi_of(blind, 2));
    }
}
