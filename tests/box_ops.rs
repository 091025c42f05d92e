//! The box geometry as backend ops (IoU, box coder, anchors, NMS, matching)
//! against the host reference of `engine::geometry`, on random boxes with
//! overlaps, score ties and a degenerate box. The CPU backend runs here; the
//! same check runs the CUDA kernels on the GPU machine (ignored elsewhere).

use engine::backend::prelude::*;
use engine::geometry::anchors::{anchors_for, pyramid_grids};
use engine::geometry::boxes::{box_iou, clip, BoxCoder, BoxF};
use engine::geometry::matcher::Matcher;
use engine::geometry::nms::nms;
use engine::rng::Rng;

/// Boxes inside a 512 image, 4-300 px wide; some are near-copies of earlier ones.
fn random_boxes(rng: &mut Rng, n: usize) -> Vec<BoxF> {
    let mut out: Vec<BoxF> = Vec::with_capacity(n);
    for i in 0..n {
        if i > 0 && rng.uniform() < 0.3 {
            let b = out[rng.below(i)];
            let j = |rng: &mut Rng| rng.range(-6.0, 6.0) as f32;
            out.push([b[0] + j(rng), b[1] + j(rng), b[2] + j(rng), b[3] + j(rng)]);
        } else {
            let (x, y) = (rng.range(0.0, 480.0) as f32, rng.range(0.0, 480.0) as f32);
            out.push([x, y, x + rng.range(4.0, 300.0) as f32, y + rng.range(4.0, 300.0) as f32]);
        }
    }
    out
}

fn flat(b: &[BoxF]) -> Vec<f32> {
    b.iter().flatten().copied().collect()
}

fn max_rel(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).map(|(&g, &w)| ((g - w).abs() / w.abs().max(1.0)) as f64).fold(0.0, f64::max)
}

/// Every box op of backend `b` against `engine::geometry` (IoUs, anchors, NMS
/// keeps and matches exactly; the coder, which uses exp and log, to 1e-5).
fn box_ops_match_host<B: Backend>(b: &B, seed: u64) {
    let mut rng = Rng::new(seed);
    let up = |v: &[BoxF]| b.upload(&flat(v)).unwrap();

    let (x, y) = (random_boxes(&mut rng, 300), random_boxes(&mut rng, 200));
    let iou = b.download(&b.box_iou(&up(&x), &up(&y)).unwrap()).unwrap();
    assert_eq!(iou, box_iou(&x, &y), "box_iou");

    let coder = BoxCoder { weights: [1.0, 1.0, 1.0, 1.0], ..Default::default() };
    let weighted = BoxCoder { weights: [10.0, 10.0, 5.0, 5.0], ..Default::default() };
    for c in [coder, weighted] {
        let d = b.download(&b.box_encode(&c, &up(&x[..200]), &up(&y)).unwrap()).unwrap();
        let want: Vec<f32> = x[..200].iter().zip(&y).flat_map(|(g, a)| c.encode(g, a)).collect();
        assert!(max_rel(&d, &want) < 1e-5, "box_encode {:?}: {}", c.weights, max_rel(&d, &want));
        // regressions up to +-6 so that some pass the exp clamp
        let reg: Vec<f32> = rng.uniforms(4 * y.len(), -6.0, 6.0);
        for size in [None, Some([400, 300])] {
            let got = b.download(&b.box_decode(&c, &b.upload(&reg).unwrap(), &up(&y), size).unwrap()).unwrap();
            let want: Vec<f32> = reg.chunks(4).zip(&y).flat_map(|(r, a)| {
                let bx = c.decode(&[r[0], r[1], r[2], r[3]], a);
                size.map_or(bx, |s| clip(&bx, s))
            }).collect();
            assert!(max_rel(&got, &want) < 1e-5, "box_decode {:?} clip {size:?}: {}", c.weights, max_rel(&got, &want));
        }
    }

    for (size, scale) in [([512, 512], 1.0), ([64, 96], 0.25)] {
        let grids = pyramid_grids(size);
        let got = b.download(&b.anchors(size, &grids, scale).unwrap()).unwrap();
        assert_eq!(got, flat(&anchors_for(size, &grids, scale)), "anchors {size:?} x{scale}");
    }

    // NMS over several 64-box blocks, with tied scores (0.01 steps)
    let boxes = random_boxes(&mut rng, 1500);
    let scores: Vec<f32> = (0..boxes.len()).map(|_| (rng.uniform() * 100.0).floor() as f32 / 100.0).collect();
    for thr in [0.3, 0.5, 0.7] {
        let got = b.nms(&up(&boxes), &b.upload(&scores).unwrap(), thr).unwrap();
        let want = nms(&boxes, &scores, thr);
        assert!(want.len() > 50 && want.len() < boxes.len(), "a weak NMS case ({} kept of {})", want.len(), boxes.len());
        assert_eq!(got, want, "nms at {thr}");
    }
    assert!(b.nms(&up(&boxes[..3]), &b.upload(&scores[..2]).unwrap(), 0.5).is_err(), "nms: boxes and scores differ");

    // matching against the 512 anchors, with a zero-area box (torchvision's low-quality rule then matches all its 0-IoU anchors)
    let anchors = anchors_for([512, 512], &pyramid_grids([512, 512]), 1.0);
    let mut gt = random_boxes(&mut rng, 4);
    gt.push([600.0, 600.0, 600.0, 600.0]);
    for m in [Matcher::default(), Matcher { allow_low_quality: false, ..Default::default() }] {
        for g in [&gt[..4], &gt[..]] {
            let got = b.match_anchors(&m, &up(g), &up(&anchors)).unwrap();
            let want = m.assign(g, &anchors);
            assert!(want.iter().any(|&v| v >= 0) && (g.len() > 4 || want.iter().any(|&v| v < 0)), "a trivial matching case");
            assert_eq!(got, want, "match_anchors, {} boxes, low quality {}", g.len(), m.allow_low_quality);
        }
    }
    assert!(b.match_anchors(&Matcher::default(), &b.zeros(6).unwrap(), &up(&anchors)).is_err(), "6 values are not boxes");
    assert!(b.box_iou(&b.zeros(6).unwrap(), &up(&y)).is_err(), "6 values are not boxes");
}

#[test]
fn cpu_box_ops_match_host_reference() {
    box_ops_match_host(&engine::Cpu::<f32>::new(), 7);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cuda_box_ops_match_host_reference() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("seed {seed}");
    box_ops_match_host(&engine::Cuda::new(0).expect("this test needs a working CUDA GPU"), seed);
}
