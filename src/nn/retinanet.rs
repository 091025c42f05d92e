//! RetinaNet with a ResNet-50 FPN backbone, exactly as torchvision's
//! `retinanet_resnet50_fpn` (v1): FPN on C3..C5 with P6/P7 from P5, shared
//! classification and regression heads (4 conv + ReLU towers), focal and L1
//! losses normalized by the number of foreground anchors, post-processing.
//! Parameter names are torchvision's state-dict names.

use super::{add, kaiming_uniform_a1, normal, resnet, BnBatchStats, BnMode, FrozenBn, Net};
use crate::autograd::{Graph, Var};
use crate::tensor::Tensor;
use crate::backend::{Backend, BoxLoss};
use crate::geometry::anchors::{anchors_for, ASPECT_RATIOS};
use crate::geometry::boxes::{BoxCoder, BoxF};
use crate::geometry::matcher::Matcher;
use crate::params::ParamSet;
use crate::rng::Rng;
use anyhow::{ensure, Result};

pub const NUM_ANCHORS: usize = 9;
pub const FOCAL_ALPHA: f32 = 0.25;
pub const FOCAL_GAMMA: f32 = 2.0;
/// Prior probability of the classification bias: b = -log((1 - pi) / pi).
pub const PRIOR: f64 = 0.01;

#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct RetinaConfig {
    pub num_classes: usize,
    pub bn: BnMode,
    pub trainable_layers: usize,
    /// Multiplies torchvision's anchor sizes (1 = torchvision; smaller for small inputs).
    #[serde(default = "one")]
    pub anchor_scale: f32,
}

fn one() -> f32 {
    1.0
}

impl Default for RetinaConfig {
    fn default() -> Self {
        RetinaConfig { num_classes: 1, bn: BnMode::Frozen, trainable_layers: 3, anchor_scale: 1.0 }
    }
}

/// Every parameter of the model, initialized as torchvision does.
pub fn init_params<B: Backend>(b: &B, cfg: &RetinaConfig, seed: u64) -> Result<ParamSet<B>> {
    let mut params = ParamSet::new();
    let mut rng = Rng::new(seed);
    resnet::add_params(b, &mut params, "backbone.body.", &mut rng, cfg.trainable_layers, cfg.bn == BnMode::Train)?;
    let fpn = "backbone.fpn.";
    for (i, c) in [512, 1024, 2048].into_iter().enumerate() {
        add(b, &mut params, &format!("{fpn}inner_blocks.{i}.0.weight"), &[256, c, 1, 1], kaiming_uniform_a1(&mut rng, &[256, c, 1, 1]), true)?;
        add(b, &mut params, &format!("{fpn}inner_blocks.{i}.0.bias"), &[256], vec![0.0; 256], true)?;
        add(b, &mut params, &format!("{fpn}layer_blocks.{i}.0.weight"), &[256, 256, 3, 3], kaiming_uniform_a1(&mut rng, &[256, 256, 3, 3]), true)?;
        add(b, &mut params, &format!("{fpn}layer_blocks.{i}.0.bias"), &[256], vec![0.0; 256], true)?;
    }
    for p in ["p6", "p7"] {
        add(b, &mut params, &format!("{fpn}extra_blocks.{p}.weight"), &[256, 256, 3, 3], kaiming_uniform_a1(&mut rng, &[256, 256, 3, 3]), true)?;
        add(b, &mut params, &format!("{fpn}extra_blocks.{p}.bias"), &[256], vec![0.0; 256], true)?;
    }
    let k = cfg.num_classes;
    for (head, last, out) in [("classification_head", "cls_logits", NUM_ANCHORS * k), ("regression_head", "bbox_reg", NUM_ANCHORS * 4)] {
        for i in 0..4 {
            add(b, &mut params, &format!("head.{head}.conv.{i}.0.weight"), &[256, 256, 3, 3], normal(&mut rng, &[256, 256, 3, 3], 0.01), true)?;
            add(b, &mut params, &format!("head.{head}.conv.{i}.0.bias"), &[256], vec![0.0; 256], true)?;
        }
        add(b, &mut params, &format!("head.{head}.{last}.weight"), &[out, 256, 3, 3], normal(&mut rng, &[out, 256, 3, 3], 0.01), true)?;
        let bias = if last == "cls_logits" { -((1.0 - PRIOR) / PRIOR).ln() as f32 } else { 0.0 };
        add(b, &mut params, &format!("head.{head}.{last}.bias"), &[out], vec![bias; out], true)?;
    }
    Ok(params)
}

/// What one forward pass gives.
pub struct Outputs {
    pub c: [Var; 3],
    /// P3..P7
    pub p: Vec<Var>,
    /// `[N, A, K]` over all levels (level, y, x, anchor)
    pub cls_logits: Var,
    /// `[N, A, 4]`
    pub bbox_regression: Var,
    /// Output of the classification tower's 4th conv + ReLU per level (ROI features)
    pub cls_tower: Vec<Var>,
    /// `[h, w]` of P3..P7
    pub grids: Vec<[usize; 2]>,
}

/// Runs one head over every level: `[N, A_l * out, H, W]` -> `[N, H W A_l, out]`, concatenated.
fn head<B: Backend>(net: &mut Net<B>, name: &str, last: &str, feats: &[Var], out: usize) -> Result<(Var, Vec<Var>)> {
    let (mut per_level, mut towers) = (Vec::new(), Vec::new());
    for &f in feats {
        let mut t = f;
        for i in 0..4 {
            t = net.conv(&format!("head.{name}.conv.{i}.0"), t, 1, 1)?;
            t = net.relu(t)?;
        }
        towers.push(t);
        let y = net.conv(&format!("head.{name}.{last}"), t, 1, 1)?;
        let s = net.g.shape(y).to_vec();
        let y = net.g.permute(y, &[0, 2, 3, 1])?;
        per_level.push(net.g.reshape(y, &[s[0], s[2] * s[3] * NUM_ANCHORS, out])?);
    }
    Ok((net.g.concat(&per_level, 1)?, towers))
}

/// The whole network on normalized images `[N, 3, H, W]`.
pub fn forward<B: Backend>(net: &mut Net<B>, cfg: &RetinaConfig, images: Var) -> Result<Outputs> {
    let c = resnet::forward(net, "backbone.body.", images)?;
    let fpn = "backbone.fpn.";
    // top-down pathway
    let mut last_inner = net.conv(&format!("{fpn}inner_blocks.2.0"), c[2], 1, 0)?;
    let mut p = vec![net.conv(&format!("{fpn}layer_blocks.2.0"), last_inner, 1, 1)?];
    for idx in [1, 0] {
        let lateral = net.conv(&format!("{fpn}inner_blocks.{idx}.0"), c[idx], 1, 0)?;
        let s = net.g.shape(lateral).to_vec();
        let top_down = net.g.upsample_nearest(last_inner, [s[2], s[3]])?;
        last_inner = net.g.add(lateral, top_down)?;
        p.insert(0, net.conv(&format!("{fpn}layer_blocks.{idx}.0"), last_inner, 1, 1)?);
    }
    let p6 = net.conv(&format!("{fpn}extra_blocks.p6"), p[2], 2, 1)?;
    let r6 = net.relu(p6)?;
    let p7 = net.conv(&format!("{fpn}extra_blocks.p7"), r6, 2, 1)?;
    p.extend([p6, p7]);
    let grids = p.iter().map(|&v| { let s = net.g.shape(v); [s[2], s[3]] }).collect();
    let (cls_logits, cls_tower) = head(net, "classification_head", "cls_logits", &p, cfg.num_classes)?;
    let (bbox_regression, _) = head(net, "regression_head", "bbox_reg", &p, 4)?;
    Ok(Outputs { c, p, cls_logits, bbox_regression, cls_tower, grids })
}

/// Ground truth of one image: boxes in input pixels and their labels (0-based).
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub boxes: Vec<BoxF>,
    pub labels: Vec<usize>,
}

/// torchvision RetinaNet losses: per image, the focal loss over anchors that
/// are not ignored and the L1 loss of foreground box regressions, each over
/// max(1, foreground anchors); then the mean over images. Returns
/// (classification, box regression) scalars on the tape.
pub fn losses<B: Backend>(g: &mut Graph<B>, out: &Outputs, anchors: &[BoxF], targets: &[Target], num_classes: usize) -> Result<(Var, Var)> {
    let n = targets.len();
    let a = anchors.len();
    ensure!(g.shape(out.cls_logits) == [n, a, num_classes], "losses: logits {:?} for {n} images, {a} anchors", g.shape(out.cls_logits));
    let (mut ct, mut cw) = (vec![0.0f32; n * a * num_classes], vec![0.0f32; n * a * num_classes]);
    let (mut bt, mut bw) = (vec![0.0f32; n * a * 4], vec![0.0f32; n * a * 4]);
    let coder = BoxCoder::default();
    for (i, t) in targets.iter().enumerate() {
        let m = Matcher::default().assign(&t.boxes, anchors);
        let fg = m.iter().filter(|&&v| v >= 0).count();
        let norm = 1.0 / (fg.max(1) as f32 * n as f32);
        for (j, &v) in m.iter().enumerate() {
            let row = (i * a + j) * num_classes;
            if v != crate::geometry::matcher::IGNORED {
                cw[row..row + num_classes].iter_mut().for_each(|w| *w = norm);
            }
            if v >= 0 {
                let gi = v as usize;
                ensure!(t.labels[gi] < num_classes, "label {} is out of range for {num_classes} classes", t.labels[gi]);
                ct[row + t.labels[gi]] = 1.0;
                let code = coder.encode(&t.boxes[gi], &anchors[j]);
                bt[(i * a + j) * 4..(i * a + j) * 4 + 4].copy_from_slice(&code);
                bw[(i * a + j) * 4..(i * a + j) * 4 + 4].iter_mut().for_each(|w| *w = norm);
            }
        }
    }
    let b = g.b.clone();
    let mut input = |data: &[f32], shape: &[usize]| -> Result<Var> { Ok(g.input(Tensor::from_host(&b, data, shape)?)) };
    let (ct, cw) = (input(&ct, &[n, a, num_classes])?, input(&cw, &[n, a, num_classes])?);
    let (bt, bw) = (input(&bt, &[n, a, 4])?, input(&bw, &[n, a, 4])?);
    let cls = g.focal_loss(out.cls_logits, ct, Some(cw), FOCAL_ALPHA, FOCAL_GAMMA)?;
    let reg = g.box_loss(BoxLoss::L1, out.bbox_regression, bt, Some(bw))?;
    Ok((cls, reg))
}

/// Anchors of one image for the pyramid of `out`.
pub fn anchors(cfg: &RetinaConfig, out: &Outputs, image_size: [usize; 2]) -> Vec<BoxF> {
    anchors_for(image_size, &out.grids, cfg.anchor_scale)
}

/// Anchors per level (for post-processing).
pub fn level_sizes(grids: &[[usize; 2]]) -> Vec<usize> {
    grids.iter().map(|g| g[0] * g[1] * ASPECT_RATIOS.len() * 3).collect()
}

/// Training-mode statistics of a forward pass (empty with frozen batch norm).
pub type BatchStats<B> = Vec<BnBatchStats<B>>;

/// Frozen batch norm tables of a model, when it runs frozen.
pub fn frozen_bn<B: Backend>(b: &B, params: &ParamSet<B>) -> Result<FrozenBn<B>> {
    FrozenBn::from_params(b, params, 1e-5)
}
