//! Weights on disk: round trips in f32/f16/bf16, strict loading that names
//! missing, unexpected and mis-shaped tensors, atomic writes, and clear
//! one-line errors for truncated or malformed files.

use engine::autograd::Tensor;
use engine::params::ParamSet;
use engine::weights::{load_params_strict, read, save_params, write, StoreDtype};
use engine::Cpu;
use std::collections::BTreeMap;
use std::path::Path;

fn model(shapes: &[(&str, &[usize])]) -> ParamSet<Cpu> {
    let b = Cpu::<f32>::new();
    let mut p = ParamSet::new();
    for (i, (name, shape)) in shapes.iter().enumerate() {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|j| (i * 100 + j) as f32 * 0.37 - 3.0).collect();
        p.add(name, Tensor::from_host(&b, &data, shape).unwrap()).unwrap();
    }
    p
}

const SHAPES: &[(&str, &[usize])] = &[("W1.weight", &[4, 3]), ("W1.bias", &[4]), ("ln_g.weight", &[5])];

#[test]
fn round_trip_in_every_dtype() {
    let b = Cpu::<f32>::new();
    let dir = tempfile::tempdir().unwrap();
    let src = model(SHAPES);
    for (dtype, tol) in [(StoreDtype::F32, 0.0), (StoreDtype::F16, 1e-3), (StoreDtype::Bf16, 8e-3)] {
        let path = dir.path().join(format!("{dtype:?}.safetensors"));
        let mut meta = BTreeMap::new();
        meta.insert("epoch".to_string(), "3".to_string());
        save_params(&b, &src, &path, dtype, &meta).unwrap();
        let mut dst = model(SHAPES);
        for p in &mut dst.params {
            p.value = Tensor::from_host(&b, &vec![0.0; p.value.numel()], &p.value.shape).unwrap();
        }
        let file = load_params_strict(&b, &mut dst, &path).unwrap();
        assert_eq!(file.metadata["epoch"], "3");
        for (s, d) in src.params.iter().zip(&dst.params) {
            let (a, c) = (s.value.to_host(&b).unwrap(), d.value.to_host(&b).unwrap());
            for (x, y) in a.iter().zip(&c) {
                assert!((x - y).abs() <= tol * x.abs().max(1.0), "{dtype:?} {}: {x} vs {y}", s.name);
            }
        }
    }
}

fn load_err(file_shapes: &[(&str, &[usize])], model_shapes: &[(&str, &[usize])]) -> String {
    let b = Cpu::<f32>::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    save_params(&b, &model(file_shapes), &path, StoreDtype::F32, &BTreeMap::new()).unwrap();
    let mut m = model(model_shapes);
    let before = m.params[0].value.to_host(&b).unwrap();
    let e = format!("{:#}", load_params_strict(&b, &mut m, &path).unwrap_err());
    // nothing was loaded
    assert_eq!(m.params[0].value.to_host(&b).unwrap(), before);
    assert!(!e.contains('\n'), "error is not one line: {e}");
    assert!(e.contains("w.safetensors"), "error does not name the file: {e}");
    e
}

#[test]
fn wrong_tensor_name_is_named() {
    let e = load_err(&[("W1.weight", &[4, 3]), ("W1.bias", &[4]), ("ln_g.wieght", &[5])], SHAPES);
    assert!(e.contains("missing tensors: ln_g.weight"), "{e}");
    assert!(e.contains("unexpected tensors: ln_g.wieght"), "{e}");
}

#[test]
fn wrong_shape_is_named() {
    let e = load_err(&[("W1.weight", &[3, 4]), ("W1.bias", &[4]), ("ln_g.weight", &[5])], SHAPES);
    assert!(e.contains("wrong shapes: W1.weight (file [3, 4], model [4, 3])"), "{e}");
}

#[test]
fn truncated_and_malformed_files_are_errors_naming_the_file() {
    let b = Cpu::<f32>::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.safetensors");
    save_params(&b, &model(SHAPES), &path, StoreDtype::F32, &BTreeMap::new()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    for (name, content) in [
        ("truncated.safetensors", bytes[..bytes.len() - 7].to_vec()),
        ("header_only.safetensors", bytes[..20].to_vec()),
        ("empty.safetensors", vec![]),
        ("text.safetensors", b"this is not a safetensors file at all".to_vec()),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        let e = format!("{:#}", read(&p).unwrap_err());
        assert!(e.contains(name), "{name}: {e}");
        assert!(!e.contains('\n'), "{name}: not one line: {e}");
    }
    let e = format!("{:#}", read(Path::new("/nonexistent/w.safetensors")).unwrap_err());
    assert!(e.contains("/nonexistent/w.safetensors"), "{e}");
}

#[test]
fn atomic_write_replaces_whole_file_and_leaves_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    let t = |v: f32| vec![("x".to_string(), vec![3], vec![v; 3])];
    write(&path, &t(1.0), StoreDtype::F32, &BTreeMap::new()).unwrap();
    write(&path, &t(2.0), StoreDtype::F32, &BTreeMap::new()).unwrap();
    assert_eq!(read(&path).unwrap().get("x").unwrap().data, vec![2.0; 3]);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "left behind: {names:?}");
    // a failed write keeps the old file
    let bad = vec![("x".to_string(), vec![4], vec![0.0; 3])];
    assert!(write(&path, &bad, StoreDtype::F32, &BTreeMap::new()).is_err());
    assert_eq!(read(&path).unwrap().get("x").unwrap().data, vec![2.0; 3]);
}
