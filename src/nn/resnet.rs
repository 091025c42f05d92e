//! ResNet-50 (torchvision v1.5: stride on the 3x3 of each bottleneck) as the
//! detector's body, returning C3, C4, C5 (layer2..layer4). Parameter names
//! are torchvision's under a prefix (e.g. `backbone.body.`).

use super::{add, kaiming_normal_fan_out, Net};
use crate::autograd::Var;
use crate::backend::Backend;
use crate::params::ParamSet;
use crate::rng::Rng;
use anyhow::Result;

/// (layer, blocks, planes, stride) of ResNet-50.
pub const LAYERS: [(usize, usize, usize, usize); 4] = [(1, 3, 64, 1), (2, 4, 128, 2), (3, 6, 256, 2), (4, 3, 512, 2)];

/// Every parameter and buffer of ResNet-50 (no fc), initialized as torchvision
/// does (convolutions kaiming-normal fan-out, batch norm weight 1, bias 0,
/// running statistics 0 / 1). `trainable_layers` (0..=5) counts from layer4
/// down, as torchvision's `trainable_layers`; batch norm tensors train only
/// when `bn_trainable`.
pub fn add_params<B: Backend>(b: &B, params: &mut ParamSet<B>, prefix: &str, rng: &mut Rng, trainable_layers: usize, bn_trainable: bool) -> Result<()> {
    // torchvision: layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    let trains = |layer: usize| match layer {
        0 => trainable_layers >= 5,
        l => trainable_layers > 4 - l,
    };
    let mut conv = |params: &mut ParamSet<B>, name: &str, shape: [usize; 4], train: bool| {
        add(b, params, &format!("{prefix}{name}.weight"), &shape, kaiming_normal_fan_out(rng, &shape), train)
    };
    let bn = |params: &mut ParamSet<B>, name: &str, c: usize, train: bool| -> Result<()> {
        add(b, params, &format!("{prefix}{name}.weight"), &[c], vec![1.0; c], train && bn_trainable)?;
        add(b, params, &format!("{prefix}{name}.bias"), &[c], vec![0.0; c], train && bn_trainable)?;
        add(b, params, &format!("{prefix}{name}.running_mean"), &[c], vec![0.0; c], false)?;
        add(b, params, &format!("{prefix}{name}.running_var"), &[c], vec![1.0; c], false)
    };
    conv(params, "conv1", [64, 3, 7, 7], trains(0))?;
    bn(params, "bn1", 64, trains(0))?;
    let mut inplanes = 64;
    for (layer, blocks, planes, _) in LAYERS {
        let t = trains(layer);
        for i in 0..blocks {
            let p = format!("layer{layer}.{i}.");
            conv(params, &format!("{p}conv1"), [planes, inplanes, 1, 1], t)?;
            bn(params, &format!("{p}bn1"), planes, t)?;
            conv(params, &format!("{p}conv2"), [planes, planes, 3, 3], t)?;
            bn(params, &format!("{p}bn2"), planes, t)?;
            conv(params, &format!("{p}conv3"), [planes * 4, planes, 1, 1], t)?;
            bn(params, &format!("{p}bn3"), planes * 4, t)?;
            if i == 0 {
                conv(params, &format!("{p}downsample.0"), [planes * 4, inplanes, 1, 1], t)?;
                bn(params, &format!("{p}downsample.1"), planes * 4, t)?;
            }
            inplanes = planes * 4;
        }
    }
    Ok(())
}

/// `x [N, 3, H, W]` (normalized) -> [C3, C4, C5].
pub fn forward<B: Backend>(net: &mut Net<B>, prefix: &str, x: Var) -> Result<[Var; 3]> {
    let n = |s: &str| format!("{prefix}{s}");
    let x = net.conv(&n("conv1"), x, 2, 3)?;
    let x = net.bn(&n("bn1"), x)?;
    let x = net.relu(x)?;
    let mut x = net.g.max_pool2d(x, 3, 2, 1)?;
    let mut outs = Vec::new();
    for (layer, blocks, _, stride) in LAYERS {
        for i in 0..blocks {
            let p = n(&format!("layer{layer}.{i}."));
            let s = if i == 0 { stride } else { 1 };
            let mut out = net.conv(&format!("{p}conv1"), x, 1, 0)?;
            out = net.bn(&format!("{p}bn1"), out)?;
            out = net.relu(out)?;
            out = net.conv(&format!("{p}conv2"), out, s, 1)?;
            out = net.bn(&format!("{p}bn2"), out)?;
            out = net.relu(out)?;
            out = net.conv(&format!("{p}conv3"), out, 1, 0)?;
            out = net.bn(&format!("{p}bn3"), out)?;
            let identity = if i == 0 {
                let d = net.conv(&format!("{p}downsample.0"), x, s, 0)?;
                net.bn(&format!("{p}downsample.1"), d)?
            } else {
                x
            };
            let sum = net.g.add(out, identity)?;
            x = net.relu(sum)?;
        }
        if layer >= 2 {
            outs.push(x);
        }
    }
    Ok([outs[0], outs[1], outs[2]])
}
