//! The CPU backend against PyTorch's golden tensors
//! (`$ENGINE_FIXTURES/ops.safetensors`): every case of every foundation op in
//! the file, forward and input/parameter gradients, relative error < 1e-4.
//! Shapes and parameters come from the file, so other files of the same
//! format are checked the same way (`ENGINE_FIXTURES=/other/folder`).

mod common;
use anyhow::{Context, Result};
use common::{assert_close, fixtures_dir};
use engine::autograd::{Graph, Tensor, Var};
use engine::weights::{read, TensorFile};
use engine::Cpu;
use std::collections::BTreeSet;

const TOL: f64 = 1e-4;

/// Case indices of `op` in the file (`op/<i>/...`).
fn case_ids(f: &TensorFile, op: &str) -> Vec<String> {
    let prefix = format!("{op}/");
    let ids: BTreeSet<String> = f
        .tensors
        .keys()
        .filter_map(|k| k.strip_prefix(&prefix))
        .filter_map(|rest| rest.split('/').next().map(str::to_string))
        .collect();
    ids.into_iter().collect()
}

/// Runs `build` on the case's inputs (`inputs`: names in the file, all
/// differentiable), checks `y` and every `g<name>` gradient against the file
/// for the upstream gradient `gy`.
fn check(f: &TensorFile, case: &str, inputs: &[&str], constants: &[&str],
         build: impl Fn(&mut Graph<Cpu>, &[Var], &[Var]) -> Result<Var>) -> Result<()> {
    let b = Cpu::<f32>::new();
    let mut g = Graph::new(b.clone());
    let t = |name: &str| -> Result<Tensor<Cpu>> {
        let h = f.get(&format!("{case}/{name}"))?;
        Tensor::from_host(&b, &h.data, &h.shape)
    };
    let xs: Vec<Var> = inputs.iter().map(|n| Ok(g.input_grad(t(n)?))).collect::<Result<_>>()?;
    let cs: Vec<Var> = constants.iter().map(|n| Ok(g.input(t(n)?))).collect::<Result<_>>()?;
    let y = build(&mut g, &xs, &cs)?;
    let want_y = f.get(&format!("{case}/y"))?;
    assert_eq!(g.shape(y), want_y.shape.as_slice(), "{case}: output shape");
    assert_close(&format!("{case}/y"), &g.to_host(y)?, &want_y.data, TOL);

    let gy = g.input(t("gy")?);
    let prod = g.mul(y, gy)?;
    let n = g.value(prod).numel();
    let flat = g.reshape(prod, &[n])?;
    let loss = g.sum(flat, 0)?;
    let grads = g.backward(loss)?;
    for (name, v) in inputs.iter().zip(&xs) {
        let want = f.get(&format!("{case}/g{name}"))?;
        let got = grads.get(&b, *v)?.with_context(|| format!("{case}: no gradient for {name}"))?;
        assert_close(&format!("{case}/g{name}"), &got.to_host(&b)?, &want.data, TOL);
    }
    Ok(())
}

fn meta_f32(f: &TensorFile, key: &str) -> Result<f32> {
    // values are JSON numbers or strings of numbers
    let v: serde_json::Value = f.meta(key)?;
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).map(|x| x as f32).with_context(|| format!("{key} = {v}"))
}

/// Runs every case of `op`; a file without any case of it fails.
fn for_each_case(op: &str, mut run: impl FnMut(&TensorFile, &str) -> Result<()>) {
    let Some(dir) = fixtures_dir() else { return };
    let f = read(&dir.join("ops.safetensors")).unwrap();
    let ids = case_ids(&f, op);
    assert!(!ids.is_empty(), "{}: no case of {op}", f.path.display());
    for id in ids {
        let case = format!("{op}/{id}");
        run(&f, &case).unwrap_or_else(|e| panic!("{case}: {e:#}"));
        eprintln!("{case}: ok");
    }
}

#[test]
fn linear() {
    for_each_case("linear", |f, case| {
        let has_bias = f.tensors.contains_key(&format!("{case}/b"));
        let names: &[&str] = if has_bias { &["x", "w", "b"] } else { &["x", "w"] };
        check(f, case, names, &[], |g, x, _| g.linear(x[0], x[1], x.get(2).copied()))
    });
}

#[test]
fn layernorm() {
    for_each_case("layernorm", |f, case| {
        let eps = meta_f32(f, &format!("{case}/eps"))?;
        check(f, case, &["x", "w", "b"], &[], |g, x, _| g.layer_norm(x[0], x[1], x[2], eps))
    });
}

#[test]
fn softmax() {
    for_each_case("softmax", |f, case| {
        let dim = meta_f32(f, &format!("{case}/dim"))? as isize;
        check(f, case, &["x"], &[], |g, x, _| g.softmax(x[0], dim, 1.0, None))
    });
}

#[test]
fn leaky_relu() {
    for_each_case("leaky_relu", |f, case| {
        let slope = meta_f32(f, &format!("{case}/slope"))?;
        check(f, case, &["x"], &[], |g, x, _| g.leaky_relu(x[0], slope))
    });
}

#[test]
fn cosine_similarity() {
    for_each_case("cosine_similarity", |f, case| {
        let eps = meta_f32(f, &format!("{case}/eps"))?;
        // The reduced axis is the one missing from the output's shape.
        let a = &f.get(&format!("{case}/a"))?.shape;
        let y = &f.get(&format!("{case}/y"))?.shape;
        let dim = (0..a.len()).find(|&d| { let mut s = a.clone(); s.remove(d); &s == y }).context("cannot infer the axis")?;
        check(f, case, &["a", "b"], &[], |g, x, _| g.cosine(x[0], x[1], dim as isize, eps))
    });
}

#[test]
fn bce_with_logits() {
    for_each_case("bce_with_logits", |f, case| {
        check(f, case, &["x"], &["target"], |g, x, c| g.bce_with_logits(x[0], c[0]))
    });
}

#[test]
fn triplet_hinge() {
    for_each_case("triplet_hinge", |f, case| {
        let margin = meta_f32(f, &format!("{case}/margin"))?;
        check(f, case, &["x"], &[], |g, x, _| g.triplet_hinge(x[0], margin))
    });
}

fn meta_usize2(f: &TensorFile, key: &str) -> Result<[usize; 2]> {
    let v: serde_json::Value = f.meta(key)?;
    let v = match v { serde_json::Value::String(s) => serde_json::from_str(&s)?, v => v };
    match v {
        serde_json::Value::Array(a) => Ok([a[0].as_u64().context("int")? as usize, a[1].as_u64().context("int")? as usize]),
        v => { let n = v.as_u64().with_context(|| format!("{key} = {v}"))? as usize; Ok([n, n]) }
    }
}

#[test]
fn conv2d() {
    for_each_case("conv2d", |f, case| {
        let m = |k: &str| meta_f32(f, &format!("{case}/{k}")).map(|v| v as usize);
        let (stride, pad, dil, groups) = (m("stride")?, m("padding")?, m("dilation")?, m("groups")?);
        let has_bias = f.tensors.contains_key(&format!("{case}/b"));
        let names: &[&str] = if has_bias { &["x", "w", "b"] } else { &["x", "w"] };
        check(f, case, names, &[], |g, x, _| g.conv2d(x[0], x[1], x.get(2).copied(), stride, pad, dil, groups))
    });
}

#[test]
fn frozen_bn() {
    for_each_case("frozen_bn", |f, case| {
        let eps = meta_f32(f, &format!("{case}/eps"))?;
        let get = |n: &str| f.get(&format!("{case}/{n}")).map(|t| t.data.clone());
        let (w, b, rm, rv) = (get("weight")?, get("bias")?, get("running_mean")?, get("running_var")?);
        let scale: Vec<f32> = w.iter().zip(&rv).map(|(w, v)| w / (v + eps).sqrt()).collect();
        let shift: Vec<f32> = b.iter().zip(&rm).zip(&scale).map(|((b, m), s)| b - m * s).collect();
        let cpu = Cpu::<f32>::new();
        let (st, sh) = (Tensor::from_host(&cpu, &scale, &[w.len()])?, Tensor::from_host(&cpu, &shift, &[w.len()])?);
        check(f, case, &["x"], &[], |g, x, _| g.channel_affine(x[0], &st, &sh))
    });
}

#[test]
fn batchnorm2d_train() {
    for_each_case("batchnorm2d_train", |f, case| {
        let eps = meta_f32(f, &format!("{case}/eps"))?;
        let momentum = meta_f32(f, &format!("{case}/momentum"))?;
        let stats = std::cell::RefCell::new(None);
        check(f, case, &["x", "gamma", "beta"], &[], |g, x, _| {
            let (y, mean, var) = g.batch_norm_train(x[0], x[1], x[2], eps)?;
            *stats.borrow_mut() = Some((mean, var, g.shape(x[0]).to_vec()));
            Ok(y)
        })?;
        // running statistics after one step from (0, 1), with the unbiased variance
        let (mean, var, shape) = stats.into_inner().unwrap();
        let cpu = Cpu::<f32>::new();
        let m = (shape[0] * shape[2] * shape[3]) as f32;
        let rm: Vec<f32> = mean.to_host(&cpu)?.iter().map(|v| momentum * v).collect();
        let rv: Vec<f32> = var.to_host(&cpu)?.iter().map(|v| (1.0 - momentum) + momentum * v * m / (m - 1.0)).collect();
        assert_close(&format!("{case}/running_mean_after"), &rm, &f.get(&format!("{case}/running_mean_after"))?.data, TOL);
        assert_close(&format!("{case}/running_var_after"), &rv, &f.get(&format!("{case}/running_var_after"))?.data, TOL);
        Ok(())
    });
}

#[test]
fn maxpool2d() {
    for_each_case("maxpool2d", |f, case| {
        let m = |k: &str| meta_f32(f, &format!("{case}/{k}")).map(|v| v as usize);
        let (k, stride, pad) = (m("kernel")?, m("stride")?, m("padding")?);
        check(f, case, &["x"], &[], |g, x, _| g.max_pool2d(x[0], k, stride, pad))
    });
}

#[test]
fn upsample_nearest() {
    for_each_case("upsample_nearest", |f, case| {
        let size = meta_usize2(f, &format!("{case}/size"))?;
        check(f, case, &["x"], &[], |g, x, _| g.upsample_nearest(x[0], size))
    });
}

#[test]
fn global_avgpool() {
    for_each_case("global_avgpool", |f, case| {
        check(f, case, &["x"], &[], |g, x, _| {
            let s = g.shape(x[0]).to_vec();
            let flat = g.reshape(x[0], &[s[0], s[1], s[2] * s[3]])?;
            g.mean(flat, -1)
        })
    });
}

#[test]
fn sigmoid_focal_loss() {
    for_each_case("sigmoid_focal_loss", |f, case| {
        let alpha = meta_f32(f, &format!("{case}/alpha"))?;
        let gamma = meta_f32(f, &format!("{case}/gamma"))?;
        check(f, case, &["x"], &["target"], |g, x, c| g.focal_loss(x[0], c[0], None, alpha, gamma))
    });
}

#[test]
fn l1_loss() {
    for_each_case("l1_loss", |f, case| {
        check(f, case, &["x"], &["target"], |g, x, c| g.box_loss(engine::backend::BoxLoss::L1, x[0], c[0], None))
    });
}

#[test]
fn smooth_l1_loss() {
    for_each_case("smooth_l1_loss", |f, case| {
        let beta = meta_f32(f, &format!("{case}/beta"))?;
        check(f, case, &["x"], &["target"], |g, x, c| g.box_loss(engine::backend::BoxLoss::SmoothL1 { beta }, x[0], c[0], None))
    });
}
