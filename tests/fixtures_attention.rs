//! The cross-attention model against its PyTorch reference
//! (`$ENGINE_FIXTURES/attention.safetensors`, made by
//! shared/reference/paper_head.py in float64): phi, alpha, logits, S_roi,
//! S_text, the loss with and without classification, every parameter and
//! input gradient (relative error < 1e-4), and image-only inference: alphas,
//! probabilities and the NMS keep lists.

mod common;
use common::{assert_close, fixtures_dir};
use engine::nn::attention::{infer, init_params, loss, similarity_fused, similarity_ops, Attributes, Batch, Head, HeadConfig, Rois, SimilarityFn};
use engine::autograd::{Graph, Tensor, Var};
use engine::geometry::boxes::as_boxes;
use engine::geometry::nms::nms;
use engine::weights::{assign_strict, read, TensorFile};
use engine::backend::prelude::*;
use engine::Cpu;

const TOL: f64 = 1e-4;

pub fn config(f: &TensorFile) -> HeadConfig {
    let c: serde_json::Value = serde_json::from_str(&f.metadata["config"]).unwrap();
    let u = |k: &str| c[k].as_u64().unwrap() as usize;
    let x = |k: &str| c[k].as_f64().unwrap() as f32;
    assert_eq!(c["variant"], "literal");
    HeadConfig {
        r_dim: u("r_dim"), d: u("d"), geo: u("geo"), att_hidden: u("att_hidden"), cls_hidden: u("cls_hidden"), k: u("K"),
        lambda_a: x("lambda_a"), lambda_b: x("lambda_b"), beta: x("beta"), slope: x("leaky_slope"), ..HeadConfig::default()
    }
}

fn run(f: &TensorFile, with_classification: bool, sim: &SimilarityFn<Cpu>) {
    let b = Cpu::<f32>::new();
    let cfg = HeadConfig { with_classification, ..config(f) };
    let mut params = init_params(&b, &cfg, 0).unwrap();
    assign_strict(&b, &mut params, f, "weights/").unwrap();
    let head = Head::new(cfg, &params);
    let mut g = Graph::new(b.clone());
    let input = |g: &mut Graph<Cpu>, name: &str, grad: bool| -> Var {
        let t = f.get(&format!("input/{name}")).unwrap();
        let t = Tensor::from_host(&b, &t.data, &t.shape).unwrap();
        if grad { g.input_grad(t) } else { g.input(t) }
    };
    let names = ["r", "g", "s", "rn", "gn", "sn"];
    let v: Vec<Var> = names.iter().map(|n| input(&mut g, n, true)).collect();
    let (m, mn, y) = (input(&mut g, "m", false), input(&mut g, "mn", false), input(&mut g, "y", false));
    let mask_t = f.get("input/mask").unwrap();
    let t = Attributes::new(m, mask_t.data.clone(), mask_t.shape[0], mask_t.shape[1]);
    let batch = Batch { pos: Rois { r: v[0], g: v[1], s: v[2] }, neg: Rois { r: v[3], g: v[4], s: v[5] }, t, tn: mn, y };
    let parts = loss(&head, &mut g, &batch, sim).unwrap();
    let want = |n: &str| f.get(n).unwrap().data.clone();
    let key = if with_classification { "loss/total" } else { "loss/without_classification" };
    assert_close(key, &g.to_host(parts.total).unwrap(), &want(key), TOL);
    if !with_classification {
        return;
    }
    for (name, var) in [("phi", parts.phi), ("alpha", parts.alpha), ("logits", parts.logits), ("s_roi", parts.s_roi), ("s_text", parts.s_text)] {
        assert_close(&format!("intermediate/{name}"), &g.to_host(var).unwrap(), &want(&format!("intermediate/{name}")), TOL);
    }
    let grads = g.backward(parts.total).unwrap();
    for (n, var) in names.iter().zip(&v) {
        let got = grads.get(&b, *var).unwrap().unwrap().to_host(&b).unwrap();
        assert_close(&format!("grad_input/{n}"), &got, &want(&format!("grad_input/{n}")), TOL);
    }
    drop(g);
    let mut params = params;
    grads.accumulate_into(&b, &mut params).unwrap();
    let mut n = 0;
    for p in &params.params {
        let w = f.get(&format!("grad/{}", p.name)).unwrap();
        assert_close(&format!("grad/{}", p.name), p.grad.as_ref().unwrap(), &w.data, TOL);
        n += 1;
    }
    assert_eq!(n, 18);
}

#[test]
fn loss_intermediates_and_every_gradient_match() {
    let Some(dir) = fixtures_dir() else { return };
    let f = read(&dir.join("attention.safetensors")).unwrap();
    run(&f, true, &similarity_ops);
    run(&f, false, &similarity_ops);
}

#[test]
fn the_fused_cross_attention_matches_too() {
    let Some(dir) = fixtures_dir() else { return };
    let f = read(&dir.join("attention.safetensors")).unwrap();
    run(&f, true, &similarity_fused);
    run(&f, false, &similarity_fused);
}

#[test]
fn image_only_inference_matches() {
    let Some(dir) = fixtures_dir() else { return };
    let f = read(&dir.join("attention.safetensors")).unwrap();
    let b = Cpu::<f32>::new();
    let cfg = config(&f);
    let mut params = init_params(&b, &cfg, 0).unwrap();
    assign_strict(&b, &mut params, &f, "weights/").unwrap();
    let head = Head::new(cfg, &params);
    let mut g = Graph::no_grad(b.clone());
    let t = |g: &mut Graph<Cpu>, n: &str| { let t = f.get(&format!("input/{n}")).unwrap(); g.input(Tensor::from_host(&b, &t.data, &t.shape).unwrap()) };
    let rois = Rois { r: t(&mut g, "r"), g: t(&mut g, "g"), s: t(&mut g, "s") };
    let (alpha, probs) = infer(&head, &mut g, rois).unwrap();
    assert_close("infer/alpha", &g.to_host(alpha).unwrap(), &f.get("infer/alpha").unwrap().data, TOL);
    assert_close("infer/probs", &g.to_host(probs).unwrap(), &f.get("infer/probs").unwrap().data, TOL);
    let al = g.to_host(alpha).unwrap();
    let boxes = f.get("input/g").unwrap();
    let (bsz, n) = (boxes.shape[0], boxes.shape[1]);
    let iou: f32 = f.meta("infer/nms_iou").unwrap();
    for i in 0..bsz {
        let keep = nms(&as_boxes(&boxes.data[i * n * 4..(i + 1) * n * 4]), &al[i * n..(i + 1) * n], iou);
        let want: Vec<usize> = f.get(&format!("infer/{i}/keep")).unwrap().data.iter().map(|&v| v as usize).collect();
        assert_eq!(keep, want, "infer/{i}/keep");
    }
    assert_eq!(b.len(&g.value(alpha).buf), bsz * n);
}
