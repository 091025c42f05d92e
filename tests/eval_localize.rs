//! `engine eval localize` end to end on phantoms with an untrained detector
//! and classifier: the report's top-1 figures equal what its per-image CSV
//! says, the intervals hold the figures, the CAM and Grad-CAM rows are there
//! in the paper's order, every image is counted, and bad arguments are errors.

use engine::eval::localize::{run, table, LocalizeArgs};
use engine::localizer::bundle::{save_classifier, save_model, ClassifierMeta, ModelMeta};
use engine::nn::retinanet::{init_params, RetinaConfig};
use engine::nn::BnMode;
use engine::Cpu;

#[test]
fn the_table_agrees_with_the_per_image_csv() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = engine::data::synth::SynthConfig { count: 12, size: 64, seed: 5, positive_rate: 0.75 };
    let phantoms = engine::data::synth::write_dataset(&data, &cfg, || {}).unwrap();
    let b = Cpu::<f32>::new();
    let retina = RetinaConfig { num_classes: 1, bn: BnMode::Frozen, trainable_layers: 0, anchor_scale: 0.5 };
    let model = dir.path().join("det.safetensors");
    save_model(&b, &init_params(&b, &retina, 3).unwrap(), &ModelMeta { retina, image_size: 64 }, &model).unwrap();
    let classifier = dir.path().join("cls.safetensors");
    let cls_meta = ClassifierMeta { image_size: 64, finding: "opacity".into() };
    save_classifier(&b, &engine::nn::classifier::init_params(&b, 4).unwrap(), &cls_meta, &classifier).unwrap();
    let args = LocalizeArgs {
        images: data.join("images"), truth: data.join("truth.jsonl"), finding: None, detector: Some(model), attention: None, ablation: None,
        classifier: Some(classifier), cam_threshold: None,
        out: dir.path().join("eval"), draw: Some(dir.path().join("draw")), val_split: 0.25, resamples: 200, seed: 1, batch: 4, strict: true,
    };
    let r = run(b.clone(), &args).unwrap();
    let boxed = phantoms.iter().filter(|p| !p.opacities.is_empty()).count();
    assert_eq!((r["images"].as_u64(), r["boxed_images"].as_u64()), (Some(12), Some(boxed as u64)));
    assert_eq!(r["validation_images"].as_u64().unwrap() + r["reported_images"].as_u64().unwrap(), 12);
    let csv = std::fs::read_to_string(dir.path().join("eval/per_image.csv")).unwrap();
    assert!(csv.starts_with("image,width,height,truth_boxes,detector_x1,detector_y1,detector_x2,detector_y2,detector_iou,CAM_x1"), "{}", csv.lines().next().unwrap());
    let ious: Vec<f64> = csv.lines().skip(1).filter(|l| !l.split(',').nth(3).unwrap().starts_with('0')).map(|l| l.split(',').nth(8).unwrap().parse().unwrap_or(0.0)).collect();
    assert_eq!(ious.len(), boxed);
    let det = &r["methods"][0];
    assert_eq!(det["method"], "detector");
    for (k, t) in [0.25, 0.5, 0.75].iter().enumerate() {
        let ci = &det["top1"][k];
        let want = ious.iter().filter(|&&v| v > *t).count() as f64 / boxed as f64;
        assert!((ci["value"].as_f64().unwrap() - want).abs() < 1e-9, "IoU@{t}: {ci} vs {want}");
        assert!(ci["lo"].as_f64().unwrap() <= want + 1e-12 && want <= ci["hi"].as_f64().unwrap() + 1e-12);
    }
    let rows: Vec<&str> = r["methods"].as_array().unwrap().iter().map(|m| m["method"].as_str().unwrap()).collect();
    assert_eq!(rows, ["detector", "CAM", "Grad-CAM"]);
    for m in r["methods"].as_array().unwrap() {
        for ci in m["top1"].as_array().unwrap() {
            let (v, lo, hi) = (ci["value"].as_f64().unwrap(), ci["lo"].as_f64().unwrap(), ci["hi"].as_f64().unwrap());
            assert!((0.0..=1.0).contains(&v) && lo <= v + 1e-12 && v <= hi + 1e-12, "{m}");
        }
    }
    assert!(table(&r).contains("| detector |") && table(&r).contains("| Grad-CAM |"));
    // one PNG per image, its CAM and Grad-CAM overlays, and the contact sheet
    assert_eq!(std::fs::read_dir(dir.path().join("draw")).unwrap().count(), 12 * 3 + 1);
    assert!(dir.path().join(format!("draw/{}_grad_cam.png", phantoms[0].id)).is_file());
    assert!(dir.path().join("draw/contact_sheet.png").is_file());
    // neither model given; a truth file that names none of the images
    let none = LocalizeArgs { detector: None, classifier: None, ..args.clone() };
    assert!(run(b.clone(), &none).unwrap_err().to_string().contains("--detector"));
    std::fs::write(dir.path().join("other.csv"), "image,x,y,width,height\nzzz.png,1,1,5,5\n").unwrap();
    let other = LocalizeArgs { truth: dir.path().join("other.csv"), ..args };
    assert!(run(b, &other).unwrap_err().to_string().contains("no image"));
}
