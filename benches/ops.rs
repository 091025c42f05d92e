//! Kernel throughput: one criterion group per kernel, with `Throughput` set
//! so criterion prints elements/s or bytes/s. Every group runs on the CPU,
//! and on CUDA when a GPU is present (the GPU runs synchronize each
//! iteration, so a sample is the kernel's full time).
//!
//! `cargo bench` (all), `cargo bench -- gemm` (one group). Shapes are those of
//! the attention model (batch 32, 300 ROIs, 22 attributes, d = 200) and of
//! square matrix products.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::backend::prelude::*;
use engine::backend::{Adam, Binary, Gemm, Unary};
use engine::rng::Rng;
use engine::shape::{AxisLayout, Broadcast};
use engine::{Cpu, Cuda};
use std::time::Duration;

fn backends() -> (Cpu<f32>, Option<Cuda>) {
    let cuda = match Cuda::new(0) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("benches: CPU only ({e:#})");
            None
        }
    };
    (Cpu::new(), cuda)
}

fn group<'a>(c: &'a mut Criterion, name: &str, t: Throughput) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(t).sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    g
}

/// Runs `f` on one backend under id `label/size`.
fn run<B: Backend>(g: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>, b: &B, label: &str, size: &str, f: impl Fn(&B)) {
    g.bench_function(BenchmarkId::new(label, size), |it| {
        it.iter(|| {
            f(b);
            b.synchronize().unwrap();
        })
    });
}

/// Expands setup and step once per backend, with the concrete type, so one
/// text serves both.
macro_rules! on_both {
    ($g:expr, $cpu:expr, $cuda:expr, $size:expr, |$b:ident| { $($setup:stmt;)* } => $step:expr) => {{
        {
            let $b: &Cpu<f32> = &$cpu;
            $($setup)*
            run($g, $b, "cpu", $size, |$b: &Cpu<f32>| { std::hint::black_box($step); });
        }
        if let Some(cu) = &$cuda {
            let $b: &Cuda = cu;
            $($setup)*
            run($g, $b, "cuda", $size, |$b: &Cuda| { std::hint::black_box($step); });
        }
    }};
}

fn gemm(c: &mut Criterion) {
    let (cpu, cuda) = backends();
    let mut rng = Rng::new(1);
    for n in [256usize, 1024, 4096, 8192] {
        let g = Gemm::new(1, n, n, n, false, false);
        let mut grp = group(c, "gemm_f32", Throughput::Elements(g.flops() as u64));
        let (a, bm) = (rng.normals(n * n), rng.normals(n * n));
        let size = format!("{n}^3");
        if n < 4096 {
            // 4096^3 and up take seconds on 2 cores: GPU only
            let mut out = vec![0.0; n * n];
            grp.bench_function(BenchmarkId::new("cpu", &size), |it| it.iter(|| cpu.gemm(&g, &a, &bm, &mut out).unwrap()));
        }
        if let Some(cu) = &cuda {
            let (da, db) = (cu.upload(&a).unwrap(), cu.upload(&bm).unwrap());
            let mut out = cu.zeros(n * n).unwrap();
            grp.bench_function(BenchmarkId::new("cuda", &size), |it| {
                it.iter(|| {
                    cu.gemm(&g, &da, &db, &mut out).unwrap();
                    cu.synchronize().unwrap();
                })
            });
        }
        grp.finish();
    }
}

fn elementwise(c: &mut Criterion) {
    let (cpu, cuda) = backends();
    let n = 1 << 22;
    let x = Rng::new(2).normals(n);
    for (name, op) in [("unary_fwd_relu", Unary::Relu), ("unary_fwd_sigmoid", Unary::Sigmoid), ("unary_fwd_tanh", Unary::Tanh)] {
        let mut grp = group(c, name, Throughput::Bytes((n * 8) as u64));
        on_both!(&mut grp, cpu, cuda, "4M", |b| { let xd = b.upload(&x).unwrap(); } => b.unary(op, &xd).unwrap());
        grp.finish();
    }
    // bias add over rows: [32*300, 200] + [200]
    let (rows, d) = (32 * 300, 200);
    let (l, _) = Broadcast::new(&[rows, d], &[d]).unwrap();
    let (xa, xb) = (Rng::new(3).normals(rows * d), Rng::new(4).normals(d));
    let mut grp = group(c, "binary_fwd_bias", Throughput::Bytes((rows * d * 8) as u64));
    on_both!(&mut grp, cpu, cuda, "9600x200", |b| { let (da, db) = (b.upload(&xa).unwrap(), b.upload(&xb).unwrap()); }
        => b.binary(Binary::Add, &da, &db, &l).unwrap());
    grp.finish();
    // and its gradient: the column sum
    let r = l.reduce_for(true);
    let mut grp = group(c, "reduce_broadcast", Throughput::Bytes((rows * d * 4) as u64));
    on_both!(&mut grp, cpu, cuda, "9600x200", |b| { let dg = b.upload(&xa).unwrap(); } => b.reduce_broadcast(&dg, &r).unwrap());
    grp.finish();
}

fn along_axis(c: &mut Criterion) {
    let (cpu, cuda) = backends();
    // s_ij of the attention model: [B, N, M] = [32, 300, 22]
    let shape = [32usize, 300, 22];
    let n: usize = shape.iter().product();
    let x = Rng::new(5).normals(n);
    for (axis, tag) in [(2isize, "over_attributes"), (1, "over_rois")] {
        let l = AxisLayout::new(&shape, axis).unwrap();
        let mut grp = group(c, "softmax_fwd", Throughput::Bytes((n * 8) as u64));
        on_both!(&mut grp, cpu, cuda, tag, |b| { let xd = b.upload(&x).unwrap(); } => b.softmax(&xd, None, l, 4.0).unwrap());
        grp.finish();
        let mut grp = group(c, "l2_normalize_fwd", Throughput::Bytes((n * 8) as u64));
        on_both!(&mut grp, cpu, cuda, tag, |b| { let xd = b.upload(&x).unwrap(); } => b.l2_normalize(&xd, l, 1e-8).unwrap());
        grp.finish();
    }
    // cosine of phi rows [32*300, 200]
    let (rows, d) = (32 * 300, 200);
    let (a, bb) = (Rng::new(6).normals(rows * d), Rng::new(7).normals(rows * d));
    let l = AxisLayout { outer: rows, n: d, inner: 1 };
    let mut grp = group(c, "cosine_fwd", Throughput::Bytes((rows * d * 8) as u64));
    on_both!(&mut grp, cpu, cuda, "9600x200", |b| { let (da, db) = (b.upload(&a).unwrap(), b.upload(&bb).unwrap()); }
        => b.cosine(&da, &db, l, 1e-8).unwrap());
    grp.finish();
    // layer norm over the 64 features of 9600 ROIs
    let (rows, d) = (32 * 300, 64);
    let x = Rng::new(8).normals(rows * d);
    let mut grp = group(c, "layer_norm_fwd", Throughput::Bytes((rows * d * 8) as u64));
    on_both!(&mut grp, cpu, cuda, "9600x64", |b| { let (xd, gd, bd) = (b.upload(&x).unwrap(), b.fill(d, 1.0).unwrap(), b.zeros(d).unwrap()); }
        => b.layer_norm(&xd, &gd, &bd, rows, d, 1e-5).unwrap());
    grp.finish();
    let mut grp = group(c, "sum_axis_fwd", Throughput::Bytes((rows * d * 4) as u64));
    on_both!(&mut grp, cpu, cuda, "9600x64_rows", |b| { let xd = b.upload(&x).unwrap(); }
        => b.sum_axis(&xd, AxisLayout { outer: rows, n: d, inner: 1 }, false).unwrap());
    grp.finish();
}

fn losses_and_optim(c: &mut Criterion) {
    let (cpu, cuda) = backends();
    let n = 32 * 22;
    let (x, t) = (Rng::new(9).normals(n), Rng::new(10).uniforms(n, 0.0, 1.0));
    let mut grp = group(c, "bce_with_logits_fwd", Throughput::Elements(n as u64));
    on_both!(&mut grp, cpu, cuda, "32x22", |b| { let (xd, td) = (b.upload(&x).unwrap(), b.upload(&t).unwrap()); }
        => b.bce_with_logits(&xd, &td).unwrap());
    grp.finish();
    // one Adam step over a ResNet-50-sized parameter vector (25.6M)
    let n = 25_600_000;
    let p = Rng::new(11).normals(n);
    let mut grp = group(c, "adam_step", Throughput::Bytes((n * 4 * 7) as u64));
    on_both!(&mut grp, cpu, cuda, "25.6M", |b| {
            let state = std::cell::RefCell::new((b.upload(&p).unwrap(), b.zeros(n).unwrap(), b.zeros(n).unwrap()));
            let gd = b.upload(&p).unwrap();
        } => {
            let s = &mut *state.borrow_mut();
            b.adam_step(&Adam { step: 1, ..Adam::default() }, &mut s.0, &gd, &mut s.1, &mut s.2).unwrap()
        });
    grp.finish();
    let mut grp = group(c, "sum_squares", Throughput::Bytes((n * 4) as u64));
    on_both!(&mut grp, cpu, cuda, "25.6M", |b| { let pd = b.upload(&p).unwrap(); } => b.sum_squares(&pd).unwrap());
    grp.finish();
}

criterion_group!(benches, gemm, elementwise, along_axis, losses_and_optim);
criterion_main!(benches);
