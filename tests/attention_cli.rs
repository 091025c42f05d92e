//! `engine train`, `engine infer` and `engine demo` as a user runs them, on a
//! tiny pipeline of phantoms: training writes its checkpoints and log,
//! inference on the sample DICOM/PNG/JPEG files writes JSON and PNG overlays,
//! a folder with a corrupt file is processed and the file reported, a killed
//! training run resumes from its checkpoint, and a non-finite loss stops
//! training with a message.

mod common;
use common::{engine, ok};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};


/// Phantoms, attributes, word vectors and a detector, in `dir`.
fn prepare(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    ok(engine().args(["data", "synth", "--count", "24", "--size", "64", "--seed", "3", "--out"]).arg(&data));
    ok(engine().args(["text", "extract", "--reports"]).arg(data.join("reports")).arg("--out").arg(dir.join("a.jsonl")));
    ok(engine().args(["text", "word2vec", "--dim", "16", "--epochs", "2", "--min-count", "2", "--corpus"]).arg(data.join("reports")).arg("--out").arg(dir.join("w.safetensors")));
    ok(engine().args(["detector", "train", "--size", "64", "--batch", "4", "--epochs", "1", "--max-steps", "1", "--anchor-scale", "0.5", "--images"])
        .arg(data.join("images")).arg("--labels").arg(data.join("labels.csv")).arg("--out").arg(dir.join("det")));
    data
}

fn train(dir: &Path, data: &Path, out: &str, epochs: usize) -> Command {
    let mut c = engine();
    c.args(["train", "--top-n", "20", "--batch", "8", "--val-split", "0.2", "--test-split", "0", "--epochs", &epochs.to_string(), "--images"])
        .arg(data.join("images")).arg("--attributes").arg(dir.join("a.jsonl")).arg("--vectors").arg(dir.join("w.safetensors"))
        .arg("--detector").arg(dir.join("det/model.safetensors")).arg("--out").arg(dir.join(out));
    c
}

#[test]
fn train_then_infer_on_samples_and_a_folder_with_a_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepare(dir.path());
    let (stdout, _) = ok(&mut train(dir.path(), &data, "attn", 2));
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["epoch"], 2);
    assert!(last["val_attribute_accuracy"].as_f64().unwrap() > 0.0);
    let model = dir.path().join("attn/model.safetensors");
    assert!(model.is_file() && dir.path().join("attn/checkpoint.safetensors").is_file());
    assert!(dir.path().join("attn/rois/rois-00000.safetensors").is_file());

    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/samples");
    if samples.is_dir() {
        let (json, draw) = (dir.path().join("p.json"), dir.path().join("draw"));
        let (stdout, _) = ok(engine().arg("infer").arg("--checkpoint").arg(&model).arg("--images").arg(&samples).arg("--out").arg(&json).arg("--draw").arg(&draw));
        assert!(stdout.contains("5 images, 0 skipped"), "{stdout}");
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let imgs = v["images"].as_array().unwrap();
        assert_eq!(imgs.len(), 5);
        for im in imgs {
            let b = &im["boxes"][0];
            let (w, h) = (im["width"].as_f64().unwrap(), im["height"].as_f64().unwrap());
            assert!(b["x2"].as_f64().unwrap() <= w + 1.0 && b["y2"].as_f64().unwrap() <= h + 1.0, "{im}");
            assert!(b["alpha"].as_f64().unwrap() > 0.0);
            let p = im["attributes"][0]["probability"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&p));
            let stem = Path::new(im["image"].as_str().unwrap()).file_stem().unwrap().to_string_lossy().to_string();
            let png = engine::data::image::load(&draw.join(format!("{stem}.png"))).unwrap();
            assert_eq!((png.width as f64, png.height as f64), (w, h));
        }
    } else {
        eprintln!("SKIPPED (samples): {} not found", samples.display());
    }

    let mixed = dir.path().join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    std::fs::copy(data.join("images/phantom-00001.png"), mixed.join("a.png")).unwrap();
    std::fs::write(mixed.join("broken.jpg"), b"\xff\xd8\xff\xe0 not a jpeg").unwrap();
    let (stdout, stderr) = ok(engine().arg("infer").arg("--checkpoint").arg(&model).arg("--images").arg(&mixed).arg("--out").arg(dir.path().join("m.json")));
    assert!(stdout.contains("1 images, 1 skipped") && stderr.contains("broken.jpg"), "{stdout}{stderr}");
}

#[test]
fn a_killed_run_resumes_and_a_non_finite_loss_stops() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepare(dir.path());
    let mut child = train(dir.path(), &data, "attn", 500).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let ckpt = dir.path().join("attn/checkpoint.safetensors");
    let t0 = std::time::Instant::now();
    while !ckpt.is_file() {
        assert!(t0.elapsed().as_secs() < 300, "no checkpoint after 5 minutes");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    let done: usize = engine::weights::read(&ckpt).unwrap().meta("epoch").unwrap();
    assert!(done >= 1 && done < 500);
    let (stdout, stderr) = ok(train(dir.path(), &data, "attn", done + 1).arg("--resume"));
    assert!(stderr.contains(&format!("after epoch {done}")), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    // an absurd learning rate: the run stops with a message and the checkpoint on disk stays finite
    let o = train(dir.path(), &data, "attn", done + 20).args(["--resume", "--lr", "1e30", "--clip", "1e30"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("not finite") && err.contains("last good checkpoint"), "{err}");
    let f = engine::weights::read(&ckpt).unwrap();
    assert!(f.tensors.iter().filter(|(k, _)| !k.starts_with("optimizer.")).all(|(_, t)| t.data.iter().all(|v| v.is_finite())));
}

#[test]
fn demo_runs_end_to_end_and_prints_the_table() {
    let dir = tempfile::tempdir().unwrap();
    // boxes for 12 of the 24 training phantoms only (6 of the 30 are held out)
    let args = ["demo", "--count", "30", "--size", "64", "--detector-steps", "2", "--attention-epochs", "2", "--top-n", "20", "--boxed", "12", "--classifier-epochs", "1", "--classifier-size", "64", "--out"];
    let (stdout, _) = ok(engine().args(args).arg(dir.path()));
    // the seven rows of the paper's table, through `engine eval localize`
    for row in ["| detector |", "| attention model |", "| attention model (ablation) |", "| CAM |", "| Grad-CAM |", "| for context: best ROI (bound) |", "| for context: random ROI (mean) |"] {
        assert!(stdout.contains(row), "no row {row:?} in\n{stdout}");
    }
    assert!(dir.path().join("eval/eval.json").is_file() && dir.path().join("eval/per_image.csv").is_file() && dir.path().join("eval/draw/contact_sheet.png").is_file());
    assert!(dir.path().join("ablation/model.safetensors").is_file() && dir.path().join("classifier/model.safetensors").is_file());
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("demo.json")).unwrap()).unwrap();
    assert_eq!(r["rois_per_image"], 20);
    assert_eq!(r["boxed_training_phantoms"], 12);
    let labels = std::fs::read_to_string(dir.path().join("data/labels_train.csv")).unwrap();
    let ids: std::collections::BTreeSet<&str> = labels.lines().skip(1).filter_map(|l| l.split(',').next()).collect();
    assert_eq!(ids.len(), 12, "the detector's labels hold 12 phantoms: {ids:?}");
    let attrs = std::fs::read_to_string(dir.path().join("text/attributes_train.jsonl")).unwrap();
    assert_eq!(attrs.lines().count(), 24, "the attention model still reads every training report");
    let acc = |k: &str| -> Vec<f64> { r["iou_accuracy"][k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect() };
    let (attn, best, random) = (acc("attention_top_box"), acc("best_roi"), acc("random_roi"));
    for k in ["detector_top_box", "ablation_top_box", "cam_top_box", "grad_cam_top_box"] {
        assert_eq!(acc(k).len(), 3, "{k}");
    }
    assert_eq!(attn.len(), 3);
    // the attention model's top box is one of the ROIs: it cannot beat the best of them, nor can a random one
    for t in 0..3 {
        assert!(attn[t] <= best[t] && random[t] <= best[t] && best[t] <= 1.0, "threshold {t}: attention {attn:?}, best {best:?}, random {random:?}");
    }
    // the evaluation saw the 6 held-out phantoms only, never a training one
    assert_eq!(r["held_out"], 6);
    let csv = std::fs::read_to_string(dir.path().join("eval/per_image.csv")).unwrap();
    assert!(csv.lines().skip(1).all(|l| ["phantom-00024", "phantom-00025", "phantom-00026", "phantom-00027", "phantom-00028", "phantom-00029"].iter().any(|id| l.starts_with(id))), "{csv}");
    assert!(r["held_out_with_pneumonia"].as_u64().unwrap() >= 1);
    for k in ["detector", "attention"] {
        let ratio = r["top_box_area_over_truth"][k].as_f64().unwrap();
        assert!(ratio.is_finite() && ratio > 0.0, "{k} area ratio {ratio}");
    }
    assert!(stdout.contains("top box area / truth area") && stdout.contains("distinct top boxes"), "{stdout}");
    let distinct = |k: &str| r["distinct_top_boxes"][k].as_u64().unwrap();
    assert!((1..=r["held_out_with_pneumonia"].as_u64().unwrap()).contains(&distinct("attention")) && distinct("detector") >= 1 && distinct("truth") >= 1);
    // the same command again: the CPU demo is reproducible (word2vec on one thread)
    let again = tempfile::tempdir().unwrap();
    ok(engine().args(args).arg(again.path()));
    let r2: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(again.path().join("demo.json")).unwrap()).unwrap();
    for k in ["iou_accuracy", "top_box_area_over_truth", "distinct_top_boxes"] {
        assert_eq!(r[k], r2[k], "{k} differs between two runs of the same demo");
    }
    assert_eq!(r["attention_last_epoch"]["train_loss"], r2["attention_last_epoch"]["train_loss"]);
    // no boxes at all: a message before any work, nothing written
    let none = tempfile::tempdir().unwrap();
    let out = engine().args(["demo", "--boxed", "0", "--out"]).arg(none.path().join("demo")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--boxed 0"), "{err}");
    assert!(!none.path().join("demo").exists());
}

/// The phantoms of `data` laid out as MIMIC-CXR-JPG (two frontal images and
/// one lateral per patient's study, reports plain or gzipped, the split
/// table by patient) under `root`; the dicom_id of phantom i is `d<i>`.
fn mimic_tree(data: &Path, root: &Path) {
    use std::io::Write;
    let mut meta = String::from("dicom_id,subject_id,study_id,ViewPosition\n");
    let mut split = String::from("dicom_id,study_id,subject_id,split\n");
    for i in 0..24 {
        let (sub, st) = (10000000 + i / 2, 50000000 + i / 2);
        let dir = root.join(format!("files/p10/p{sub}/s{st}"));
        std::fs::create_dir_all(&dir).unwrap();
        // the loader reads images by their content, so the PNG serves as the JPEG
        std::fs::copy(data.join(format!("images/phantom-{i:05}.png")), dir.join(format!("d{i}.jpg"))).unwrap();
        let s = ["train", "validate", "test"][(i / 2) % 3];
        meta += &format!("d{i},{sub},{st},PA\n");
        split += &format!("d{i},{st},{sub},{s}\n");
        if i % 2 == 0 {
            // the study's report: the first phantom's (plain), or gzipped for every other study
            let report = std::fs::read_to_string(data.join(format!("reports/phantom-{i:05}.txt"))).unwrap();
            let txt = root.join(format!("files/p10/p{sub}/s{st}.txt"));
            if i % 4 == 0 {
                std::fs::write(&txt, report).unwrap();
            } else {
                let mut e = flate2::write::GzEncoder::new(std::fs::File::create(txt.with_extension("txt.gz")).unwrap(), flate2::Compression::default());
                e.write_all(report.as_bytes()).unwrap();
                e.finish().unwrap();
            }
            meta += &format!("l{i},{sub},{st},LATERAL\n");
        }
    }
    std::fs::write(root.join("mimic-cxr-2.0.0-metadata.csv"), meta).unwrap();
    std::fs::write(root.join("mimic-cxr-2.0.0-split.csv"), split).unwrap();
}

#[test]
fn text_extract_word2vec_and_train_read_a_mimic_root() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepare(dir.path());
    let root = dir.path().join("mimic");
    mimic_tree(&data, &root);
    // one line per frontal image, named by its dicom_id, with its study's report
    let attrs = dir.path().join("m.jsonl");
    ok(engine().args(["text", "extract", "--json", "--reports"]).arg(&root).arg("--out").arg(&attrs));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&attrs).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 24, "{ids:?}");
    assert!((0..24).all(|i| ids.contains(&format!("d{i}").as_str())) && !ids.iter().any(|id| id.starts_with('l')), "{ids:?}");
    let by_id = |id: &str| lines.iter().find(|l| l["id"] == id).unwrap().clone();
    assert_eq!(by_id("d2")["attributes"], by_id("d3")["attributes"], "two images of one study share its (gzipped) report");
    // word2vec reads each study's report once: 12 reports, not 24
    let (stdout, _) = ok(engine().args(["text", "word2vec", "--json", "--dim", "8", "--epochs", "1", "--min-count", "1", "--corpus"]).arg(&root).arg("--out").arg(dir.path().join("mw.safetensors")));
    let w: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(w["reports"], 12, "{w}");
    // training finds the images in the tree and keeps MIMIC's split
    let (_, stderr) = ok(engine().args(["train", "--top-n", "20", "--batch", "8", "--epochs", "1", "--images"]).arg(&root).arg("--attributes").arg(&attrs)
        .arg("--vectors").arg(dir.path().join("w.safetensors")).arg("--detector").arg(dir.path().join("det/model.safetensors")).arg("--out").arg(dir.path().join("mattn")));
    assert!(stderr.contains("ROIs of 24 images") && stderr.contains("MIMIC-CXR's split"), "{stderr}");
    let f = engine::weights::read(&dir.path().join("mattn/model.safetensors")).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&f.metadata["engine_attention"]).unwrap();
    let test: Vec<&str> = meta["test_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(!test.is_empty() && test.iter().all(|id| ["d4", "d5", "d10", "d11", "d16", "d17", "d22", "d23"].contains(id)), "test ids {test:?} are not MIMIC's test split");
}
