//! Shared test helpers: the engine binary, the fixture folder, error measures, and the op cases
//! that the gradient checks (CPU, f64) and the GPU parity tests (CUDA vs CPU)
//! both run.
#![allow(dead_code)]

use anyhow::Result;
use engine::autograd::{Graph, Tensor, Var};
use engine::rng::Rng;
use engine::backend::prelude::*;
use std::path::PathBuf;
use std::process::Command;

/// The engine binary on the CPU, as a user runs it.
pub fn engine() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_engine"));
    c.arg("--device").arg("cpu");
    c
}

/// Runs `c`, asserts it succeeded; (stdout, stderr).
pub fn ok(c: &mut Command) -> (String, String) {
    let o = c.output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string());
    assert!(o.status.success(), "failed: {c:?}\n{err}");
    (out, err)
}

/// `ENGINE_FIXTURES`, default `../shared/fixtures/torchvision`; `None` (with a
/// message) when the folder is absent, so the fixture tests skip.
pub fn fixtures_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ENGINE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/torchvision"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: fixture folder {} not found (set ENGINE_FIXTURES)", dir.display());
        None
    }
}

/// ‖got − want‖ / ‖want‖ (absolute when `want` is all zeros); NaN → infinity.
pub fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    let diff: f64 = got.iter().zip(want).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>().sqrt();
    let norm: f64 = want.iter().map(|&b| (b as f64).powi(2)).sum::<f64>().sqrt();
    let e = if norm > 0.0 { diff / norm } else { diff };
    if e.is_nan() || got.iter().any(|v| v.is_nan()) { f64::INFINITY } else { e }
}

pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    let e = rel_err(got, want);
    assert!(e < tol, "{what}: relative error {e:.3e} is over {tol:.0e}\n got[..4]  {:?}\n want[..4] {:?}",
        &got[..got.len().min(4)], &want[..want.len().min(4)]);
}

/// One op under test: how to make its inputs and how to apply it.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: &'static str,
    /// Input shapes; all inputs are differentiable unless listed in `constant`.
    pub shapes: Vec<Vec<usize>>,
    pub constant: Vec<usize>,
    pub op: Op,
}

#[derive(Clone, Debug)]
pub enum Op {
    Add,
    Mul,
    Scale(f32),
    Relu,
    LeakyRelu(f32),
    Sigmoid,
    Tanh,
    Sum(isize),
    Mean(isize),
    /// axis, scale, mask: drop every third entry
    Softmax(isize, f32, bool),
    LayerNorm,
    L2Normalize(isize),
    Cosine(isize),
    /// inputs: logits, targets in [0, 1]
    BceWithLogits,
    TripletHinge(f32),
    Matmul(bool, bool),
    /// inputs: x, weight, bias
    Linear,
    /// stride, padding, dilation, groups; inputs x, w (and bias)
    Conv2d(usize, usize, usize, usize),
    /// inputs: x, scale, shift (constants)
    ChannelAffine,
    /// inputs: x, gamma, beta
    BatchNorm,
    /// window, stride, padding
    MaxPool(usize, usize, usize),
    Upsample([usize; 2]),
    Permute(Vec<usize>),
    /// axis; all inputs concatenated
    Concat(isize),
    /// alpha, gamma; inputs logits, targets, weights
    Focal(f32, f32),
    /// beta (0 = L1); inputs x, targets, weights
    BoxLoss(f32),
    /// lambda_a, lambda_b; inputs phi [B,N,d], alpha logits [B,N], m [B,M,d], mask [B,M]
    CrossAttention(f32, f32),
    /// axis, start, len
    Slice(isize, usize, usize),
}

fn c(name: &'static str, shapes: &[&[usize]], op: Op) -> Case {
    Case { name, shapes: shapes.iter().map(|s| s.to_vec()).collect(), constant: vec![], op }
}

/// Every op of the engine foundation, with broadcasting, batching and every
/// transpose of the matrix product.
pub fn cases() -> Vec<Case> {
    let mut v = vec![
        c("add", &[&[3, 4, 5], &[3, 4, 5]], Op::Add),
        c("add_broadcast_row", &[&[6, 5], &[5]], Op::Add),
        c("add_broadcast_both", &[&[3, 1, 5], &[4, 1]], Op::Add),
        c("mul", &[&[4, 7], &[4, 7]], Op::Mul),
        c("mul_broadcast", &[&[2, 3, 5], &[2, 3, 1]], Op::Mul),
        c("scale", &[&[5, 6]], Op::Scale(-1.7)),
        c("relu", &[&[7, 9]], Op::Relu),
        c("leaky_relu", &[&[7, 9]], Op::LeakyRelu(0.1)),
        c("sigmoid", &[&[7, 9]], Op::Sigmoid),
        c("tanh", &[&[7, 9]], Op::Tanh),
        c("sum_last", &[&[3, 4, 5]], Op::Sum(-1)),
        c("sum_middle", &[&[3, 4, 5]], Op::Sum(1)),
        c("mean_first", &[&[3, 4, 5]], Op::Mean(0)),
        c("softmax_last", &[&[3, 4, 7]], Op::Softmax(-1, 1.0, false)),
        c("softmax_middle_scaled", &[&[3, 6, 5]], Op::Softmax(1, 4.0, false)),
        c("softmax_masked", &[&[2, 5, 6]], Op::Softmax(2, 9.0, true)),
        c("softmax_long", &[&[2, 300]], Op::Softmax(1, 1.0, false)),
        c("layer_norm", &[&[6, 64], &[64], &[64]], Op::LayerNorm),
        c("layer_norm_narrow", &[&[5, 3, 10], &[10], &[10]], Op::LayerNorm),
        c("layer_norm_many_rows", &[&[700, 64], &[64], &[64]], Op::LayerNorm),
        c("l2_normalize_last", &[&[4, 5, 6]], Op::L2Normalize(-1)),
        c("l2_normalize_middle", &[&[4, 5, 6]], Op::L2Normalize(1)),
        c("cosine_last", &[&[3, 5, 8], &[3, 5, 8]], Op::Cosine(-1)),
        c("cosine_first", &[&[40, 3], &[40, 3]], Op::Cosine(0)),
        Case { constant: vec![1], ..c("bce_with_logits", &[&[7, 22], &[7, 22]], Op::BceWithLogits) },
        c("triplet_hinge", &[&[9, 4]], Op::TripletHinge(0.8)),
        c("matmul_nn", &[&[5, 7], &[7, 3]], Op::Matmul(false, false)),
        c("matmul_nt", &[&[5, 7], &[3, 7]], Op::Matmul(false, true)),
        c("matmul_tn", &[&[7, 5], &[7, 3]], Op::Matmul(true, false)),
        c("matmul_tt", &[&[7, 5], &[3, 7]], Op::Matmul(true, true)),
        c("matmul_batched", &[&[3, 4, 6], &[3, 6, 5]], Op::Matmul(false, false)),
        c("matmul_batched_tn", &[&[2, 6, 4], &[2, 5, 6]], Op::Matmul(true, true)),
        c("matmul_shared_b", &[&[3, 4, 6], &[6, 5]], Op::Matmul(false, false)),
        c("matmul_shared_b_t", &[&[3, 4, 6], &[5, 6]], Op::Matmul(false, true)),
        c("linear", &[&[2, 5, 9], &[6, 9], &[6]], Op::Linear),
    ];
    v.extend([
        c("conv_stem_7x7_s2", &[&[2, 3, 23, 19], &[8, 3, 7, 7]], Op::Conv2d(2, 3, 1, 1)),
        c("conv_3x3_bias", &[&[2, 6, 9, 9], &[5, 6, 3, 3], &[5]], Op::Conv2d(1, 1, 1, 1)),
        c("conv_3x3_s2_bias", &[&[2, 4, 9, 8], &[6, 4, 3, 3], &[6]], Op::Conv2d(2, 1, 1, 1)),
        c("conv_1x1_s2", &[&[1, 8, 10, 10], &[4, 8, 1, 1]], Op::Conv2d(2, 0, 1, 1)),
        c("conv_dilated", &[&[1, 3, 12, 12], &[4, 3, 3, 3]], Op::Conv2d(1, 2, 2, 1)),
        c("conv_grouped", &[&[1, 8, 7, 7], &[8, 2, 3, 3]], Op::Conv2d(1, 1, 1, 4)),
        c("conv_tiles", &[&[2, 20, 14, 14], &[140, 20, 3, 3], &[140]], Op::Conv2d(1, 1, 1, 1)),
        // 64 output channels: 64-row tiles forward and for the weight gradient, 128-row for the data gradient
        c("conv_m64", &[&[2, 72, 10, 10], &[64, 72, 3, 3]], Op::Conv2d(1, 1, 1, 1)),
        Case { constant: vec![1, 2], ..c("frozen_bn", &[&[2, 5, 4, 3], &[5], &[5]], Op::ChannelAffine) },
        c("batch_norm_train", &[&[4, 3, 5, 2], &[3], &[3]], Op::BatchNorm),
        c("max_pool_3x3_s2", &[&[2, 3, 13, 11]], Op::MaxPool(3, 2, 1)),
        c("max_pool_2x2", &[&[1, 2, 8, 6]], Op::MaxPool(2, 2, 0)),
        c("upsample_x2", &[&[2, 3, 5, 3]], Op::Upsample([10, 6])),
        c("upsample_odd", &[&[2, 3, 5, 3]], Op::Upsample([9, 7])),
        c("permute_nchw_nhwc", &[&[2, 6, 3, 4]], Op::Permute(vec![0, 2, 3, 1])),
        c("concat_axis1", &[&[2, 3, 4], &[2, 5, 4], &[2, 1, 4]], Op::Concat(1)),
        Case { constant: vec![1, 2], ..c("focal_loss", &[&[7, 5], &[7, 5], &[7, 5]], Op::Focal(0.25, 2.0)) },
        Case { constant: vec![1, 2], ..c("l1_loss", &[&[9, 4], &[9, 4], &[9, 4]], Op::BoxLoss(0.0)) },
        Case { constant: vec![1, 2], ..c("smooth_l1_loss", &[&[9, 4], &[9, 4], &[9, 4]], Op::BoxLoss(1.0 / 9.0)) },
        c("slice_axis1", &[&[3, 7, 4]], Op::Slice(1, 2, 3)),
        Case { constant: vec![2, 3], ..c("cross_attention", &[&[3, 12, 20], &[3, 12], &[3, 5, 20], &[3, 5]], Op::CrossAttention(4.0, 9.0)) },
        Case { constant: vec![2, 3], ..c("cross_attention_wide", &[&[2, 70, 200], &[2, 70], &[2, 22, 200], &[2, 22]], Op::CrossAttention(4.0, 9.0)) },
    ]);
    // Sizes that cross the 64-wide GEMM tiles and several warps per line.
    v.push(c("matmul_tiles", &[&[130, 70], &[70, 97]], Op::Matmul(false, false)));
    v.push(c("matmul_tiles_tt", &[&[70, 130], &[97, 70]], Op::Matmul(true, true)));
    v
}

impl Case {
    /// Random inputs for this op (targets in [0, 1]; triplet scores away from
    /// the hinge's kink).
    pub fn inputs(&self, rng: &mut Rng) -> Vec<Vec<f64>> {
        self.shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let n: usize = s.iter().product();
                match (&self.op, i) {
                    (Op::BceWithLogits, 1) => (0..n).map(|_| rng.uniform()).collect(),
                    (Op::LayerNorm, 1) | (Op::BatchNorm, 1) | (Op::ChannelAffine, 1) => (0..n).map(|_| 1.0 + 0.3 * rng.normal()).collect(),
                    (Op::Focal(..), 1) => (0..n).map(|_| (rng.uniform() < 0.3) as u8 as f64).collect(),
                    (Op::Focal(..), 2) | (Op::BoxLoss(_), 2) => (0..n).map(|_| if rng.uniform() < 0.2 { 0.0 } else { rng.uniform() }).collect(),
                    (Op::CrossAttention(..), 3) => (0..n).map(|j| if j % 5 == 4 { 0.0 } else { 1.0 }).collect(),
                    (Op::CrossAttention(..), 2) => {
                        // padded slots (mask 0) hold zero vectors, as the model feeds them
                        let (slots, d) = (s[1], s[2]);
                        (0..n).map(|k| if (k / d) % slots % 5 == 4 { 0.0 } else { rng.normal() }).collect()
                    }
                    (Op::TripletHinge(_), _) => (0..n).map(|j| if j % 2 == 0 { 0.3 + rng.uniform() } else { rng.uniform() - 0.3 }).collect(),
                    _ => (0..n).map(|_| rng.normal()).collect(),
                }
            })
            .collect()
    }

    pub fn apply<B: Backend>(&self, g: &mut Graph<B>, x: &[Var]) -> Result<Var> {
        match &self.op {
            Op::Add => g.add(x[0], x[1]),
            Op::Mul => g.mul(x[0], x[1]),
            Op::Scale(c) => g.scale(x[0], *c),
            Op::Relu => g.relu(x[0]),
            Op::LeakyRelu(s) => g.leaky_relu(x[0], *s),
            Op::Sigmoid => g.sigmoid(x[0]),
            Op::Tanh => g.tanh(x[0]),
            Op::Sum(a) => g.sum(x[0], *a),
            Op::Mean(a) => g.mean(x[0], *a),
            Op::Softmax(a, s, masked) => {
                let mask = if *masked {
                    let shape = g.shape(x[0]).to_vec();
                    let n: usize = shape.iter().product();
                    let m: Vec<f32> = (0..n).map(|i| if i % 3 == 2 { 0.0 } else { 1.0 }).collect();
                    Some(Tensor::from_host(&g.b, &m, &shape)?)
                } else {
                    None
                };
                g.softmax(x[0], *a, *s, mask.as_ref())
            }
            Op::LayerNorm => g.layer_norm(x[0], x[1], x[2], 1e-5),
            Op::L2Normalize(a) => g.l2_normalize(x[0], *a, 1e-8),
            Op::Cosine(a) => g.cosine(x[0], x[1], *a, 1e-8),
            Op::BceWithLogits => g.bce_with_logits(x[0], x[1]),
            Op::TripletHinge(m) => g.triplet_hinge(x[0], *m),
            Op::Matmul(ta, tb) => g.matmul(x[0], x[1], *ta, *tb),
            Op::Linear => g.linear(x[0], x[1], Some(x[2])),
            Op::Conv2d(st, pad, dil, groups) => g.conv2d(x[0], x[1], x.get(2).copied(), *st, *pad, *dil, *groups),
            Op::ChannelAffine => {
                let (scale, shift) = (g.value(x[1]).clone(), g.value(x[2]).clone());
                g.channel_affine(x[0], &scale, &shift)
            }
            Op::BatchNorm => Ok(g.batch_norm_train(x[0], x[1], x[2], 1e-5)?.0),
            Op::MaxPool(k, st, pad) => g.max_pool2d(x[0], *k, *st, *pad),
            Op::Upsample(size) => g.upsample_nearest(x[0], *size),
            Op::Permute(perm) => g.permute(x[0], perm),
            Op::Concat(axis) => g.concat(x, *axis),
            Op::Focal(alpha, gamma) => g.focal_loss(x[0], x[1], Some(x[2]), *alpha, *gamma),
            Op::CrossAttention(la, lb) => {
                // alpha as the model makes it: a softmax over the ROIs
                let alpha = g.softmax(x[1], 1, 1.0, None)?;
                let mask = g.value(x[3]).clone();
                g.cross_attention(x[0], alpha, x[2], &mask, *la, *lb, 0.1)
            }
            Op::Slice(axis, start, len) => g.slice(x[0], *axis, *start, *len),
            Op::BoxLoss(beta) => {
                let kind = if *beta > 0.0 { engine::backend::BoxLoss::SmoothL1 { beta: *beta } } else { engine::backend::BoxLoss::L1 };
                g.box_loss(kind, x[0], x[1], Some(x[2]))
            }
        }
    }
}

/// Scalar loss `sum(y * w)` with fixed weights `w`, so every output element
/// carries a different upstream gradient.
pub fn weighted_sum<B: Backend>(g: &mut Graph<B>, y: Var, w: &[f64]) -> Result<Var> {
    let shape = g.shape(y).to_vec();
    let wt = Tensor::from_host_f64(&g.b, w, &shape)?;
    let wv = g.input(wt);
    let p = g.mul(y, wv)?;
    let n = w.len();
    let flat = g.reshape(p, &[n])?;
    g.sum(flat, 0)
}

/// Output, loss gradient weights, and the gradient of every differentiable
/// input, computed on backend `b` from host inputs.
pub struct Run {
    pub y: Vec<f64>,
    pub grads: Vec<Option<Vec<f64>>>,
}

pub fn run_case<B: Backend>(b: &B, case: &Case, inputs: &[Vec<f64>], w_seed: u64) -> Result<Run> {
    let mut g = Graph::new(b.clone());
    let vars: Vec<Var> = inputs
        .iter()
        .zip(&case.shapes)
        .enumerate()
        .map(|(i, (x, s))| {
            let t = Tensor::from_host_f64(b, x, s)?;
            Ok(if case.constant.contains(&i) { g.input(t) } else { g.input_grad(t) })
        })
        .collect::<Result<_>>()?;
    let y = case.apply(&mut g, &vars)?;
    let n = g.value(y).numel();
    let mut rng = Rng::new(w_seed);
    let w: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    let loss = weighted_sum(&mut g, y, &w)?;
    let grads = g.backward(loss)?;
    let y = b.download_f64(&g.value(y).buf)?;
    let mut out = Vec::new();
    for (i, v) in vars.iter().enumerate() {
        if case.constant.contains(&i) {
            out.push(None);
        } else {
            let t = grads.get(b, *v)?.expect("a differentiable input got no gradient");
            out.push(Some(b.download_f64(&t.buf)?));
        }
    }
    Ok(Run { y, grads: out })
}

/// The loss alone (for finite differences).
pub fn loss_of<B: Backend>(b: &B, case: &Case, inputs: &[Vec<f64>], w_seed: u64) -> Result<f64> {
    let mut g = Graph::no_grad(b.clone());
    let vars: Vec<Var> = inputs
        .iter()
        .zip(&case.shapes)
        .map(|(x, s)| Ok(g.input(Tensor::from_host_f64(b, x, s)?)))
        .collect::<Result<_>>()?;
    let y = case.apply(&mut g, &vars)?;
    let n = g.value(y).numel();
    let mut rng = Rng::new(w_seed);
    let w: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    let loss = weighted_sum(&mut g, y, &w)?;
    Ok(b.download_f64(&g.value(loss).buf)?[0])
}

pub fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}
