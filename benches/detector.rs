//! Detector throughput: the five ResNet-50 convolution shapes of the GPU
//! notes (forward, data gradient, weight gradient) and whole RetinaNet /
//! ResNet-50 training and inference steps. On CUDA at the reference sizes
//! (512x512; batch 16 for convolutions and ResNet-50, 8 for RetinaNet, as
//! ../shared/reference/pytorch_anchors.py); on the CPU at small sizes
//! (RetinaNet 128x128, batch 4; convolutions at batch 1, 1/4 resolution).
//! `ENGINE_BENCH_FULL=1` runs the CPU at the reference sizes too. CUDA runs
//! twice: full f32 (`cuda`) and with convolutions on TF32 tensor cores
//! (`cuda-tf32`, `--tf32`). Images stay on the device, as in the PyTorch
//! benchmark.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::autograd::{Graph, Tensor};
use engine::backend::prelude::*;
use engine::backend::Conv2d;
use engine::nn::retinanet::{anchors, forward, init_params, losses, RetinaConfig, Target};
use engine::nn::{resnet, update_running_stats, BnMode, FrozenBn, Net};
use engine::optim::Optimizer;
use engine::rng::Rng;
use engine::{Cpu, Cuda};
use std::time::Duration;

/// (name, batch, c_in, size, c_out, kernel, stride, pad)
const SHAPES: [(&str, usize, usize, usize, usize, usize, usize, usize); 5] = [
    ("stem 7x7 s2 3-64 @512", 16, 3, 512, 64, 7, 2, 3),
    ("3x3 64-64 @128", 16, 64, 128, 64, 3, 1, 1),
    ("1x1 256-64 @128", 16, 256, 128, 64, 1, 1, 0),
    ("3x3 256-256 @32", 16, 256, 32, 256, 3, 1, 1),
    ("1x1 1024-2048 s2 @32", 16, 1024, 32, 2048, 1, 2, 0),
];

fn full() -> bool {
    std::env::var_os("ENGINE_BENCH_FULL").is_some()
}

fn conv_shapes<B: Backend>(c: &mut Criterion, b: &B, label: &str, scale_down: bool) {
    let mut rng = Rng::new(1);
    for (name, n, ci, size, co, k, s, pad) in SHAPES {
        let (n, size) = if scale_down { (1, size / 4) } else { (n, size) };
        let p = Conv2d::new(&[n, ci, size, size], &[co, ci, k, k], [s; 2], [pad; 2], [1; 2], 1).unwrap();
        let x = b.upload(&rng.normals(p.x_len())).unwrap();
        let w = b.upload(&rng.normals(p.w_len())).unwrap();
        let gy = b.upload(&rng.normals(p.y_len())).unwrap();
        let mut g = c.benchmark_group(format!("conv {name}"));
        g.throughput(Throughput::Elements(p.flops() as u64)).sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
        let id = if scale_down { format!("b{n} @{size}") } else { format!("b{n}") };
        g.bench_function(BenchmarkId::new(format!("{label}/forward"), &id), |it| it.iter(|| { b.conv2d(&p, &x, &w, None).unwrap(); b.synchronize().unwrap() }));
        g.bench_function(BenchmarkId::new(format!("{label}/data_grad"), &id), |it| it.iter(|| { b.conv2d_backward_data(&p, &gy, &w).unwrap(); b.synchronize().unwrap() }));
        g.bench_function(BenchmarkId::new(format!("{label}/weight_grad"), &id), |it| it.iter(|| { b.conv2d_backward_weight(&p, &x, &gy).unwrap(); b.synchronize().unwrap() }));
        g.finish();
    }
}

/// One RetinaNet SGD training step (frozen batch norm, as torchvision's
/// detection models) or one inference forward.
fn retinanet_steps<B: Backend>(c: &mut Criterion, b: &B, label: &str, n: usize, size: usize) {
    let cfg = RetinaConfig { num_classes: 2, bn: BnMode::Frozen, trainable_layers: 5, anchor_scale: 1.0 };
    let mut params = init_params(b, &cfg, 1).unwrap();
    let bn = FrozenBn::from_params(b, &params, 1e-5).unwrap();
    let x = Rng::new(2).uniforms(n * 3 * size * size, 0.0, 1.0);
    let s = size as f32 / 512.0;
    let targets: Vec<Target> = (0..n).map(|_| Target { boxes: vec![[100.0 * s, 120.0 * s, 260.0 * s, 330.0 * s]], labels: vec![1] }).collect();
    let x = Tensor::from_host(b, &x, &[n, 3, size, size]).unwrap();
    let mut opt = Optimizer::sgd(1e-3, 0.9, 0.0);
    let mut g = c.benchmark_group("retinanet r50-fpn");
    g.throughput(Throughput::Elements(n as u64)).sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(5));
    let id = format!("b{n} {size}^2");
    g.bench_function(BenchmarkId::new(format!("{label}/train step"), &id), |it| {
        it.iter(|| {
            let mut gr = Graph::new(b.clone());
            let xv = gr.input(x.clone());
            let mut net = Net::new(&mut gr, &params, Some(&bn));
            let out = forward(&mut net, &cfg, xv).unwrap();
            drop(net);
            let a = anchors(&cfg, &out, [size, size]);
            let (lc, lb) = losses(&mut gr, &out, &a, &targets, 2).unwrap();
            let total = gr.add(lc, lb).unwrap();
            let grads = gr.backward(total).unwrap();
            drop(gr);
            params.zero_grad();
            grads.accumulate_into(b, &mut params).unwrap();
            opt.step(b, &mut params).unwrap();
            b.synchronize().unwrap();
        })
    });
    g.bench_function(BenchmarkId::new(format!("{label}/inference"), &id), |it| {
        it.iter(|| {
            let mut gr = Graph::no_grad(b.clone());
            let xv = gr.input(x.clone());
            let mut net = Net::new(&mut gr, &params, Some(&bn));
            let out = forward(&mut net, &cfg, xv).unwrap();
            gr.to_host(out.cls_logits).unwrap();
        })
    });
    g.finish();
}

/// ResNet-50 body (no classifier) training step with batch norm in training
/// mode, loss = mean of C5 (PyTorch's reference: the full classifier, loss =
/// mean of the logits).
fn resnet_step<B: Backend>(c: &mut Criterion, b: &B, label: &str, n: usize, size: usize) {
    let mut params = engine::params::ParamSet::new();
    resnet::add_params(b, &mut params, "", &mut Rng::new(3), 5, true).unwrap();
    let x = Tensor::from_host(b, &Rng::new(4).normals(n * 3 * size * size), &[n, 3, size, size]).unwrap();
    let mut opt = Optimizer::sgd(1e-3, 0.9, 0.0);
    let mut g = c.benchmark_group("resnet50");
    g.throughput(Throughput::Elements(n as u64)).sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(5));
    g.bench_function(BenchmarkId::new(format!("{label}/train step"), format!("b{n} {size}^2")), |it| {
        it.iter(|| {
            let mut gr = Graph::new(b.clone());
            let xv = gr.input(x.clone());
            let mut net = Net::new(&mut gr, &params, None);
            let c5 = resnet::forward(&mut net, "", xv).unwrap()[2];
            let stats = std::mem::take(&mut net.bn_stats);
            drop(net);
            let numel = gr.value(c5).numel();
            let flat = gr.reshape(c5, &[numel]).unwrap();
            let loss = gr.mean(flat, 0).unwrap();
            let grads = gr.backward(loss).unwrap();
            drop(gr);
            params.zero_grad();
            grads.accumulate_into(b, &mut params).unwrap();
            update_running_stats(b, &mut params, stats, 0.1).unwrap();
            opt.step(b, &mut params).unwrap();
            b.synchronize().unwrap();
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let cpu = Cpu::<f32>::new();
    conv_shapes(c, &cpu, "cpu", !full());
    if full() { retinanet_steps(c, &cpu, "cpu", 8, 512) } else { retinanet_steps(c, &cpu, "cpu", 4, 128) }
    match Cuda::new(0) {
        Ok(cu) => {
            conv_shapes(c, &cu, "cuda", false);
            retinanet_steps(c, &cu, "cuda", 8, 512);
            resnet_step(c, &cu, "cuda", 16, 512);
            let tf32 = cu.with_tf32(true);
            conv_shapes(c, &tf32, "cuda-tf32", false);
            retinanet_steps(c, &tf32, "cuda-tf32", 8, 512);
            resnet_step(c, &tf32, "cuda-tf32", 16, 512);
        }
        Err(e) => eprintln!("benches: CPU only ({e:#})"),
    }
}

fn print_profile(_: &mut Criterion) {
    engine::autograd::profile::print();
}

criterion_group!(detector, benches, print_profile);
criterion_main!(detector);
