//! CUDA against the CPU reference, for every op forward and backward, on
//! fresh random inputs (the seed is printed). Needs a GPU: run with
//! `--include-ignored` on the GPU machine (tools/gpu-check.sh). These fail
//! loudly when CUDA does not work there.

mod common;
use common::{assert_close, cases, f32s, rel_err, run_case};
use engine::backend::cuda::round_tf32;
use engine::backend::prelude::*;
use engine::backend::{Adam, Conv2d, Gemm, Sgd};
use engine::rng::Rng;
use engine::{Cpu, Cuda};

const TOL: f64 = 1e-5;

fn gpu() -> Cuda {
    Cuda::new(0).expect("these tests need a working CUDA GPU")
}

fn fresh_seed() -> u64 {
    let s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("seed {s}");
    s
}

/// Inputs rounded to f32 first, so both backends see the same numbers.
fn rounded(inputs: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    inputs.into_iter().map(|v| v.into_iter().map(|x| x as f32 as f64).collect()).collect()
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn every_op_forward_and_backward_matches_cpu() {
    let (cpu, cuda) = (Cpu::<f32>::new(), gpu());
    let mut rng = Rng::new(fresh_seed());
    let mut failures = Vec::new();
    for case in cases() {
        let inputs = rounded(case.inputs(&mut rng));
        let w_seed = rng.next_u64();
        let a = run_case(&cpu, &case, &inputs, w_seed).unwrap();
        let b = run_case(&cuda, &case, &inputs, w_seed).unwrap_or_else(|e| panic!("{}: {e:#}", case.name));
        let r = std::panic::catch_unwind(|| {
            assert_close(&format!("{} forward", case.name), &f32s(&b.y), &f32s(&a.y), TOL);
            for (i, (ga, gb)) in a.grads.iter().zip(&b.grads).enumerate() {
                if let (Some(ga), Some(gb)) = (ga, gb) {
                    assert_close(&format!("{} grad {i}", case.name), &f32s(gb), &f32s(ga), TOL);
                }
            }
        });
        match r {
            Ok(()) => eprintln!("{:<24} ok", case.name),
            Err(e) => failures.push(e.downcast_ref::<String>().cloned().unwrap_or_default()),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gemm_every_transpose_and_batch_at_size() {
    let (cpu, cuda) = (Cpu::<f32>::new(), gpu());
    let mut rng = Rng::new(fresh_seed());
    // the last two take the split-K path (few tiles, long K: weight gradients)
    for (batch, m, n, k) in [(1, 512, 384, 256), (3, 129, 65, 200), (8, 300, 200, 256), (1, 200, 256, 9600), (1, 64, 4, 64000)] {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let mut g = Gemm::new(batch, m, n, k, ta, tb);
            g.alpha = 0.5;
            g.beta = 2.0;
            let a = rng.normals(batch * m * k);
            let b = rng.normals(batch * k * n);
            let c0 = rng.normals(batch * m * n);
            let mut c_cpu = c0.clone();
            cpu.gemm(&g, &a, &b, &mut c_cpu).unwrap();
            let (da, db) = (cuda.upload(&a).unwrap(), cuda.upload(&b).unwrap());
            let mut dc = cuda.upload(&c0).unwrap();
            cuda.gemm(&g, &da, &db, &mut dc).unwrap();
            assert_close(&format!("gemm {batch}x{m}x{n}x{k} ta={ta} tb={tb}"), &cuda.download(&dc).unwrap(), &c_cpu, TOL);
        }
    }
}

/// `--tf32` convolutions (forward, data and weight gradients) equal an f64
/// CPU convolution of TF32-rounded inputs up to f32 summation, and differ
/// from the unrounded one by TF32's rounding (so the tensor-core path ran).
#[test]
#[ignore = "needs a CUDA GPU"]
fn tf32_convolutions_match_cpu_on_tf32_rounded_inputs() {
    let (cpu, cuda) = (Cpu::<f64>::new(), gpu().with_tf32(true));
    let mut rng = Rng::new(fresh_seed());
    // (x, w, stride, pad, dilation, groups): 64- and 128-row tiles, stride 2, groups and dilation, long K
    let shapes: [([usize; 4], [usize; 4], usize, usize, usize, usize); 6] = [
        ([2, 72, 10, 10], [64, 72, 3, 3], 1, 1, 1, 1),
        ([2, 20, 14, 14], [140, 20, 3, 3], 1, 1, 1, 1),
        ([2, 16, 17, 15], [24, 16, 3, 3], 2, 1, 1, 1),
        ([1, 8, 12, 12], [8, 2, 3, 3], 1, 2, 2, 4),
        ([4, 256, 16, 16], [256, 256, 3, 3], 1, 1, 1, 1),
        ([2, 1024, 8, 8], [128, 1024, 1, 1], 2, 0, 1, 1),
    ];
    let round = |v: &[f32]| v.iter().map(|&x| round_tf32(x)).collect::<Vec<f32>>();
    for (xs, ws, st, pad, dil, groups) in shapes {
        let p = Conv2d::new(&xs, &ws, [st; 2], [pad; 2], [dil; 2], groups).unwrap();
        let (x, w, gy) = (rng.normals(p.x_len()), rng.normals(p.w_len()), rng.normals(p.y_len()));
        let (dx, dw, dgy) = (cuda.upload(&x).unwrap(), cuda.upload(&w).unwrap(), cuda.upload(&gy).unwrap());
        let got = [
            cuda.download(&cuda.conv2d(&p, &dx, &dw, None).unwrap()).unwrap(),
            cuda.download(&cuda.conv2d_backward_data(&p, &dgy, &dw).unwrap()).unwrap(),
            cuda.download(&cuda.conv2d_backward_weight(&p, &dx, &dgy).unwrap()).unwrap(),
        ];
        let on_cpu = |x: &[f32], w: &[f32], gy: &[f32]| {
            let (x, w, gy) = (cpu.upload(x).unwrap(), cpu.upload(w).unwrap(), cpu.upload(gy).unwrap());
            [
                cpu.download(&cpu.conv2d(&p, &x, &w, None).unwrap()).unwrap(),
                cpu.download(&cpu.conv2d_backward_data(&p, &gy, &w).unwrap()).unwrap(),
                cpu.download(&cpu.conv2d_backward_weight(&p, &x, &gy).unwrap()).unwrap(),
            ]
        };
        let rounded = on_cpu(&round(&x), &round(&w), &round(&gy));
        let exact = on_cpu(&x, &w, &gy);
        for (k, what) in ["forward", "data gradient", "weight gradient"].iter().enumerate() {
            let name = format!("tf32 conv {xs:?} * {ws:?} s{st} p{pad} d{dil} g{groups} {what}");
            assert_close(&name, &got[k], &rounded[k], TOL);
            let e = rel_err(&got[k], &exact[k]);
            assert!(e > 5e-5, "{name}: within {e:.1e} of the unrounded f64 result: did it run on the tensor cores?");
            eprintln!("{name}: TF32 rounding error {e:.1e}");
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn optimizers_and_clipping_match_cpu() {
    let (cpu, cuda) = (Cpu::<f32>::new(), gpu());
    let mut rng = Rng::new(fresh_seed());
    let n = 100_003;
    let (p, g) = (rng.normals(n), rng.normals(n));
    // SGD, three steps
    let h = Sgd { lr: 0.01, momentum: 0.9, weight_decay: 1e-4 };
    let (mut pc, mut bc) = (p.clone(), vec![0.0; n]);
    let (mut pd, mut bd) = (cuda.upload(&p).unwrap(), cuda.zeros(n).unwrap());
    let gd = cuda.upload(&g).unwrap();
    for _ in 0..3 {
        cpu.sgd_step(&h, &mut pc, &g, &mut bc).unwrap();
        cuda.sgd_step(&h, &mut pd, &gd, &mut bd).unwrap();
    }
    assert_close("sgd params", &cuda.download(&pd).unwrap(), &pc, TOL);
    assert_close("sgd momentum", &cuda.download(&bd).unwrap(), &bc, TOL);
    // Adam, three steps
    let (mut pc, mut mc, mut vc) = (p.clone(), vec![0.0; n], vec![0.0; n]);
    let (mut pd, mut md, mut vd) = (cuda.upload(&p).unwrap(), cuda.zeros(n).unwrap(), cuda.zeros(n).unwrap());
    for step in 1..=3 {
        let h = Adam { lr: 1e-3, weight_decay: 1e-2, step, ..Adam::default() };
        cpu.adam_step(&h, &mut pc, &g, &mut mc, &mut vc).unwrap();
        cuda.adam_step(&h, &mut pd, &gd, &mut md, &mut vd).unwrap();
    }
    assert_close("adam params", &cuda.download(&pd).unwrap(), &pc, TOL);
    assert_close("adam v", &cuda.download(&vd).unwrap(), &vc, TOL);
    // sum of squares and scaling
    let (sc, sd) = (cpu.sum_squares(&g).unwrap(), cuda.sum_squares(&gd).unwrap());
    assert!((sc - sd).abs() / sc < 1e-6, "sum_squares {sc} vs {sd}");
    let mut gd2 = cuda.copy(&gd).unwrap();
    cuda.scale_inplace(&mut gd2, 0.25).unwrap();
    let mut gc2 = g.clone();
    cpu.scale_inplace(&mut gc2, 0.25).unwrap();
    assert_close("scale_inplace", &cuda.download(&gd2).unwrap(), &gc2, TOL);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn auto_device_picks_the_gpu() {
    let d = engine::Device::select(engine::backend::device::DeviceArg::Auto).unwrap();
    assert!(matches!(d, engine::Device::Cuda(_)), "auto chose {}", d.name());
}

/// RetinaNet forward, losses and every parameter gradient on CUDA against the
/// CPU, for a seeded model and input. Frozen batch norm: within 1e-3.
/// Training-mode batch norm is ill-conditioned in f32 for the early layers
/// (tests/retinanet_precision.rs): there both f32 backends are held within
/// 0.1 of the f64 CPU, and the worst distances are printed (CUDA's are a few
/// times the CPU's; to be explained).
#[test]
#[ignore = "needs a CUDA GPU"]
fn retinanet_forward_and_backward_match_cpu() {
    use engine::autograd::{Graph, Tensor};
    use engine::nn::retinanet::{anchors, forward, frozen_bn, init_params, losses, RetinaConfig, Target};
    use engine::nn::{BnMode, Net};
    fn run<B: Backend>(b: &B, bn: BnMode) -> (Vec<Vec<f32>>, Vec<(String, Vec<f32>)>) {
        let cfg = RetinaConfig { num_classes: 2, bn, trainable_layers: 5, anchor_scale: 1.0 };
        let mut params = init_params(b, &cfg, 7).unwrap();
        let x = Rng::new(8).normals(2 * 3 * 128 * 128);
        let frozen = if bn == BnMode::Frozen { Some(frozen_bn(b, &params).unwrap()) } else { None };
        let mut g = Graph::new(b.clone());
        let xv = g.input(Tensor::from_host(b, &x, &[2, 3, 128, 128]).unwrap());
        let mut net = Net::new(&mut g, &params, frozen.as_ref());
        let out = forward(&mut net, &cfg, xv).unwrap();
        drop(net);
        let a = anchors(&cfg, &out, [128, 128]);
        let t = vec![
            Target { boxes: vec![[10.0, 20.0, 60.0, 90.0], [70.0, 30.0, 120.0, 70.0]], labels: vec![1, 0] },
            Target { boxes: vec![[30.0, 30.0, 100.0, 100.0]], labels: vec![1] },
        ];
        let (c, r) = losses(&mut g, &out, &a, &t, 2).unwrap();
        let outs = [out.cls_logits, out.bbox_regression, out.p[0], c, r].iter().map(|v| g.to_host(*v).unwrap()).collect();
        let total = g.add(c, r).unwrap();
        let grads = g.backward(total).unwrap();
        drop(g);
        grads.accumulate_into(b, &mut params).unwrap();
        let gs = params.params.iter().filter_map(|p| p.grad.as_ref().map(|gr| (p.name.clone(), b.download(gr).unwrap()))).collect();
        (outs, gs)
    }
    let (cpu, cuda) = (Cpu::<f32>::new(), gpu());
    for bn in [BnMode::Frozen, BnMode::Train] {
        let (oc, gc) = run(&cpu, bn);
        let (og, gg) = run(&cuda, bn);
        for (i, name) in ["cls_logits", "bbox_regression", "P3", "loss_cls", "loss_box"].iter().enumerate() {
            assert_close(&format!("{bn:?} {name}"), &og[i], &oc[i], 1e-3);
        }
        assert_eq!(gc.len(), gg.len());
        assert!(gc.len() >= 89, "{} gradients", gc.len());
        if bn == BnMode::Frozen {
            for ((n, a), (_, b)) in gc.iter().zip(&gg) {
                assert_close(&format!("{bn:?} grad {n}"), b, a, 1e-3);
            }
        } else {
            let (_, g64) = run(&Cpu::<f64>::new(), bn);
            let (mut worst_gpu, mut worst_cpu) = ((0.0f64, String::new()), 0.0f64);
            for (((n, a), (_, b)), (_, r)) in gc.iter().zip(&gg).zip(&g64) {
                let (ec, eg) = (common::rel_err(a, r), common::rel_err(b, r));
                if eg > worst_gpu.0 {
                    worst_gpu = (eg, n.clone());
                }
                worst_cpu = worst_cpu.max(ec);
                // both f32 backends within 0.1 of f64 (measured on an H200: CUDA 2.4e-2, CPU 7.6e-3 at worst)
                assert!(eg < 0.1 && ec < 0.1, "{n}: CUDA {eg:.2e} and CPU f32 {ec:.2e} from f64");
            }
            eprintln!("Train: worst gradient from the f64 CPU: CUDA {:.2e} ({}), CPU f32 {worst_cpu:.2e}", worst_gpu.0, worst_gpu.1);
        }
        eprintln!("{bn:?}: outputs, losses and {} gradients match", gc.len());
    }
}

/// word2vec on CUDA follows the CPU's loss curve (within noise) on the
/// reports of 2,000 phantoms, and gives the same nearest attributes.
#[test]
#[ignore = "needs a CUDA GPU"]
fn word2vec_cuda_loss_curve_matches_cpu() {
    use engine::text::word2vec::{corpus_sentences, train_batched, train_cpu, Corpus, W2vConfig};
    let mut rng = Rng::new(3);
    let sents: Vec<Vec<String>> = (0..2000)
        .flat_map(|i| corpus_sentences(&engine::data::synth::phantom(&mut rng, format!("p{i}"), 32, i % 5 != 0).report))
        .collect();
    let corpus = Corpus::build(&sents, 5).unwrap();
    let cfg = W2vConfig { dim: 64, epochs: 5, threads: 1, seed: 2, ..Default::default() };
    let (_, cpu_curve) = train_cpu(&corpus, &cfg, &|_| {}).unwrap();
    let (_, gpu_curve) = train_batched(&corpus, &cfg, &gpu(), &|_| {}).unwrap();
    let tail = |c: &[(u64, f64)]| { let k = (c.len() / 5).max(1); c[c.len() - k..].iter().map(|p| p.1).sum::<f64>() / k as f64 };
    let (lc, lg) = (tail(&cpu_curve), tail(&gpu_curve));
    eprintln!("final loss: CPU {lc:.4}, CUDA {lg:.4}; first: CPU {:.4}, CUDA {:.4}", cpu_curve[0].1, gpu_curve[0].1);
    assert!(lg < 0.8 * gpu_curve[0].1, "the CUDA loss did not fall: {:?}", &gpu_curve[..gpu_curve.len().min(8)]);
    assert!((lc - lg).abs() / lc < 0.15, "final losses differ: CPU {lc}, CUDA {lg}");
}
