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
