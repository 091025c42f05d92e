//! The `engine` binary as a user runs it, on a machine without a GPU too.

use std::process::Command;

fn engine(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_engine")).args(args).output().expect("run engine");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn help_lists_the_commands() {
    let (rc, out, _) = engine(&["--help"]);
    assert_eq!(rc, 0);
    assert!(out.contains("info") && out.contains("--device"), "{out}");
    let (rc, out, _) = engine(&["info", "--help"]);
    assert_eq!(rc, 0);
    assert!(out.contains("--json"), "{out}");
}

#[test]
fn info_reports_build_and_runtime() {
    let (rc, out, err) = engine(&["info", "--json"]);
    assert_eq!(rc, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rt = v["runtime"]["device"].as_str().unwrap();
    assert!(rt == "CUDA" || rt == "CPU only", "{out}");
    if rt == "CPU only" {
        assert!(!v["runtime"]["why"].as_str().unwrap().is_empty());
    }
    // every module the build compiled is listed with its entries
    assert_eq!(v["build"]["kernel_modules"].as_array().unwrap().len(), engine::backend::cuda::kernels::MODULES.len());
    let (rc, text, _) = engine(&["info"]);
    assert_eq!(rc, 0);
    assert!(text.contains("runtime:") && text.contains("build: nvcc"), "{text}");
}

#[test]
fn device_cuda_without_a_gpu_is_a_clear_error() {
    if engine::backend::cuda::unavailable_reason().is_none() {
        eprintln!("SKIPPED: this machine has a GPU");
        return;
    }
    let (rc, _, err) = engine(&["--device", "cuda", "info"]);
    assert_eq!(rc, 2, "a usage error: {err}");
    assert!(err.starts_with("engine: error: --device cuda: CUDA is not available"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn truncated_weights_file_gives_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let t = vec![("W1.weight".to_string(), vec![2, 2], vec![1.0; 4])];
    engine::weights::write(&path, &t, engine::weights::StoreDtype::F16, &Default::default()).unwrap();
    let (rc, out, _) = engine(&["weights", "show", path.to_str().unwrap()]);
    assert_eq!(rc, 0);
    assert!(out.contains("W1.weight") && out.contains("F16") && out.contains("[2, 2]"), "{out}");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let (rc, _, err) = engine(&["weights", "show", path.to_str().unwrap()]);
    assert_eq!(rc, 1);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("model.safetensors: not a valid safetensors file"), "{err}");
}

/// Bad arguments of the training and evaluation commands: one line that says
/// what to change, exit status 2 (as clap's own errors), no output folder.
#[test]
fn bad_arguments_exit_2_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (images, empty) = (dir.path().join("images"), dir.path().join("empty"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&empty).unwrap();
    image::GrayImage::new(40, 40).save(images.join("a.png")).unwrap();
    let labels = dir.path().join("labels.csv");
    std::fs::write(&labels, "patientId,x,y,width,height,Target\na,,,,,0\n").unwrap();
    let p = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let out = dir.path().join("out");
    let (im, lb, em, o) = (p(&images), p(&labels), p(&empty), p(&out));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["detector", "train", "--images", &im, "--labels", &lb, "--out", &o, "--batch", "0"], "--batch"),
        (vec!["detector", "train", "--images", &im, "--labels", &lb, "--out", &o, "--size", "16"], "--size"),
        (vec!["detector", "train", "--images", &im, "--labels", &lb, "--out", &o, "--trainable-layers", "6"], "--trainable-layers"),
        (vec!["detector", "train", "--images", &em, "--labels", &lb, "--out", &o], "no labelled image found"),
        (vec!["eval", "localize", "--images", &im, "--truth", &lb, "--out", &o, "--detector", &lb, "--val-split", "1.5"], "--val-split"),
        (vec!["train", "--images", &im, "--attributes", &lb, "--vectors", &lb, "--detector", &lb, "--out", &o, "--batch", "0"], "--batch"),
        (vec!["classifier", "train", "--images", &im, "--labels", &lb, "--out", &o, "--batch", "1"], "--batch"),
        (vec!["eval", "localize", "--images", &im, "--truth", &lb, "--out", &o], "give --detector"),
        (vec!["demo", "--out", &o, "--boxed", "0"], "--boxed 0"),
    ];
    for (args, says) in cases {
        let (rc, _, err) = engine(&["--device", "cpu"].iter().copied().chain(args.iter().copied()).collect::<Vec<_>>());
        assert_eq!(rc, 2, "{args:?}: {err}");
        let last = err.trim_end().lines().last().unwrap_or_default();
        assert!(last.starts_with("engine: error: ") && last.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
}
