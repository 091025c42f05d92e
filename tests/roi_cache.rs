//! The ROI cache: shards written as extraction goes, an interrupted
//! extraction resumed with only the images not cached yet, and what comes
//! back is what the attention model needs (N ROIs per set, 256-d features,
//! positive boxes in [0, 1], scores sorted high for the positive set).

use engine::attention::roi_cache::{cached, extract_all, load_all};
use engine::localizer::rois::FEATURE_DIM;
use engine::localizer::Localizer;
use engine::data::synth::{write_dataset, SynthConfig};
use engine::localizer::bundle::ModelMeta;
use engine::nn::retinanet::{init_params, RetinaConfig};
use engine::nn::BnMode;
use engine::Cpu;

#[test]
fn extraction_resumes_with_the_images_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let phantoms = write_dataset(&data, &SynthConfig { count: 10, size: 64, seed: 2, positive_rate: 0.8 }, || {}).unwrap();
    let b = Cpu::<f32>::new();
    let retina = RetinaConfig { num_classes: 1, bn: BnMode::Frozen, trainable_layers: 0, anchor_scale: 0.5 };
    let params = init_params(&b, &retina, 1).unwrap();
    let meta = ModelMeta { retina, image_size: 64 };
    let items: Vec<(String, std::path::PathBuf)> = phantoms.iter().map(|p| (p.id.clone(), data.join(format!("images/{}.png", p.id)))).collect();
    let cache = dir.path().join("rois");
    let loc = Localizer::new(&b, params, meta).unwrap();
    let (n, skipped) = extract_all(&loc, &items[..6], &cache, 12, 4, &|_| {}).unwrap();
    assert_eq!((n, skipped.len()), (6, 0));
    assert_eq!(cached(&cache).unwrap().len(), 6);
    // a second run (as after a kill) extracts only the rest
    let (n, _) = extract_all(&loc, &items, &cache, 12, 4, &|_| {}).unwrap();
    assert_eq!(n, 4);
    let all = load_all(&cache).unwrap();
    assert_eq!(all.len(), 10);
    for r in &all {
        assert_eq!((r.pos.len(), r.neg.len()), (12, 12));
        assert_eq!(r.pos.features.len(), 12 * FEATURE_DIM);
        assert!(r.pos.boxes.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert!(r.pos.scores.windows(2).all(|w| w[0] >= w[1] - 1e-3), "positive ROIs by descending score");
        assert!(r.pos.scores[11] >= r.neg.scores[0] - 1e-3, "positives score above negatives");
        assert_eq!(r.size, (64, 64));
    }
}
