//! `engine text extract / word2vec / neighbours` as a user runs them, and the
//! inputs that must give a clear result or message: an empty report, a
//! report without sections, bytes that are not UTF-8, malformed XML.

use std::process::Command;

fn engine(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_engine")).arg("--device").arg("cpu").args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

#[test]
fn extract_handles_odd_reports_and_summarises() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("reports");
    std::fs::create_dir(&r).unwrap();
    std::fs::write(r.join("empty.txt"), "").unwrap();
    std::fs::write(r.join("nosections.txt"), "Right lower lobe opacity concerning for pneumonia.").unwrap();
    std::fs::write(r.join("sections.txt"), "INDICATION: fever\nFINDINGS: No focal consolidation.\nIMPRESSION: No pneumonia.\n").unwrap();
    std::fs::write(r.join("latin1.txt"), b"FINDINGS: Bibasilar pneumonia (caf\xe9 au lait).\n").unwrap();
    std::fs::write(r.join("broken.xml"), "<eCitation><Abstract><AbstractText Label=\"FINDINGS\">x").unwrap();
    let out = dir.path().join("a.jsonl");
    let (ok, stdout, stderr) = engine(&["text", "extract", "--reports", r.to_str().unwrap(), "--out", out.to_str().unwrap(), "--json"]);
    assert!(ok, "{stderr}");
    let s: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(s["reports"], 4);
    assert!(s["skipped_files"][0].as_str().unwrap().contains("broken.xml") && s["skipped_files"][0].as_str().unwrap().contains("malformed XML"));
    assert!(s["not_utf8_files"][0].as_str().unwrap().contains("latin1.txt"));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let by_id = |id: &str| lines.iter().find(|l| l["id"] == id).unwrap().clone();
    assert_eq!(by_id("empty")["status"], "absent");
    assert_eq!(by_id("empty")["empty"], true);
    assert_eq!(by_id("nosections")["status"], "uncertain");
    assert_eq!(by_id("nosections")["attributes"], serde_json::json!(["lower", "right"]));
    assert_eq!(by_id("sections")["status"], "negated");
    assert_eq!(by_id("latin1")["status"], "affirmed");
    assert_eq!(by_id("latin1")["attributes"], serde_json::json!(["basal", "bilateral"]));
    // readable summary without --json
    let (ok, stdout, _) = engine(&["text", "extract", "--reports", r.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(ok && stdout.contains("4 reports") && stdout.contains("skipped: 1 file"), "{stdout}");
    // a missing path is a one-line error
    let (ok, _, stderr) = engine(&["text", "extract", "--reports", "/nonexistent/reports"]);
    assert!(!ok && stderr.trim().lines().count() == 1 && stderr.contains("/nonexistent/reports"), "{stderr}");
}

#[test]
fn word2vec_and_neighbours_on_phantom_reports() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ok, _, e) = engine(&["data", "synth", "--count", "150", "--size", "32", "--out", data.to_str().unwrap()]);
    assert!(ok, "{e}");
    let vec = dir.path().join("w2v.safetensors");
    let (ok, stdout, stderr) = engine(&["text", "word2vec", "--corpus", data.join("reports").to_str().unwrap(), "--dim", "32", "--epochs", "6", "--threads", "1", "--out", vec.to_str().unwrap(), "--json"]);
    assert!(ok, "{stderr}");
    let s: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(s["words_per_second"].as_f64().unwrap() > 0.0);
    assert!(s["loss_last"].as_f64().unwrap() < s["loss_first"].as_f64().unwrap());
    let f = engine::weights::read(&vec).unwrap();
    assert_eq!(f.get("vectors").unwrap().shape[1], 32);
    assert!(f.get("attribute_vectors").is_ok() && f.get("negative_vectors").is_ok());
    let (ok, stdout, _) = engine(&["text", "neighbours", "--vectors", vec.to_str().unwrap(), "Pneumonia", "-k", "3"]);
    assert!(ok && stdout.lines().count() == 3, "{stdout}");
    let (ok, _, stderr) = engine(&["text", "neighbours", "--vectors", vec.to_str().unwrap(), "zebra"]);
    assert!(!ok && stderr.contains("\"zebra\" is not in the vocabulary"), "{stderr}");
}
