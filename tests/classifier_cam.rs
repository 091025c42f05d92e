//! The CAM baselines' classifier: its shapes, CAM as the class weights times
//! the maps, and Grad-CAM's channel weights against f64 finite differences of
//! the logit (for global average pooling and one linear layer they are
//! w_k / (h w), so Grad-CAM is ReLU(CAM) / (h w)).

use engine::autograd::Graph;
use engine::backend::prelude::*;
use engine::nn::classifier::{cam, forward, grad_cam, head, init_params};
use engine::nn::{add, FrozenBn, Net};
use engine::params::ParamSet;
use engine::rng::Rng;
use engine::tensor::Tensor;
use engine::Cpu;

#[test]
fn grad_cam_weights_match_finite_differences() {
    let b = Cpu::<f64>::new();
    let (k, h, w) = (5, 3, 4);
    let mut rng = Rng::new(7);
    let mut params = ParamSet::default();
    let fc: Vec<f32> = rng.uniforms(k, -1.0, 1.0);
    add(&b, &mut params, "fc.weight", &[1, k], fc.clone(), true).unwrap();
    add(&b, &mut params, "fc.bias", &[1], vec![0.3], true).unwrap();
    let a: Vec<f64> = (0..k * h * w).map(|_| rng.range(-1.0, 2.0)).collect();
    let logit = |a: &[f64]| -> f64 {
        let mut g = Graph::no_grad(b.clone());
        let v = g.input(Tensor { buf: std::sync::Arc::new(b.upload_f64(a).unwrap()), shape: vec![1, k, h, w] });
        let y = head(&mut g, &params, v).unwrap();
        b.download_f64(&g.value(y).buf).unwrap()[0]
    };
    let t = Tensor { buf: std::sync::Arc::new(b.upload_f64(&a).unwrap()), shape: vec![1, k, h, w] };
    let (alpha, map) = grad_cam(&b, &params, t).unwrap();
    let eps = 1e-6;
    for c in 0..k {
        let fd: f64 = (0..h * w).map(|p| {
            let (mut up, mut down) = (a.clone(), a.clone());
            up[c * h * w + p] += eps;
            down[c * h * w + p] -= eps;
            (logit(&up) - logit(&down)) / (2.0 * eps)
        }).sum::<f64>() / (h * w) as f64;
        assert!((alpha[c] - fd).abs() < 1e-7, "channel {c}: {} vs {fd}", alpha[c]);
        assert!((alpha[c] - fc[c] as f64 / (h * w) as f64).abs() < 1e-9);
    }
    let af: Vec<f32> = a.iter().map(|&v| v as f32).collect();
    let m = cam(&af, k, &fc).unwrap();
    for (p, (&gc, &cm)) in map.iter().zip(&m).enumerate() {
        assert!((gc - (cm as f64).max(0.0) / (h * w) as f64).abs() < 1e-5, "pixel {p}: Grad-CAM {gc}, CAM {cm}");
    }
    assert!(map.iter().any(|&v| v == 0.0) && map.iter().any(|&v| v > 0.0), "the ReLU bites somewhere: {map:?}");
    assert!(cam(&af, k, &fc[..3]).is_err());
}

#[test]
fn the_classifier_gives_layer4_maps_and_one_logit() {
    let b = Cpu::<f32>::new();
    let params = init_params(&b, 1).unwrap();
    let bn = FrozenBn::from_params(&b, &params, 1e-5).unwrap();
    let x = Rng::new(2).uniforms(2 * 3 * 64 * 64, 0.0, 1.0);
    let mut g = Graph::no_grad(b.clone());
    let xv = g.input(Tensor::from_host(&b, &x, &[2, 3, 64, 64]).unwrap());
    let mut net = Net::new(&mut g, &params, Some(&bn));
    let (maps, logit) = forward(&mut net, xv).unwrap();
    assert_eq!((g.shape(maps).to_vec(), g.shape(logit).to_vec()), (vec![2, 2048, 2, 2], vec![2, 1]));
    assert!(g.to_host(logit).unwrap().iter().all(|v| v.is_finite()));
    assert_eq!(params.get("fc.weight").unwrap().value.shape, vec![1, 2048]);
    assert!(params.get("layer4.2.conv3.weight").is_ok(), "torchvision's names");
}

#[test]
fn classifier_training_logs_keeps_the_best_and_resumes() {
    use engine::classifier::{labelled_images, train, ClassifierTrainArgs};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = engine::data::synth::SynthConfig { count: 20, size: 64, seed: 9, positive_rate: 0.5 };
    let phantoms = engine::data::synth::write_dataset(&data, &cfg, || {}).unwrap();
    let mut a = ClassifierTrainArgs {
        images: Some(data.join("images")), labels: Some(data.join("truth.jsonl")), image_labels: None, mimic: None,
        labeller: engine::data::mimic::Labeller::Chexpert, finding: "Pneumonia".into(), out: dir.path().join("run"), size: 64, epochs: 2,
        batch: 4, lr: 1e-4, val_split: 0.25, patience: 5, init: None, resume: false, max_steps: Some(2), seed: 1,
    };
    // the phantoms' truth has no finding names: an image with any box is positive
    let items = labelled_images(&a).unwrap();
    assert_eq!(items.len(), 20);
    assert_eq!(items.iter().filter(|x| x.2 > 0.5).count(), phantoms.iter().filter(|p| !p.opacities.is_empty()).count());
    let last = train(Cpu::<f32>::new(), &a).unwrap();
    assert_eq!(last["epoch"], 2);
    assert!(last["val_loss"].as_f64().unwrap().is_finite());
    let (params, meta) = engine::localizer::bundle::load_classifier(&Cpu::<f32>::new(), &dir.path().join("run/model.safetensors")).unwrap();
    assert_eq!((meta.image_size, params.get("fc.weight").unwrap().value.shape.clone()), (64, vec![1, 2048]));
    // resumed with one more epoch: only epoch 3 runs
    a.epochs = 3;
    a.resume = true;
    assert_eq!(train(Cpu::<f32>::new(), &a).unwrap()["epoch"], 3);
    let log = std::fs::read_to_string(dir.path().join("run/log.jsonl")).unwrap();
    assert_eq!(log.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["epoch"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3]);
    // no label source is an error
    let none = ClassifierTrainArgs { labels: None, ..a };
    assert!(labelled_images(&none).unwrap_err().to_string().contains("exactly one"));
}
