//! The image classifier of the CAM baselines (SPEC 5.3): ResNet-50 (names
//! as torchvision's `resnet50` with a one-output `fc`), global average
//! pooling, one logit (pneumonia vs not); and its two heatmaps over
//! layer4's grid: CAM (the class weights times the feature maps) and
//! Grad-CAM (the logit's gradients with respect to layer4, averaged per
//! channel, times the maps, ReLU), the gradient taken by the tape.

use super::{add, resnet, Net};
use crate::autograd::{Graph, Var};
use crate::backend::Backend;
use crate::params::ParamSet;
use crate::rng::Rng;
use crate::tensor::Tensor;
use anyhow::{ensure, Context, Result};

/// Channels of ResNet-50's layer4.
pub const FEATURES: usize = 2048;

/// ResNet-50 (every layer trainable) and `fc` [1, 2048], initialized as torchvision.
pub fn init_params<B: Backend>(b: &B, seed: u64) -> Result<ParamSet<B>> {
    let mut params = ParamSet::default();
    let mut rng = Rng::new(seed);
    resnet::add_params(b, &mut params, "", &mut rng, 5, true)?;
    // nn.Linear: weight and bias uniform in +-1/sqrt(fan_in)
    let bound = 1.0 / (FEATURES as f64).sqrt();
    add(b, &mut params, "fc.weight", &[1, FEATURES], rng.uniforms(FEATURES, -bound, bound), true)?;
    add(b, &mut params, "fc.bias", &[1], rng.uniforms(1, -bound, bound), true)?;
    Ok(params)
}

/// Global average pooling and `fc`: `[n, k, h, w]` -> logits `[n, 1]`.
pub fn head<B: Backend>(g: &mut Graph<B>, params: &ParamSet<B>, a: Var) -> Result<Var> {
    let s = g.shape(a).to_vec();
    ensure!(s.len() == 4, "classifier head: feature maps must be [n, k, h, w], got {s:?}");
    let flat = g.reshape(a, &[s[0], s[1], s[2] * s[3]])?;
    let pooled = g.mean(flat, 2)?;
    let (w, bias) = (g.param_named(params, "fc.weight")?, g.param_named(params, "fc.bias")?);
    g.linear(pooled, w, Some(bias))
}

/// The network on normalized images `[n, 3, H, W]`: (layer4 maps, logits `[n, 1]`).
pub fn forward<B: Backend>(net: &mut Net<B>, x: Var) -> Result<(Var, Var)> {
    let [_, _, c5] = resnet::forward(net, "", x)?;
    let logit = head(net.g, net.params, c5)?;
    Ok((c5, logit))
}

/// CAM of one image: `M(x, y) = sum_k w_k f_k(x, y)` over maps `a` `[k, h, w]`.
pub fn cam(a: &[f32], k: usize, fc_weight: &[f32]) -> Result<Vec<f32>> {
    ensure!(k > 0 && a.len() % k == 0 && fc_weight.len() == k, "CAM: {} map values and {} class weights for {k} channels", a.len(), fc_weight.len());
    let hw = a.len() / k;
    Ok((0..hw).map(|p| (0..k).map(|c| fc_weight[c] * a[c * hw + p]).sum()).collect())
}

/// Grad-CAM of one image from its layer4 maps `a` (`[1, k, h, w]`, on the
/// backend): the channel weights `alpha_k = mean_xy d logit / d a_kxy` and
/// the map `ReLU(sum_k alpha_k a_k)` `[h, w]`.
pub fn grad_cam<B: Backend>(b: &B, params: &ParamSet<B>, a: Tensor<B>) -> Result<(Vec<f64>, Vec<f64>)> {
    let s = a.shape.clone();
    ensure!(s.len() == 4 && s[0] == 1, "Grad-CAM: maps of one image [1, k, h, w], got {s:?}");
    let (k, hw) = (s[1], s[2] * s[3]);
    let maps = b.download_f64(&a.buf)?;
    let mut g = Graph::new(b.clone());
    let av = g.input_grad(a);
    let logit = head(&mut g, params, av)?;
    let loss = g.sum(logit, 0)?;
    let loss = g.reshape(loss, &[1])?;
    let mut grads = g.backward(loss)?;
    let ga = b.download_f64(&grads.take(av).context("Grad-CAM: no gradient reached layer4")?.buf)?;
    let alpha: Vec<f64> = (0..k).map(|c| ga[c * hw..(c + 1) * hw].iter().sum::<f64>() / hw as f64).collect();
    let map = (0..hw).map(|p| (0..k).map(|c| alpha[c] * maps[c * hw + p]).sum::<f64>().max(0.0)).collect();
    Ok((alpha, map))
}
