//! Optimizers and gradient clipping against the update rules of
//! torch.optim.SGD / torch.optim.Adam, written out in f64.

use engine::autograd::{Graph, Tensor};
use engine::optim::Optimizer;
use engine::params::ParamSet;
use engine::backend::prelude::*;
use engine::Cpu;

fn one_param(b: &Cpu, v: &[f32]) -> ParamSet<Cpu> {
    let mut p = ParamSet::new();
    p.add("w", Tensor::from_host(b, v, &[v.len()]).unwrap()).unwrap();
    p
}

fn set_grad(p: &mut ParamSet<Cpu>, g: &[f32]) {
    p.params[0].grad = Some(g.to_vec());
}

#[test]
fn sgd_momentum_weight_decay_matches_torch_rule() {
    let b = Cpu::<f32>::new();
    let (lr, mu, wd) = (0.1, 0.9, 0.01);
    let mut p = one_param(&b, &[1.0, -2.0]);
    let mut opt = Optimizer::sgd(lr, mu, wd);
    let grads = [[0.5f32, 0.25], [-1.0, 2.0]];
    // reference: d = g + wd p; buf = mu buf + d (buf = d on the first step); p -= lr buf
    let (mut pr, mut buf) = ([1.0f64, -2.0], [0.0f64; 2]);
    for g in grads {
        set_grad(&mut p, &g);
        opt.step(&b, &mut p).unwrap();
        for i in 0..2 {
            let d = g[i] as f64 + wd as f64 * pr[i];
            buf[i] = mu as f64 * buf[i] + d;
            pr[i] -= lr as f64 * buf[i];
        }
    }
    let got = p.params[0].value.to_host(&b).unwrap();
    for i in 0..2 {
        assert!((got[i] as f64 - pr[i]).abs() < 1e-6, "{got:?} vs {pr:?}");
    }
    // first step alone: 1 - 0.1 * (0.5 + 0.01) = 0.949
    let mut p1 = one_param(&b, &[1.0]);
    set_grad(&mut p1, &[0.5]);
    Optimizer::sgd(lr, mu, wd).step(&b, &mut p1).unwrap();
    assert!((p1.params[0].value.to_host(&b).unwrap()[0] - 0.949).abs() < 1e-6);
}

#[test]
fn adam_matches_torch_rule() {
    let b = Cpu::<f32>::new();
    let mut p = one_param(&b, &[0.5, -1.5, 3.0]);
    let mut opt = Optimizer::adam(0.01, 0.0);
    // The first Adam step moves every weight by lr * sign(g) (m̂ = g, v̂ = g²).
    set_grad(&mut p, &[0.3, -4.0, 1e-3]);
    opt.step(&b, &mut p).unwrap();
    let got = p.params[0].value.to_host(&b).unwrap();
    let want = [0.49, -1.49, 2.99];
    for i in 0..3 {
        assert!((got[i] - want[i]).abs() < 2e-5, "{got:?} vs {want:?}");
    }
    // Second step against the formula.
    set_grad(&mut p, &[0.1, 0.2, -0.3]);
    opt.step(&b, &mut p).unwrap();
    let got2 = p.params[0].value.to_host(&b).unwrap();
    let g1 = [0.3f64, -4.0, 1e-3];
    let g2 = [0.1f64, 0.2, -0.3];
    for i in 0..3 {
        let m = 0.9 * (0.1 * g1[i]) + 0.1 * g2[i];
        let v = 0.999 * (0.001 * g1[i] * g1[i]) + 0.001 * g2[i] * g2[i];
        let step = 0.01 * (m / (1.0 - 0.81)) / ((v / (1.0 - 0.999f64.powi(2))).sqrt() + 1e-8);
        assert!((got2[i] as f64 - (want[i] as f64 - step)).abs() < 2e-5, "coordinate {i}: {} vs {}", got2[i], want[i] as f64 - step);
    }
}

#[test]
fn clip_grad_norm_scales_to_the_limit_and_reports_the_norm() {
    let b = Cpu::<f32>::new();
    let mut p = one_param(&b, &[0.0; 2]);
    p.add("v", Tensor::from_host(&b, &[0.0], &[1]).unwrap()).unwrap();
    p.params[0].grad = Some(vec![3.0, 0.0]);
    p.params[1].grad = Some(vec![4.0]);
    let norm = p.clip_grad_norm(&b, 2.0).unwrap();
    assert!((norm - 5.0).abs() < 1e-9);
    let g0 = p.params[0].grad.as_ref().unwrap();
    assert!((g0[0] - 1.2).abs() < 1e-5 && (p.params[1].grad.as_ref().unwrap()[0] - 1.6).abs() < 1e-5);
    // under the limit: unchanged
    let norm = p.clip_grad_norm(&b, 10.0).unwrap();
    assert!((norm - 2.0).abs() < 1e-5);
    assert!((p.params[0].grad.as_ref().unwrap()[0] - 1.2).abs() < 1e-6);
}

#[test]
fn a_few_adam_steps_fit_a_linear_layer() {
    // End to end through the tape: y = x W^T + b learns a fixed map.
    let b = Cpu::<f32>::new();
    let mut params = ParamSet::new();
    params.add("weight", Tensor::from_host(&b, &[0.0; 6], &[2, 3]).unwrap()).unwrap();
    params.add("bias", Tensor::from_host(&b, &[0.0; 2], &[2]).unwrap()).unwrap();
    let x: Vec<f32> = (0..24).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect();
    let w_true = [0.5f32, -1.0, 2.0, 1.5, 0.0, -0.5];
    let mut y = Vec::new();
    for r in 0..8 {
        for o in 0..2 {
            y.push((0..3).map(|i| x[r * 3 + i] * w_true[o * 3 + i]).sum::<f32>() + 0.3);
        }
    }
    let mut opt = Optimizer::adam(0.05, 0.0);
    let mut losses = Vec::new();
    for _ in 0..300 {
        let mut g = Graph::new(b.clone());
        let xv = g.input(Tensor::from_host(&b, &x, &[8, 3]).unwrap());
        let w = g.param(&params, 0);
        let bias = g.param(&params, 1);
        let out = g.linear(xv, w, Some(bias)).unwrap();
        let neg = g.input(Tensor::from_host(&b, &y.iter().map(|v| -v).collect::<Vec<_>>(), &[8, 2]).unwrap());
        let diff = g.add(out, neg).unwrap();
        let sq = g.mul(diff, diff).unwrap();
        let flat = g.reshape(sq, &[16]).unwrap();
        let loss = g.mean(flat, 0).unwrap();
        losses.push(g.to_host(loss).unwrap()[0]);
        let grads = g.backward(loss).unwrap();
        params.zero_grad();
        grads.accumulate_into(&b, &mut params).unwrap();
        drop(g);
        opt.step(&b, &mut params).unwrap();
    }
    assert!(losses[0] > 1.0 && *losses.last().unwrap() < 1e-3, "loss {} -> {}", losses[0], losses.last().unwrap());
    let w = params.params[0].value.to_host(&b).unwrap();
    assert!(w.iter().zip(&w_true).all(|(a, t)| (a - t).abs() < 0.05), "{w:?}");
    assert_eq!(b.len(&params.params[1].value.buf), 2);
}

#[test]
fn optimizer_refuses_while_a_graph_holds_the_parameter() {
    let b = Cpu::<f32>::new();
    let mut p = one_param(&b, &[1.0]);
    set_grad(&mut p, &[1.0]);
    let mut g = Graph::new(b.clone());
    let _w = g.param(&p, 0);
    let e = Optimizer::sgd(0.1, 0.0, 0.0).step(&b, &mut p).unwrap_err();
    assert!(format!("{e}").contains("parameter w is still in use"), "{e}");
}
