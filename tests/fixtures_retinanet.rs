//! The whole detector against torchvision (`$ENGINE_FIXTURES/retinanet.safetensors`):
//! ResNet-50 C3..C5, FPN P3..P7, head outputs, anchors, both losses and the
//! ten parameter gradients, on the CPU: in f64 to 1e-5 (the fixture agrees
//! with an f64 run to about 1e-7), in f32 to 1e-3, gradients to 3e-3.
//!
//! Why the f32 gradients get more room: a max-pool window or a ReLU input
//! whose values tie at f32 resolution can go either way, which moves one
//! pixel's gradient; the stem's weight gradient then differs from the exact
//! one by about 1e-3, whichever matrix product rounds (measured with
//! `matrixmultiply` and the `gemm` crate, on this file and on random
//! initialisations: 3.6e-7 to 1.3e-3).

mod common;
use common::{assert_close, fixtures_dir};
use engine::autograd::{Graph, Tensor};
use engine::geometry::boxes::as_boxes;
use engine::nn::retinanet::{anchors, forward, frozen_bn, init_params, losses, RetinaConfig, Target};
use engine::nn::{BnMode, Net};
use engine::weights::{assign_strict, read};
use engine::backend::prelude::*;
use engine::Cpu;

#[test]
fn retinanet_matches_torchvision_in_f32() {
    check(Cpu::<f32>::new(), 1e-3, 3e-3);
}

#[test]
fn retinanet_matches_torchvision_in_f64() {
    check(Cpu::<f64>::new(), 1e-5, 1e-5);
}

fn check<B: Backend>(b: B, tol: f64, grad_tol: f64) {
    let Some(dir) = fixtures_dir() else { return };
    let f = read(&dir.join("retinanet.safetensors")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&f.metadata["config"]).unwrap();
    let k = config["num_classes"].as_u64().unwrap() as usize;
    let cfg = RetinaConfig { num_classes: k, bn: BnMode::Frozen, trainable_layers: 5, anchor_scale: 1.0 };
    let mut params = init_params(&b, &cfg, 0).unwrap();
    // every parameter named in the file, nothing more, nothing less
    assign_strict(&b, &mut params, &f, "weights/").unwrap();
    for p in &mut params.params {
        p.trainable = !p.name.contains("running_") && !p.name.contains(".bn") && !p.name.contains("downsample.1");
    }
    let bn = frozen_bn(&b, &params).unwrap();
    let mut g = Graph::new(b.clone());
    let x = f.get("input/normalized").unwrap();
    let xv = g.input(Tensor::from_host(&b, &x.data, &x.shape).unwrap());
    let mut net = Net::new(&mut g, &params, Some(&bn));
    let out = forward(&mut net, &cfg, xv).unwrap();
    drop(net);
    for (i, name) in ["body/C2", "body/C3", "body/C4"].iter().enumerate() {
        assert_close(name, &g.to_host(out.c[i]).unwrap(), &f.get(name).unwrap().data, tol);
    }
    for (i, v) in out.p.iter().enumerate() {
        let name = format!("fpn/P{}", i + 3);
        assert_close(&name, &g.to_host(*v).unwrap(), &f.get(&name).unwrap().data, tol);
    }
    assert_close("head/cls_logits", &g.to_host(out.cls_logits).unwrap(), &f.get("head/cls_logits").unwrap().data, tol);
    assert_close("head/bbox_regression", &g.to_host(out.bbox_regression).unwrap(), &f.get("head/bbox_regression").unwrap().data, tol);
    let size = [x.shape[2], x.shape[3]];
    let a = anchors(&cfg, &out, size);
    assert_eq!(a.concat(), f.get("head/anchors").unwrap().data, "anchors");

    let targets: Vec<Target> = (0..x.shape[0])
        .map(|i| Target {
            boxes: as_boxes(&f.get(&format!("targets/{i}/boxes")).unwrap().data),
            labels: f.get(&format!("targets/{i}/labels")).unwrap().data.iter().map(|&l| l as usize).collect(),
        })
        .collect();
    let (cls, reg) = losses(&mut g, &out, &a, &targets, k).unwrap();
    assert_close("loss/classification", &g.to_host(cls).unwrap(), &f.get("loss/classification").unwrap().data, tol);
    assert_close("loss/bbox_regression", &g.to_host(reg).unwrap(), &f.get("loss/bbox_regression").unwrap().data, tol);
    let total = g.add(cls, reg).unwrap();
    let grads = g.backward(total).unwrap();
    drop(g);
    grads.accumulate_into(&b, &mut params).unwrap();
    let mut checked = 0;
    for (name, t) in f.tensors.iter().filter_map(|(n, t)| n.strip_prefix("grad/").map(|p| (p, t))) {
        let p = params.get(name).unwrap();
        let got = p.grad.as_ref().unwrap_or_else(|| panic!("no gradient for {name}"));
        assert_close(&format!("grad/{name}"), &b.download(got).unwrap(), &t.data, grad_tol);
        checked += 1;
    }
    assert_eq!(checked, 10, "the file should hold ten parameter gradients");
}
