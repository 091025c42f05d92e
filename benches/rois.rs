//! The ROI path (`Localizer::rois`: the detector's forward pass, then both
//! ROI sets of each image), end to end on a batch, and the selection alone
//! from one pass: on the backend (`localizer::rois::select`: features
//! gathered where the detector ran) against the host path it replaced
//! (every tower downloaded, ranked and gathered on the host). CPU at
//! 256 px, batch 2 (end to end) and 512 px, batch 2 (selection); CUDA, when
//! present, at 512 px, batch 8. 100 ROIs per set, as SPEC.

#[path = "../tests/support/host_rois.rs"]
mod host_rois;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use engine::backend::Backend;
use engine::data::image::Gray;
use engine::localizer::bundle::ModelMeta;
use engine::localizer::{rois, Localizer};
use engine::nn::retinanet::{init_params, RetinaConfig};
use engine::nn::BnMode;
use engine::rng::Rng;
use engine::{Cpu, Cuda};
use std::time::Duration;

const TOP_N: usize = 100;

fn localizer<B: Backend>(b: &B, size: usize) -> Localizer<B> {
    let retina = RetinaConfig { num_classes: 1, bn: BnMode::Frozen, trainable_layers: 0, anchor_scale: 1.0 };
    Localizer::new(b, init_params(b, &retina, 1).unwrap(), ModelMeta { retina, image_size: size }).unwrap()
}

fn images(n: usize, size: usize) -> Vec<Gray> {
    let mut rng = Rng::new(2);
    (0..n).map(|_| Gray { width: size, height: size, data: rng.uniforms(size * size, 0.0, 1.0) }).collect()
}

fn roi_path<B: Backend>(c: &mut Criterion, b: &B, label: &str, n: usize, size: usize) {
    let loc = localizer(b, size);
    let imgs = images(n, size);
    let refs: Vec<(&str, &Gray)> = imgs.iter().map(|g| ("x", g)).collect();
    let mut g = c.benchmark_group("roi path");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
    g.bench_function(BenchmarkId::new(label, format!("b{n} @{size}")), |it| it.iter(|| loc.rois(&refs, TOP_N).unwrap()));
    g.finish();
}

fn roi_selection<B: Backend>(c: &mut Criterion, b: &B, label: &str, n: usize, size: usize) {
    let loc = localizer(b, size);
    let imgs = images(n, size);
    let refs: Vec<(&str, &Gray)> = imgs.iter().map(|g| ("x", g)).collect();
    let pass = loc.forward(&imgs.iter().collect::<Vec<_>>()).unwrap();
    let mut g = c.benchmark_group("roi selection");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    let id = format!("b{n} @{size}");
    g.bench_function(BenchmarkId::new(format!("{label}/backend"), &id), |it| it.iter(|| rois::select(b, &pass, &loc.meta, &refs, TOP_N).unwrap()));
    g.bench_function(BenchmarkId::new(format!("{label}/host"), &id), |it| it.iter(|| host_rois::host_rois(&pass, &loc.meta, TOP_N)));
    g.finish();
}

fn benches(c: &mut Criterion) {
    let cpu = Cpu::<f32>::new();
    roi_path(c, &cpu, "cpu", 2, 256);
    roi_selection(c, &cpu, "cpu", 2, 512);
    match Cuda::new(0) {
        Ok(gpu) => {
            roi_path(c, &gpu, "cuda", 8, 512);
            roi_selection(c, &gpu, "cuda", 8, 512);
        }
        Err(e) => eprintln!("rois bench: CPU only ({e:#})"),
    }
}

criterion_group!(rois_benches, benches);
criterion_main!(rois_benches);
