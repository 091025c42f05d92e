//! `engine data synth`, `engine detector train` and `engine detector infer`
//! as a user runs them: a tiny training run that writes its checkpoints and
//! JSON log, a killed run that resumes from its last checkpoint, and
//! inference on the sample DICOM/PNG/JPEG files and on a folder with a
//! corrupt file.

mod common;
use common::{engine, ok};
use std::path::Path;
use std::process::{Command, Stdio};


fn synth(dir: &Path, count: usize) {
    ok(engine().args(["data", "synth", "--count", &count.to_string(), "--size", "64", "--seed", "2", "--out"]).arg(dir));
}

fn train(data: &Path, out: &Path, epochs: usize) -> Command {
    let mut c = engine();
    c.args(["detector", "train", "--size", "64", "--batch", "2", "--max-steps", "2", "--optimizer", "adam", "--warmup", "0"])
        .args(["--epochs", &epochs.to_string(), "--images"])
        .arg(data.join("images"))
        .arg("--labels")
        .arg(data.join("labels.csv"))
        .arg("--out")
        .arg(out);
    c
}

#[test]
fn train_writes_checkpoints_and_a_json_log_then_infer_draws() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    synth(&data, 12);
    let (stdout, _) = ok(&mut train(&data, &out, 1));
    let line: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(line["epoch"], 1);
    assert!(line["train_loss_cls"].as_f64().unwrap().is_finite());
    assert!(out.join("model.safetensors").is_file() && out.join("checkpoint.safetensors").is_file());
    assert_eq!(std::fs::read_to_string(out.join("log.jsonl")).unwrap().lines().count(), 1);
    // the model file uses torchvision's names
    let f = engine::weights::read(&out.join("model.safetensors")).unwrap();
    assert!(f.tensors.contains_key("head.classification_head.cls_logits.weight"));
    assert!(f.tensors.contains_key("backbone.body.layer4.2.bn3.running_var"));

    // inference on a folder with one corrupt file: the rest is processed
    let imgs = dir.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    for id in ["phantom-00000", "phantom-00001"] {
        std::fs::copy(data.join(format!("images/{id}.png")), imgs.join(format!("{id}.png"))).unwrap();
    }
    std::fs::write(imgs.join("corrupt.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let (json, csv, draw) = (dir.path().join("d.json"), dir.path().join("d.csv"), dir.path().join("draw"));
    let (stdout, stderr) = ok(engine().args(["detector", "infer", "--checkpoint"]).arg(out.join("model.safetensors")).arg("--images").arg(&imgs)
        .arg("--out").arg(&json).arg("--csv").arg(&csv).arg("--draw").arg(&draw));
    assert!(stdout.contains("2 images, 1 skipped"), "{stdout}");
    assert!(stderr.contains("corrupt.png"), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["images"].as_array().unwrap().len(), 2);
    assert!(v["skipped"][0].as_str().unwrap().ends_with("corrupt.png"));
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert!(csv.starts_with("patientId,PredictionString\nphantom-00000,"), "{csv}");
    let png = engine::data::image::load(&draw.join("phantom-00000.png")).unwrap();
    assert_eq!((png.width, png.height), (64, 64));
}

#[test]
fn a_killed_training_run_resumes_from_its_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    synth(&data, 10);
    let mut child = train(&data, &out, 50).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let ckpt = out.join("checkpoint.safetensors");
    let t0 = std::time::Instant::now();
    while !ckpt.is_file() {
        assert!(t0.elapsed().as_secs() < 300, "no checkpoint after 5 minutes");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let done: usize = engine::weights::read(&ckpt).unwrap().meta("epoch").unwrap();
    assert!(done >= 1 && done < 50);
    // the checkpoint is whole (atomic write) and training goes on after it
    let (stdout, stderr) = ok(train(&data, &out, done + 1).arg("--resume"));
    assert!(stderr.contains(&format!("resuming from {} after epoch {done}", ckpt.display())), "{stderr}");
    let line: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(line["epoch"].as_u64().unwrap() as usize, done + 1);
    assert!(stdout.lines().count() == 1, "only the remaining epoch runs: {stdout}");
}

#[test]
fn infer_reads_the_sample_dicom_png_and_jpeg() {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/samples");
    if !samples.is_dir() {
        eprintln!("SKIPPED: {} not found", samples.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    synth(&data, 6);
    ok(&mut train(&data, &out, 1));
    let json = dir.path().join("s.json");
    let (stdout, _) = ok(engine().args(["detector", "infer", "--checkpoint"]).arg(out.join("model.safetensors")).arg("--images").arg(&samples).arg("--out").arg(&json));
    assert!(stdout.contains("5 images, 0 skipped"), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let dcm = v["images"].as_array().unwrap().iter().find(|i| i["image"].as_str().unwrap().ends_with(".dcm")).unwrap();
    assert_eq!(dcm["width"], 1024);
}

#[test]
fn nan_in_training_stops_with_a_message_and_keeps_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    synth(&data, 8);
    ok(&mut train(&data, &out, 1));
    let before = std::fs::read(out.join("checkpoint.safetensors")).unwrap();
    // an absurd learning rate drives the loss to infinity / NaN
    let o = train(&data, &out, 30).args(["--resume", "--lr", "1e30"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected a failure: {err}");
    assert!(err.contains("loss is not finite") && err.contains("last good checkpoint"), "{err}");
    let after = engine::weights::read(&out.join("checkpoint.safetensors")).unwrap();
    // the checkpoint on disk is a complete one (whatever epoch it reached)
    assert!(after.tensors.values().all(|t| t.data.iter().all(|v| v.is_finite())), "a non-finite checkpoint was written");
    assert!(!before.is_empty());
}

/// A corrupt or truncated checkpoint given to `--resume`: one line naming
/// the file, no panic, and the file left as it was (nothing overwritten).
#[test]
fn a_corrupt_checkpoint_on_resume_is_named_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    synth(&data, 4);
    ok(&mut train(&data, &out, 1));
    let ckpt = out.join("checkpoint.safetensors");
    let whole = std::fs::read(&ckpt).unwrap();
    for (what, bytes) in [("truncated", whole[..whole.len() / 2].to_vec()), ("garbage", b"not a checkpoint".to_vec()), ("empty", Vec::new())] {
        std::fs::write(&ckpt, &bytes).unwrap();
        let o = train(&data, &out, 2).arg("--resume").output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{what}: {err}");
        let last = err.trim_end().lines().last().unwrap_or_default();
        assert!(last.starts_with("engine: error: ") && last.contains("checkpoint.safetensors"), "{what}: {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert_eq!(std::fs::read(&ckpt).unwrap(), bytes, "{what}: the checkpoint was changed");
    }
}
