//! AdamW against a scalar float64 transcription of `torch.optim.AdamW` (single-tensor path) and
//! `clip_grad_norm_`; master weights; skipping; the state file.

use super::*;
use tch::Device;

const B1: f64 = 0.9;
const B2: f64 = 0.999;
const EPS: f64 = 1e-8;

fn config(weight_decay: f64) -> AdamWConfig {
    AdamWConfig { beta1: B1, beta2: B2, eps: EPS, weight_decay, ..AdamWConfig::default() }
}

fn param(values: &[f32], kind: Kind) -> Tensor {
    Tensor::from_slice(values).to_kind(kind).set_requires_grad(true)
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.detach().to_device(Device::Cpu).to_kind(Kind::Double)).unwrap()
}

/// Sets `p.grad` to exactly `g` (zeroing it first): the gradient of `sum(p * g)`.
fn set_grad(p: &Tensor, g: &[f32]) {
    let mut grad = p.grad();
    if grad.defined() {
        let _ = grad.zero_();
    }
    (p * Tensor::from_slice(g).to_kind(p.kind())).sum(Kind::Float).backward();
}

/// `torch.optim.AdamW`'s update of one scalar, in float64 (torch/optim/adamw.py, `_single_tensor_adam`
/// with decoupled decay): decay, lerp of m, v, bias corrections, `denom = sqrt(v) / sqrt(bc2) + eps`.
struct Scalar {
    w: f64,
    m: f64,
    v: f64,
}

impl Scalar {
    fn step(&mut self, g: f64, t: i32, lr: f64, wd: f64) {
        self.w *= 1.0 - lr * wd;
        self.m += (g - self.m) * (1.0 - B1);
        self.v = self.v * B2 + g * g * (1.0 - B2);
        let (bc1, bc2) = (1.0 - B1.powi(t), 1.0 - B2.powi(t));
        self.w -= lr / bc1 * self.m / (self.v.sqrt() / bc2.sqrt() + EPS);
    }
}

/// `clip_grad_norm_` on float64 gradients: returns the scaled gradients and the norm.
fn clip(grads: &[Vec<f64>], max_norm: f64) -> (Vec<Vec<f64>>, f64) {
    let norm = grads.iter().flatten().map(|g| g * g).sum::<f64>().sqrt();
    let coef = (max_norm / (norm + 1e-6)).min(1.0);
    (grads.iter().map(|g| g.iter().map(|x| x * coef).collect()).collect(), norm)
}

fn close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol * w.abs().max(1.0), "{what}: {got:?} vs {want:?}");
    }
}

/// Two groups (one with decay and an lr multiplier, one without decay), clipping on, gradients
/// differing per step: the float32 parameters follow the float64 transcription; a bfloat16 copy
/// of the same run keeps master weights that follow it too, and parameters equal to their cast.
#[test]
fn groups_decay_and_clipping_follow_torch_adamw() {
    let init = [vec![0.5f32, -1.25, 2.0], vec![1.0f32, 0.75]];
    let grads_at = |s: usize| -> Vec<Vec<f32>> {
        let f = |i: usize| (((s * 7 + i * 3) % 11) as f32 - 5.0) * 0.4;
        vec![(0..3).map(f).collect(), (3..5).map(f).collect()]
    };
    let (lr, max_norm) = (0.05, 1.5);
    let groups_spec = [(2.0, 0.1), (1.0, 0.0)]; // (lr_scale, weight_decay)
    for kind in [Kind::Float, Kind::BFloat16] {
        let params: Vec<Tensor> = init.iter().map(|v| param(v, kind)).collect();
        let groups = params
            .iter()
            .zip(groups_spec)
            .enumerate()
            .map(|(i, (p, (lr_scale, weight_decay)))| ParamGroup {
                name: format!("g{i}"),
                params: vec![(format!("p{i}"), p.shallow_clone())],
                lr_scale,
                weight_decay,
            })
            .collect();
        let mut opt = AdamW::with_groups(groups, &config(0.0)).unwrap();
        // The reference starts from the parameters as stored (bfloat16-rounded for bfloat16).
        let mut reference: Vec<Vec<Scalar>> =
            params.iter().map(|p| values(p).into_iter().map(|w| Scalar { w, m: 0.0, v: 0.0 }).collect()).collect();
        for s in 0..6 {
            let grads = grads_at(s);
            for (p, g) in params.iter().zip(&grads) {
                set_grad(p, g);
            }
            let exact: Vec<Vec<f64>> = params.iter().map(|p| values(&p.grad())).collect();
            let (clipped, norm) = clip(&exact, max_norm);
            let got_norm = opt.clip_grad_norm(max_norm).unwrap();
            assert!((got_norm - norm).abs() < 1e-5 * norm, "{kind:?} step {s}: norm {got_norm} vs {norm}");
            assert_eq!(opt.step(lr).unwrap(), StepOutcome::Applied);
            for (g, ((scalars, grads), (lr_scale, wd))) in
                reference.iter_mut().zip(&clipped).zip(groups_spec).enumerate()
            {
                for (x, grad) in scalars.iter_mut().zip(grads) {
                    x.step(*grad, s as i32 + 1, lr * lr_scale, wd);
                }
                let want: Vec<f64> = scalars.iter().map(|x| x.w).collect();
                let master = values(&opt.master(&format!("p{g}")).unwrap());
                close(&master, &want, 1e-5, &format!("{kind:?} step {s} group {g} master"));
                let cast: Vec<f64> = values(&opt.master(&format!("p{g}")).unwrap().to_kind(kind));
                assert_eq!(values(&params[g]), cast, "{kind:?}: parameters are the cast of the master");
            }
        }
        assert_eq!(opt.steps_taken(), 6);
    }
}

/// The loss of today's optimizer: a bfloat16 weight of 1.0 (an RMSNorm weight) under steps of
/// about 1e-3 never moves when stepped directly (ulp 2^-8 below 1.0); with a master it moves as
/// in float32, and the parameter follows once the master has moved half an ulp.
#[test]
fn small_updates_accumulate_in_the_master() {
    let p = param(&[1.0], Kind::BFloat16);
    let mut opt = AdamW::new(vec![("norm".into(), p.shallow_clone())], &config(0.0)).unwrap();
    let mut reference = Scalar { w: 1.0, m: 0.0, v: 0.0 };
    for t in 1..=5 {
        set_grad(&p, &[0.5]);
        opt.step(1e-3).unwrap();
        reference.step(0.5, t, 1e-3, 0.0);
        let master = values(&opt.master("norm").unwrap())[0];
        assert!((master - reference.w).abs() < 1e-6, "step {t}: {master} vs {}", reference.w);
        // bfloat16 below 1.0 has ulp 2^-8 = 0.0039: the parameter rounds the master.
        let want = (reference.w * 256.0).round() / 256.0;
        assert_eq!(values(&p)[0], want, "step {t}");
    }
    assert_eq!(values(&p)[0], 0.99609375, "five steps of 1e-3 moved the bfloat16 weight by one ulp");
}

/// Weight decay alone (zero gradient) shrinks a bfloat16 weight: `w (1 - lr wd)^t` in the master.
#[test]
fn weight_decay_applies_to_bfloat16_weights() {
    let p = param(&[0.02], Kind::BFloat16);
    let start = values(&p)[0];
    let mut opt = AdamW::new(vec![("w".into(), p.shallow_clone())], &config(0.1)).unwrap();
    for _ in 0..10 {
        set_grad(&p, &[0.0]);
        opt.step(1e-2).unwrap();
    }
    let master = values(&opt.master("w").unwrap())[0];
    let want = start * (1.0f64 - 1e-3).powi(10);
    assert!((master - want).abs() < 1e-8, "{master} vs {want}");
}

#[test]
fn clipping_scales_to_the_max_norm_and_zero_grad_clears() {
    for kind in [Kind::Float, Kind::BFloat16] {
        let p = param(&[0.0, 0.0], kind);
        let mut opt = AdamW::new(vec![("w".into(), p.shallow_clone())], &config(0.0)).unwrap();
        set_grad(&p, &[3.0, 4.0]);
        assert!((opt.clip_grad_norm(1.0).unwrap() - 5.0).abs() < 1e-6);
        assert!((opt.grad_norm().unwrap() - 1.0).abs() < 1e-5, "{kind:?}");
        let before = opt.clip_grad_norm(10.0).unwrap();
        assert!((opt.grad_norm().unwrap() - before).abs() < 1e-9, "under the limit nothing changes");
        opt.zero_grad().unwrap();
        assert_eq!(opt.grad_norm().unwrap(), 0.0);
    }
}

/// A parameter without a gradient steps as if its gradient were zero (decay still applies).
#[test]
fn a_missing_gradient_counts_as_zero() {
    for kind in [Kind::Float, Kind::BFloat16] {
        let (used, unused) = (param(&[1.0], kind), param(&[0.5], kind));
        let mut opt = AdamW::new(
            vec![("used".into(), used.shallow_clone()), ("unused".into(), unused.shallow_clone())],
            &config(0.1),
        )
        .unwrap();
        set_grad(&used, &[2.0]);
        assert_eq!(opt.step(0.01).unwrap(), StepOutcome::Applied);
        let want = 0.5 * (1.0 - 0.01 * 0.1);
        assert!((values(&opt.master("unused").unwrap())[0] - want).abs() < 1e-7, "{kind:?}");
        assert!((values(&opt.master("used").unwrap())[0] - (1.0 * 0.999 - 0.01)).abs() < 1e-6, "{kind:?}");
    }
}

/// A non-finite norm skips the step without touching anything and is counted; the limit of
/// steps skipped in a row ends in an error; a finite step resets the run.
#[test]
fn non_finite_gradients_skip_the_step_then_fail() {
    let p = param(&[1.0, 2.0], Kind::BFloat16);
    let mut cfg = config(0.1);
    cfg.max_consecutive_nonfinite = 2;
    let mut opt = AdamW::new(vec![("w".into(), p.shallow_clone())], &cfg).unwrap();
    set_grad(&p, &[1.0, 1.0]);
    opt.step(0.1).unwrap();
    let (params, master) = (values(&p), values(&opt.master("w").unwrap()));
    for bad in [f32::NAN, f32::INFINITY] {
        set_grad(&p, &[bad, 1.0]);
        assert!(!opt.clip_grad_norm(1.0).unwrap().is_finite());
        assert_eq!(opt.step(0.1).unwrap(), StepOutcome::SkippedNonFinite);
        assert_eq!((values(&p), values(&opt.master("w").unwrap())), (params.clone(), master.clone()));
    }
    assert_eq!((opt.steps_taken(), opt.skipped_steps()), (1, 2));
    set_grad(&p, &[f32::NAN, 1.0]);
    let err = opt.step(0.1).unwrap_err().to_string();
    assert!(err.contains("3 optimizer steps in a row (limit 2)"), "{err}");
    set_grad(&p, &[1.0, 1.0]);
    assert_eq!(opt.step(0.1).unwrap(), StepOutcome::Applied);
    set_grad(&p, &[f32::NAN, 1.0]);
    assert_eq!(opt.step(0.1).unwrap(), StepOutcome::SkippedNonFinite, "a finite step resets the count");
}

#[test]
fn mixed_dtypes_are_split_into_groups_and_bad_groups_rejected() {
    let a = param(&[1.0, 2.0], Kind::BFloat16);
    let b = param(&[1.0], Kind::Float);
    let c = Tensor::zeros([2, 2], (Kind::BFloat16, Device::Cpu)).set_requires_grad(true);
    let not_leaf = &c * 2.0;
    let mut cfg = config(0.1);
    cfg.no_decay_for_vectors = true;
    let opt = AdamW::new(vec![("a".into(), a.shallow_clone()), ("b".into(), b.shallow_clone()), ("c".into(), c)], &cfg)
        .unwrap();
    let names: Vec<(String, usize)> = opt.group_layouts().map(|(n, l)| (n.to_string(), l.len())).collect();
    assert_eq!(names, vec![("decay".into(), 1), ("no_decay.BFloat16.Cpu".into(), 1), ("no_decay.Float.Cpu".into(), 1)]);
    assert_eq!(opt.state_bytes(), 4 * 16 + 2 * 16 + 8);

    let group = |name: &str, params: Vec<(String, Tensor)>| ParamGroup {
        name: name.into(),
        params,
        lr_scale: 1.0,
        weight_decay: 0.0,
    };
    let err = AdamW::with_groups(
        vec![group("x", vec![("a".into(), a.shallow_clone()), ("b".into(), b.shallow_clone())])],
        &cfg,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("group `x`: `b` is Float on Cpu but `a` is BFloat16 on Cpu"), "{err}");
    let err = AdamW::with_groups(
        vec![group("x", vec![("a".into(), a.shallow_clone())]), group("y", vec![("a".into(), b.shallow_clone())])],
        &cfg,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("parameter `a` is listed twice"), "{err}");
    let ints = Tensor::zeros([2], (Kind::Int64, Device::Cpu));
    let err = format!("{:#}", AdamW::new(vec![("i".into(), ints)], &cfg).err().unwrap());
    assert!(err.contains("group `no_decay`, parameter `i`: dtype Int64 is not supported"), "{err}");
    let err = AdamW::new(vec![("x".into(), not_leaf)], &cfg).err().unwrap().to_string();
    assert!(err.contains("`x` is not a leaf tensor that requires grad"), "{err}");
    let frozen = Tensor::zeros([2], (Kind::Float, Device::Cpu));
    assert!(AdamW::new(vec![("f".into(), frozen)], &cfg).is_err());
}

/// Save after 3 steps, load into a fresh optimizer over parameters restored from the saved
/// values, continue: bitwise the uninterrupted run (master, moments and parameters).
#[test]
fn state_round_trips_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("optimizer.safetensors");
    let run = |steps: std::ops::Range<i32>, opt: &mut AdamW, p: &Tensor| {
        for s in steps {
            opt.zero_grad().unwrap();
            (p * p * (s as f64 + 1.0)).sum(Kind::Float).backward();
            opt.clip_grad_norm(1.0).unwrap();
            opt.step(0.05).unwrap();
        }
    };
    for kind in [Kind::Float, Kind::BFloat16] {
        let straight = param(&[1.0, 2.0, 3.0], kind);
        let mut opt = AdamW::new(vec![("w".into(), straight.shallow_clone())], &config(0.1)).unwrap();
        run(0..6, &mut opt, &straight);

        let first = param(&[1.0, 2.0, 3.0], kind);
        let mut opt1 = AdamW::new(vec![("w".into(), first.shallow_clone())], &config(0.1)).unwrap();
        run(0..3, &mut opt1, &first);
        opt1.save(&path).unwrap();
        let resumed = first.detach().copy().set_requires_grad(true);
        let mut opt2 = AdamW::new(vec![("w".into(), resumed.shallow_clone())], &config(0.1)).unwrap();
        let err = opt2.load(&path, 2).unwrap_err().to_string();
        assert!(err.contains("holds 3 steps but the checkpoint's counters say 2"), "{err}");
        opt2.load(&path, opt1.steps_taken()).unwrap();
        run(3..6, &mut opt2, &resumed);
        assert!(straight.equal(&resumed), "{kind:?}");
        assert!(opt.master("w").unwrap().equal(&opt2.master("w").unwrap()), "{kind:?}");
        let again = dir.path().join("again.safetensors");
        opt.save(&again).unwrap();
        opt2.save(&path).unwrap();
        assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&path).unwrap(), "{kind:?}: same state file");
    }
}

#[test]
fn loading_checks_names_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("optimizer.safetensors");
    let p = param(&[1.0, 2.0], Kind::BFloat16);
    let q = param(&[1.0], Kind::BFloat16);
    AdamW::new(vec![("w".into(), p.shallow_clone()), ("extra".into(), q)], &config(0.0)).unwrap().save(&path).unwrap();

    let mut fewer = AdamW::new(vec![("w".into(), p.shallow_clone())], &config(0.0)).unwrap();
    let err = fewer.load(&path, 0).unwrap_err().to_string();
    assert!(
        err.contains(
            "has state for parameters this model does not have: exp_avg.extra, exp_avg_sq.extra, master.extra"
        ),
        "{err}"
    );

    let other_shape = param(&[1.0, 2.0, 3.0], Kind::BFloat16);
    let mut wrong =
        AdamW::new(vec![("w".into(), other_shape), ("extra".into(), param(&[1.0], Kind::BFloat16))], &config(0.0))
            .unwrap();
    let err = wrong.load(&path, 0).unwrap_err().to_string();
    assert!(err.contains("`exp_avg.w` has shape [2], the parameter has [3]"), "{err}");

    let mut renamed = AdamW::new(vec![("v".into(), p.shallow_clone())], &config(0.0)).unwrap();
    let err = renamed.load(&path, 0).unwrap_err().to_string();
    assert!(err.contains("has no tensor `exp_avg.v`"), "{err}");
}

/// Files of the previous optimizer (moments `m.<name>`/`v.<name>` only) still resume: exactly for
/// float32 parameters.
#[test]
fn reads_the_previous_moments_only_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("optimizer.safetensors");
    let m = Tensor::from_slice(&[0.1f32, -0.2]);
    let v = Tensor::from_slice(&[0.01f32, 0.04]);
    Tensor::write_safetensors(&[("m.w", &m), ("v.w", &v)], &path).unwrap();
    let p = param(&[1.0, 2.0], Kind::Float);
    let mut opt = AdamW::new(vec![("w".into(), p.shallow_clone())], &config(0.0)).unwrap();
    opt.load(&path, 4).unwrap();
    assert_eq!(opt.steps_taken(), 4);
    let saved = dir.path().join("new.safetensors");
    opt.save(&saved).unwrap();
    let read: BTreeMap<String, Tensor> = Tensor::read_safetensors(&saved).unwrap().into_iter().collect();
    assert!(read["exp_avg.w"].equal(&m) && read["exp_avg_sq.w"].equal(&v));
}

/// The CUDA kernels (foreach copy/norm/mul, fused AdamW) give the CPU's result on a bfloat16 and
/// a float32 group with clipping and a skipped step; skipped, visibly, without CUDA.
#[test]
fn cuda_matches_cpu() {
    if !tch::Cuda::is_available() {
        println!("SKIPPED cuda_matches_cpu: no CUDA device");
        return;
    }
    let run = |device: Device| -> Vec<Vec<f64>> {
        let a = Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.02])
            .to_kind(Kind::BFloat16)
            .to_device(device)
            .set_requires_grad(true);
        let b = Tensor::from_slice(&[1.0f32, 0.25]).to_device(device).set_requires_grad(true);
        let mut opt =
            AdamW::new(vec![("a".into(), a.shallow_clone()), ("b".into(), b.shallow_clone())], &config(0.1)).unwrap();
        for s in 0..5 {
            opt.zero_grad().unwrap();
            let bad = if s == 2 { f64::NAN } else { 1.0 };
            ((&a * &a).sum(Kind::Float) * (s as f64 + 1.0) * bad + (&b * &b * &b).sum(Kind::Float)).backward();
            opt.clip_grad_norm(2.0).unwrap();
            opt.step(1e-2).unwrap();
        }
        assert_eq!((opt.steps_taken(), opt.skipped_steps()), (4, 1));
        ["a", "b"].iter().map(|n| values(&opt.master(n).unwrap())).collect()
    };
    let (cpu, cuda) = (run(Device::Cpu), run(Device::Cuda(0)));
    for (c, g) in cpu.iter().zip(&cuda) {
        close(g, c, 1e-6, "CUDA against CPU");
    }
}
