//! ROI selection on the backend (`localizer::rois`): the features of the
//! selected ROIs are gathered where the detector ran (`gather_lines`), and
//! the ROI sets equal those of the host path it replaced (every tower
//! downloaded, ranked, decoded and gathered on the host), value for value on
//! the CPU. The same checks run on CUDA on the GPU machine (ignored elsewhere).

#[path = "support/host_rois.rs"]
mod host_rois;

use engine::backend::prelude::*;
use engine::data::image::Gray;
use engine::localizer::bundle::ModelMeta;
use engine::localizer::Localizer;
use engine::nn::retinanet::{init_params, RetinaConfig};
use host_rois::host_rois;
use engine::nn::BnMode;
use engine::rng::Rng;
use engine::shape::AxisLayout;
use engine::Cpu;

fn gather_lines_match_indexing<B: Backend>(b: &B) {
    let mut rng = Rng::new(3);
    let l = AxisLayout { outer: 3, n: 5, inner: 7 };
    let x = rng.uniforms(l.numel(), -1.0, 1.0);
    let lines: Vec<u32> = (0..40).map(|_| rng.below(l.outer * l.inner) as u32).collect();
    let got = b.download(&b.gather_lines(&b.upload(&x).unwrap(), l, &lines).unwrap()).unwrap();
    let want: Vec<f32> = lines.iter().flat_map(|&v| {
        let (o, k) = (v as usize / l.inner, v as usize % l.inner);
        (0..l.n).map(move |j| (o * l.n + j) * l.inner + k)
    }).map(|i| x[i]).collect();
    assert_eq!(got, want);
    let Err(err) = b.gather_lines(&b.upload(&x).unwrap(), l, &[21]) else { panic!("line 21 of 21 lines was accepted") };
    let err = err.to_string();
    assert!(err.contains("line 21") && err.contains("21 lines"), "{err}");
}

#[test]
fn gather_lines_picks_lines_of_the_axis_view() {
    gather_lines_match_indexing(&Cpu::<f32>::new());
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gather_lines_on_cuda_match_indexing() {
    gather_lines_match_indexing(&engine::Cuda::new(0).unwrap());
}

fn images(n: usize, seed: u64) -> Vec<Gray> {
    let mut rng = Rng::new(seed);
    (0..n).map(|i| {
        let (width, height) = (64 + 8 * i, 64);
        Gray { width, height, data: rng.uniforms(width * height, 0.0, 1.0) }
    }).collect()
}

fn localizer<B: Backend>(b: &B) -> Localizer<B> {
    let retina = RetinaConfig { num_classes: 1, bn: BnMode::Frozen, trainable_layers: 0, anchor_scale: 0.5 };
    Localizer::new(b, init_params(b, &retina, 4).unwrap(), ModelMeta { retina, image_size: 64 }).unwrap()
}

#[test]
fn roi_sets_equal_the_host_path_on_the_cpu() {
    let loc = localizer(&Cpu::<f32>::new());
    let imgs = images(3, 1);
    let refs: Vec<(&str, &Gray)> = imgs.iter().enumerate().map(|(i, g)| (["a", "b", "c"][i], g)).collect();
    let got = loc.rois(&refs, 30).unwrap();
    let want = host_rois(&loc.forward(&imgs.iter().collect::<Vec<_>>()).unwrap(), &loc.meta, 30);
    assert_eq!(got.len(), 3);
    for (i, (g, (pos, neg))) in got.iter().zip(&want).enumerate() {
        assert_eq!((g.id.as_str(), g.size), (refs[i].0, (imgs[i].width, imgs[i].height)));
        assert_eq!((g.pos.len(), g.neg.len()), (30, 30));
        assert_eq!(&g.pos, pos, "image {i}: positive set");
        assert_eq!(&g.neg, neg, "image {i}: negative set");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn roi_sets_on_cuda_match_the_cpu() {
    let (cpu, gpu) = (localizer(&Cpu::<f32>::new()), localizer(&engine::Cuda::new(0).unwrap()));
    let imgs = images(2, 5);
    let refs: Vec<(&str, &Gray)> = imgs.iter().map(|g| ("x", g)).collect();
    let (c, g) = (cpu.rois(&refs, 30).unwrap(), gpu.rois(&refs, 30).unwrap());
    for (c, g) in c.iter().zip(&g) {
        for (a, b) in [(&c.pos, &g.pos), (&c.neg, &g.neg)] {
            // near-tied scores may swap places between backends: compare the sets' score profiles and boxes loosely
            let close = |x: &[f32], y: &[f32], tol: f32| x.iter().zip(y).all(|(p, q)| (p - q).abs() <= tol * p.abs().max(1.0));
            assert!(close(&a.scores, &b.scores, 1e-4), "scores");
            assert!(close(&a.boxes, &b.boxes, 1e-3), "boxes");
            assert!(close(&a.features, &b.features, 1e-3), "features");
        }
    }
}
