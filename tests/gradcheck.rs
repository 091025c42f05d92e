//! Finite-difference gradient checks in f64 for every op of the foundation:
//! the CPU backend runs in f64 (`Cpu<f64>`), and each analytic input gradient
//! of `sum(op(x) * w)` must match central differences.

mod common;
use common::{cases, loss_of, run_case};
use engine::rng::Rng;
use engine::Cpu;

#[test]
fn every_op_matches_finite_differences_in_f64() {
    let b = Cpu::<f64>::new();
    let mut failures = Vec::new();
    for (k, case) in cases().iter().enumerate() {
        let mut rng = Rng::new(100 + k as u64);
        let inputs = case.inputs(&mut rng);
        let run = run_case(&b, case, &inputs, 7).unwrap();
        for (i, grad) in run.grads.iter().enumerate() {
            let Some(grad) = grad else { continue };
            // Probe up to 40 coordinates spread over the input.
            let n = inputs[i].len();
            let step = (n / 40).max(1);
            let mut worst: f64 = 0.0;
            // Floor of the denominator: 1% of the gradient's RMS, so that
            // round-off on near-zero coordinates of large sums does not count.
            let rms = (grad.iter().map(|g| g * g).sum::<f64>() / n as f64).sqrt();
            for j in (0..n).step_by(step) {
                let h = 1e-6;
                let mut plus = inputs.clone();
                plus[i][j] += h;
                let mut minus = inputs.clone();
                minus[i][j] -= h;
                let fd = (loss_of(&b, case, &plus, 7).unwrap() - loss_of(&b, case, &minus, 7).unwrap()) / (2.0 * h);
                let err = (fd - grad[j]).abs() / (1e-2 * rms + 1e-6 + fd.abs().max(grad[j].abs()));
                worst = worst.max(err);
            }
            if worst.is_nan() || worst > 1e-5 {
                failures.push(format!("{} input {i}: worst relative error {worst:.2e}", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "gradient check failures:\n{}", failures.join("\n"));
}

#[test]
fn a_wrong_gradient_would_be_caught() {
    // The check itself must fail on a wrong rule: perturbing the analytic
    // gradient of tanh by 1% is far above the tolerance used above.
    let b = Cpu::<f64>::new();
    let case = cases().into_iter().find(|c| c.name == "tanh").unwrap();
    let inputs = case.inputs(&mut Rng::new(3));
    let run = run_case(&b, &case, &inputs, 7).unwrap();
    let g = run.grads[0].as_ref().unwrap();
    let h = 1e-6;
    let (mut plus, mut minus) = (inputs.clone(), inputs.clone());
    plus[0][0] += h;
    minus[0][0] -= h;
    let fd = (loss_of(&b, &case, &plus, 7).unwrap() - loss_of(&b, &case, &minus, 7).unwrap()) / (2.0 * h);
    let wrong = g[0] * 1.01;
    assert!((fd - g[0]).abs() / fd.abs().max(1e-3) < 1e-5);
    assert!((fd - wrong).abs() / fd.abs().max(1e-3) > 1e-5);
}
