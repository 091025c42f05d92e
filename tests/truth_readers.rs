//! Truth readers on the real files of `../shared/data` (skipped when absent)
//! and on small files made here: the three box sources of the boxed NIH
//! images, ChestX-ray8's full box list, NIH image labels, the phantoms'
//! truth.jsonl, and the errors that name file and line.

use engine::data::truth::{image_key, read_image_labels, read_truth};
use std::path::PathBuf;

fn shared(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(rel);
    if p.exists() { Some(p) } else { eprintln!("SKIPPED: {} not found", p.display()); None }
}

#[test]
fn the_three_box_sources_of_the_boxed_nih_images() {
    let Some(dir) = shared("nih-real/boxed") else { return };
    // NIH's own list: two Pneumonia boxes, float coordinates, the odd header
    let nih = read_truth(&dir.join("BBox_List_2017.csv")).unwrap();
    assert_eq!((nih.images.len(), nih.box_count()), (2, 2));
    let b = nih.images["00022084_000"][0].clone();
    assert_eq!(b.label, "Pneumonia");
    assert!((b.bbox[0] - 209.92).abs() < 1e-3 && (b.bbox[2] - (209.92 + 763.448_9)).abs() < 1e-2, "{:?}", b.bbox);
    assert!(nih.warnings.is_empty(), "{:?}", nih.warnings);
    // RSNA's: 9 of the 11 images (two are not in RSNA), negatives listed without boxes
    let rsna = read_truth(&dir.join("rsna_labels.csv")).unwrap();
    assert_eq!((rsna.images.len(), rsna.box_count()), (9, 10));
    assert!(rsna.images["00000442_000"].is_empty());
    assert_eq!(rsna.boxes("00000820_000"), vec![[218.0, 667.0, 476.0, 991.0], [756.0, 556.0, 981.0, 997.0]]);
    // the table of all three: 21 boxes; its rsna rows equal the RSNA file's
    let table = read_truth(&dir.join("boxes.csv")).unwrap();
    assert_eq!(table.box_count(), 21);
    let from = |s: &str| table.images.values().flatten().filter(|b| b.source == s).count();
    assert_eq!((from("rsna"), from("nih_bbox2017"), from("chestx_det")), (10, 2, 9));
    for (id, v) in &table.images {
        let r: Vec<_> = v.iter().filter(|b| b.source == "rsna").map(|b| b.bbox).collect();
        assert_eq!(r, rsna.boxes(id), "{id}");
    }
    assert_eq!(table.clone().only("consolidation").box_count(), 9);
    // image labels: `A|B`, and No Finding is none
    let labels = read_image_labels(&dir.join("Data_Entry_2017.csv")).unwrap();
    assert_eq!(labels.len(), 11);
    assert_eq!(labels["00001933_000"], vec!["Consolidation", "Pneumonia"]);
    assert!(labels.values().any(|v| v.len() >= 2));
}

#[test]
fn chestxray8_box_list_has_120_pneumonia_boxes() {
    let Some(p) = shared("chestxray8/BBox_List_2017.csv") else { return };
    let t = read_truth(&p).unwrap();
    assert_eq!(t.box_count(), 984);
    let pneumonia = t.only("Pneumonia");
    assert_eq!(pneumonia.box_count(), 120);
    assert!(pneumonia.images.values().flatten().all(|b| b.bbox[2] <= 1024.5 && b.bbox[3] <= 1024.5 && b.bbox[0] >= 0.0));
}

#[test]
fn made_up_files_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let t = read_truth(&w("t.csv", "image,x,y,width,height,label,reader\na.png,1,2,3,4,Pneumonia,r1\nb.png,,,,,,\n")).unwrap();
    assert_eq!(t.boxes("a"), vec![[1.0, 2.0, 4.0, 6.0]]);
    assert!(t.images["b"].is_empty());
    assert!(t.warnings.iter().any(|m| m.contains("\"reader\"")), "{:?}", t.warnings);
    let err = read_truth(&w("bad.csv", "image,x,y,width,height\na.png,1,2,-3,4\n")).unwrap_err().to_string();
    assert!(err.contains("bad.csv") && err.contains("line 2"), "{err}");
    let err = read_truth(&w("nan.csv", "Image Index,Finding Label,Bbox [x,y,w,h],,,\na.png,Mass,1,two,3,4\n")).unwrap_err().to_string();
    assert!(err.contains("nan.csv") && err.contains("line 2") && err.contains("\"two\""), "{err}");
    let err = read_truth(&w("what.csv", "id,box\n1,2\n")).unwrap_err().to_string();
    assert!(err.contains("unknown box format"), "{err}");
    let j = read_truth(&w("truth.jsonl", "{\"id\":\"p1\",\"opacities\":[{\"bbox\":[1,2,30,40],\"severity\":\"mild\"}]}\n{\"id\":\"p2\",\"opacities\":[]}\n")).unwrap();
    assert_eq!((j.boxes("p1"), j.images["p2"].len()), (vec![[1.0, 2.0, 30.0, 40.0]], 0));
    assert!(read_truth(&w("bad.jsonl", "{\"id\":\"p1\",\"opacities\":[{\"bbox\":[5,2,3,40]}]}\n")).unwrap_err().to_string().contains("line 1"));
    assert_eq!(image_key("files/p10/s5/abc.JPG"), "abc");
    assert_eq!(image_key("00022084_000"), "00022084_000");
}

#[test]
fn the_phantoms_truth_jsonl_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = engine::data::synth::SynthConfig { count: 6, size: 64, seed: 3, positive_rate: 0.5 };
    let phantoms = engine::data::synth::write_dataset(dir.path(), &cfg, || {}).unwrap();
    let t = read_truth(&dir.path().join("truth.jsonl")).unwrap();
    assert_eq!(t.images.len(), 6);
    for p in &phantoms {
        assert_eq!(t.boxes(&p.id), p.opacities.iter().map(|o| o.bbox).collect::<Vec<_>>(), "{}", p.id);
    }
}
