//! `engine eval severity`: the score and metadata readers (comment lines,
//! malformed rows named by line), the lung-brightness floor, both
//! protocols on a made-up case whose answer is known, and the command on the
//! real COVID-19 images of `../shared/data/covid-severity` when present.

mod common;
use common::{engine, ok};
use engine::data::image::Gray;
use engine::data::severity::{read_patients, read_scores};
use engine::eval::severity::{lung_brightness, protocols};

#[test]
fn scores_skip_comments_and_name_malformed_rows() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("scores.csv");
    std::fs::write(&p, "## a comment,,\n## another,,\nfilename,geographic_mean,opacity_mean\na.png,6.0,4.0\nb.jpg,x,1\nc.jpg,9.5,1\n,1,1\nd.jpeg,0,0\n").unwrap();
    let (s, bad) = read_scores(&p).unwrap();
    assert_eq!(s.keys().collect::<Vec<_>>(), vec!["a.png", "d.jpeg"]);
    assert_eq!((s["a.png"].geographic, s["a.png"].opacity), (6.0, 4.0));
    assert_eq!(bad.len(), 3, "{bad:?}");
    // lines of the file, the comments counted
    assert!(bad[0].contains("line 5") && bad[0].contains("b.jpg"), "{bad:?}");
    assert!(bad[1].contains("line 6") && bad[1].contains("c.jpg"), "{bad:?}");
    assert!(bad[2].contains("line 7") && bad[2].contains("empty filename"), "{bad:?}");
    std::fs::write(&p, "filename,geographic\na.png,1\n").unwrap();
    assert!(read_scores(&p).unwrap_err().to_string().contains("geographic_mean"));
    let m = dir.path().join("metadata.csv");
    std::fs::write(&m, "patientid,offset,filename,clinical_notes\n7,0,a.png,\"two\nlines\"\n7,3,d.jpeg,\n8,,e.png,x\n").unwrap();
    let pt = read_patients(&m).unwrap();
    assert_eq!((pt["a.png"].as_str(), pt["d.jpeg"].as_str(), pt["e.png"].as_str()), ("7", "7", "8"));
}

#[test]
fn lung_brightness_is_the_mask_mean_in_image_standard_deviations() {
    // 4 pixels: 0, 0, 1, 1 (mean 0.5, sd 0.5); the mask covers the two bright ones
    let img = Gray { width: 2, height: 2, data: vec![0.0, 0.0, 1.0, 1.0] };
    let mask = Gray { width: 2, height: 2, data: vec![0.0, 0.0, 1.0, 1.0] };
    assert!((lung_brightness(&img, &mask).unwrap() - 1.0).abs() < 1e-12);
    let dark = Gray { width: 2, height: 2, data: vec![1.0, 0.0, 0.0, 0.0] };
    assert!((lung_brightness(&img, &dark).unwrap() + 1.0).abs() < 1e-12);
    assert!(lung_brightness(&img, &Gray { width: 1, height: 4, data: vec![1.0; 4] }).unwrap_err().to_string().contains("mask is 1x4"));
    assert!(lung_brightness(&img, &Gray { width: 2, height: 2, data: vec![0.0; 4] }).is_err());
}

#[test]
fn protocols_recover_an_exact_line() {
    // y = 8 x exactly: every fold fits it, so R² 1, MAE 0, r 1; a reversed feature gives r -1
    let x: Vec<f64> = (0..30).map(|i| (i as f64 * 0.37) % 1.0).collect();
    let y: Vec<f64> = x.iter().map(|v| 8.0 * v).collect();
    let groups: Vec<String> = (0..30).map(|i| format!("p{}", i / 2)).collect();
    let r = protocols(&x, &y, &groups, 8.0, 5, 10, 1);
    let v = |p: &str| r.pointer(p).unwrap().as_f64().unwrap();
    assert!((v("/paper_5fold/r2/mean") - 1.0).abs() < 1e-9 && v("/paper_5fold/mae/mean") < 1e-9, "{r}");
    assert!((v("/paper_5fold/pearson/mean") - 1.0).abs() < 1e-9 && (v("/cohen_50_splits/pearson/mean") - 1.0).abs() < 1e-9);
    assert!(v("/cohen_50_splits/mae/mean") < 1e-9 && v("/all_images/pearson_p") < 1e-10);
    let neg: Vec<f64> = x.iter().map(|v| 1.0 - v).collect();
    let r = protocols(&neg, &y, &groups, 8.0, 5, 10, 1);
    assert!((r.pointer("/paper_5fold/spearman/mean").unwrap().as_f64().unwrap() + 1.0).abs() < 1e-9);
}

#[test]
fn the_lung_brightness_floor_on_the_real_covid_images() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/covid-severity");
    if !root.is_dir() {
        eprintln!("SKIPPED: {} not found", root.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (stdout, stderr) = ok(engine().args(["eval", "severity", "--images"]).arg(root.join("images")).arg("--scores").arg(root.join("annotations/covid-severity-scores.csv"))
        .arg("--metadata").arg(root.join("metadata.csv")).arg("--masks").arg(root.join("annotations/v7labs-lung-masks")).arg("--out").arg(dir.path()));
    assert!(stdout.contains("| lung brightness (floor) |") && stdout.contains("Cohen"), "{stdout}");
    // the score row of the one image that is not in the collection is named
    assert!(stderr.contains("covid-19-pneumonia-14-PA.png"), "{stderr}");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("severity.json")).unwrap()).unwrap();
    assert_eq!(r["images"], 93);
    let geo = &r["features"][0]["geographic"];
    let p = geo["all_images"]["pearson"].as_f64().unwrap();
    // measured at 0.34 by an independent Python script with the same definition (issue 13)
    assert!((p - 0.34).abs() < 0.02, "lung-brightness Pearson {p}");
    assert_eq!(std::fs::read_to_string(dir.path().join("per_image.csv")).unwrap().lines().count(), 94);
    // Fig. 4: one plot per feature and score
    for name in ["lung_brightness_floor_geographic.png", "lung_brightness_floor_opacity.png"] {
        let png = engine::data::image::load(&dir.path().join(name)).unwrap();
        assert_eq!((png.width, png.height), (800, 600), "{name}");
        assert!(png.data.iter().any(|&v| v < 0.5), "{name} is blank");
    }
}

#[test]
fn unusable_rows_images_and_masks_are_named_and_the_rest_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    let (imgs, masks) = (dir.path().join("images"), dir.path().join("masks"));
    std::fs::create_dir_all(&imgs).unwrap();
    std::fs::create_dir_all(&masks).unwrap();
    let mut scores = String::from("## comment,,\nfilename,geographic_mean,opacity_mean\n");
    for i in 0..8 {
        // brighter lungs for higher scores
        let data: Vec<f32> = (0..64).map(|p| match p % 8 { 0..4 => 0.1 + 0.05 * i as f32, 4 | 5 => 0.0, _ => 1.0 }).collect();
        std::fs::write(imgs.join(format!("i{i}.png")), Gray { width: 8, height: 8, data }.to_png().unwrap()).unwrap();
        if i != 3 {
            let m: Vec<f32> = (0..64).map(|p| if p % 8 < 4 { 1.0 } else { 0.0 }).collect();
            std::fs::write(masks.join(format!("i{i}.png")), Gray { width: 8, height: 8, data: m }.to_png().unwrap()).unwrap();
        }
        scores += &format!("i{i}.png,{},{}\n", i as f64, (i as f64 * 0.75).min(6.0));
    }
    std::fs::write(imgs.join("broken.png"), b"not a png").unwrap();
    scores += "broken.png,1,1\nmissing.png,2,2\ni9.png,high,1\n";
    std::fs::write(dir.path().join("s.csv"), scores).unwrap();
    let out = dir.path().join("out");
    let (stdout, stderr) = ok(engine().args(["eval", "severity", "--images"]).arg(&imgs).arg("--scores").arg(dir.path().join("s.csv"))
        .arg("--masks").arg(&masks).arg("--out").arg(&out));
    for name in ["broken.png", "missing.png", "line 13", "i3.png"] {
        assert!(stderr.contains(name), "{name} not named in\n{stderr}");
    }
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("severity.json")).unwrap()).unwrap();
    // 8 readable images; i3 has no mask, so the floor has 7; 4 things left out
    assert_eq!(r["images"], 8);
    assert_eq!(r["left_out"], 4, "{r}");
    assert!(stdout.contains("4 rows, images or masks left out"), "{stdout}");
    let geo = &r["features"][0]["geographic"];
    assert_eq!(geo["images"], 7);
    // the floor rises with the lungs' brightness, which rises with the score
    assert!((geo["all_images"]["spearman"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{geo}");
}
