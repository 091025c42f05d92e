//! The attention model's training step (loss with its three fused
//! similarities, backward, Adam), batch 32, 22 attribute slots, d = 200, at
//! N = 100, 300 and 2000 ROIs: the shapes of
//! ../shared/reference/pytorch_anchors.py section 4, timed beside it on the
//! GPU. The CPU runs N = 100 and 300.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::nn::attention::{init_params, loss, similarity_fused, Attributes, Batch, Head, HeadConfig, Rois};
use engine::autograd::{Graph, Tensor};
use engine::backend::prelude::*;
use engine::optim::Optimizer;
use engine::params::ParamSet;
use engine::rng::Rng;
use engine::{Cpu, Cuda};
use std::time::{Duration, Instant};

struct Host {
    r: Vec<f32>, g: Vec<f32>, s: Vec<f32>, rn: Vec<f32>, gn: Vec<f32>, sn: Vec<f32>, m: Vec<f32>, mn: Vec<f32>, mask: Vec<f32>, y: Vec<f32>,
}

fn host(b: usize, n: usize, m: usize, d: usize) -> Host {
    let mut rng = Rng::new(5);
    // about 30% of the slots valid, the first always (as the PyTorch benchmark)
    let mask: Vec<f32> = (0..b * m).map(|i| if i % m == 0 || rng.uniform() > 0.7 { 1.0 } else { 0.0 }).collect();
    let emb = |rng: &mut Rng| (0..b * m * d).map(|i| if mask[i / d] > 0.0 { rng.normal() as f32 } else { 0.0 }).collect::<Vec<f32>>();
    Host {
        r: rng.normals(b * n * 256), g: rng.uniforms(b * n * 4, 0.0, 1.0), s: rng.uniforms(b * n, 0.0, 1.0),
        rn: rng.normals(b * n * 256), gn: rng.uniforms(b * n * 4, 0.0, 1.0), sn: rng.uniforms(b * n, 0.0, 1.0),
        m: emb(&mut rng), mn: emb(&mut rng), mask: mask.clone(), y: (0..b * 22).map(|_| (rng.uniform() > 0.8) as u8 as f32).collect(),
    }
}

/// Device-resident inputs of one batch, as in the PyTorch benchmark.
struct Inputs<B: Backend> {
    dev: Vec<Tensor<B>>,
    mask: Vec<f32>,
    b: usize,
    m: usize,
}

fn inputs<B: Backend>(be: &B, n: usize) -> Inputs<B> {
    let (b, m, d) = (32, 22, 200);
    let h = host(b, n, m, d);
    let t = |v: &[f32], s: &[usize]| Tensor::from_host(be, v, s).unwrap();
    let dev = vec![
        t(&h.r, &[b, n, 256]), t(&h.g, &[b, n, 4]), t(&h.s, &[b, n, 1]), t(&h.rn, &[b, n, 256]), t(&h.gn, &[b, n, 4]),
        t(&h.sn, &[b, n, 1]), t(&h.m, &[b, m, d]), t(&h.mn, &[b, m, d]), t(&h.y, &[b, 22]),
    ];
    Inputs { dev, mask: h.mask, b, m }
}

/// One training step, queued on the device (not waited for).
fn train_step<B: Backend>(be: &B, cfg: HeadConfig, params: &mut ParamSet<B>, opt: &mut Optimizer<B>, x: &Inputs<B>) {
    let head = Head::new(cfg, params);
    let mut gr = Graph::new(be.clone());
    let v: Vec<_> = x.dev.iter().map(|t| gr.input(t.clone())).collect();
    let pos = Rois { r: v[0], g: v[1], s: v[2] };
    let neg = Rois { r: v[3], g: v[4], s: v[5] };
    let (mv, tn, y) = (v[6], v[7], v[8]);
    let batch = Batch { pos, neg, t: Attributes::new(mv, x.mask.clone(), x.b, x.m), tn, y };
    let parts = loss(&head, &mut gr, &batch, &similarity_fused).unwrap();
    let grads = gr.backward(parts.total).unwrap();
    drop(gr);
    params.zero_grad();
    grads.accumulate_into(be, params).unwrap();
    opt.step(be, params).unwrap();
}

fn step<B: Backend>(c: &mut Criterion, be: &B, label: &str, n: usize) {
    let cfg = HeadConfig::default();
    let mut params = init_params(be, &cfg, 1).unwrap();
    let mut opt = Optimizer::adam(2e-4, 0.0);
    let x = inputs(be, n);
    let mut g = c.benchmark_group("attention model train step");
    g.throughput(Throughput::Elements(x.b as u64)).sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    g.bench_function(BenchmarkId::new(label, format!("b32 N={n}")), |it| {
        it.iter(|| {
            train_step(be, cfg, &mut params, &mut opt, &x);
            be.synchronize().unwrap();
        })
    });
    g.finish();
}

/// How much of a CUDA step is the host queueing work: the time until the
/// step is queued against the time until the GPU has finished it (means
/// over 50 steps). When the two are close, the host is the bottleneck.
fn host_share(be: &Cuda, n: usize) {
    let cfg = HeadConfig::default();
    let mut params = init_params(be, &cfg, 1).unwrap();
    let mut opt = Optimizer::adam(2e-4, 0.0);
    let x = inputs(be, n);
    for _ in 0..5 {
        train_step(be, cfg, &mut params, &mut opt, &x);
    }
    be.synchronize().unwrap();
    let (mut queued, mut done) = (0.0, 0.0);
    for _ in 0..50 {
        let t0 = Instant::now();
        train_step(be, cfg, &mut params, &mut opt, &x);
        queued += t0.elapsed().as_secs_f64();
        be.synchronize().unwrap();
        done += t0.elapsed().as_secs_f64();
    }
    println!("attention train step b32 N={n} on CUDA: queued after {:.3} ms, finished after {:.3} ms (means of 50)", queued * 20.0, done * 20.0);
}

fn benches(c: &mut Criterion) {
    let cpu = Cpu::<f32>::new();
    for n in [100, 300] {
        step(c, &cpu, "cpu", n);
    }
    match Cuda::new(0) {
        Ok(cu) => {
            for n in [100, 300, 2000] {
                step(c, &cu, "cuda", n);
            }
            host_share(&cu, 300);
        }
        Err(e) => eprintln!("benches: CPU only ({e:#})"),
    }
}

fn print_profile(_: &mut Criterion) {
    engine::autograd::profile::print();
}

criterion_group!(attention, benches, print_profile);
criterion_main!(attention);
