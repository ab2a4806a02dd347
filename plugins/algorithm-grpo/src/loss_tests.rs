//! Hand-computed checks of the policy loss: each clip case, each aggregation, the KL estimators,
//! the entropy and KL terms, and (proptest) vanishing gradients outside the clip range.

use longrl_core::api::{Algorithm, LossInputs, LossNormalizer};
use proptest::prelude::*;
use serde_json::json;
use tch::{Kind, Tensor};

use crate::Grpo;
use crate::config::{GrpoConfig, KlEstimator, LossAgg};
use crate::loss::{aggregate, kl_estimate, policy_loss};

fn t2(rows: &[&[f64]]) -> Tensor {
    let cols = rows[0].len() as i64;
    let flat: Vec<f64> = rows.concat();
    Tensor::from_slice(&flat).view([rows.len() as i64, cols])
}

fn t1(v: &[f64]) -> Tensor {
    Tensor::from_slice(v)
}

fn value(t: &Tensor) -> f64 {
    t.double_value(&[])
}

/// Inputs with old log-probs 0, so each token's ratio is exp(logprob).
fn inputs(ratios: &[&[f64]], advantages: &[f64], mask: &[&[f64]], normalizer: LossNormalizer) -> LossInputs {
    let logprobs = t2(ratios).log().set_requires_grad(true);
    LossInputs {
        old_logprobs: logprobs.zeros_like(),
        logprobs,
        ref_logprobs: None,
        entropy: None,
        advantages: t1(advantages),
        mask: t2(mask),
        normalizer,
    }
}

fn norm(tokens: f64, sequences: f64, max_response_len: f64) -> LossNormalizer {
    LossNormalizer { tokens, sequences, max_response_len }
}

fn config(v: serde_json::Value) -> GrpoConfig {
    serde_json::from_value(v).unwrap()
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "got {a}, want {b}");
}

#[test]
fn clip_cases_for_positive_advantage() {
    // A = +1, bounds [0.8, 1.2]: ratio 1.1 inside (-1.1), 1.5 clipped high (-1.2), 0.5 not clipped
    // for a positive advantage (the pessimistic unclipped -0.5 wins), 1.0 (-1).
    let x = inputs(&[&[1.1, 1.5, 0.5, 1.0]], &[1.0], &[&[1.0; 4]], norm(4.0, 1.0, 4.0));
    let out = policy_loss(&config(json!({})), &x).unwrap();
    close(value(&out.loss), (-1.1 - 1.2 - 0.5 - 1.0) / 4.0);
    close(out.metrics["clip_frac_high"], 0.25);
    close(out.metrics["clip_frac_low"], 0.0);
    close(out.metrics["clip_frac"], 0.25);
    close(out.metrics["ratio_mean"], (1.1 + 1.5 + 0.5 + 1.0) / 4.0);
    let approx_kl = -(1.1f64.ln() + 1.5f64.ln() + 0.5f64.ln()) / 4.0;
    assert!((out.metrics["approx_kl"] - approx_kl).abs() < 1e-9);
}

#[test]
fn clip_cases_for_negative_advantage_and_dual_clip() {
    // A = -1: loss = max(r, clamp(r, 0.8, 1.2)): 1.1 -> 1.1, 1.5 -> 1.5 (not clipped), 0.5 -> 0.8
    // (clipped low), 0.7 -> 0.8 (clipped low).
    let make = || inputs(&[&[1.1, 1.5, 0.5, 0.7]], &[-1.0], &[&[1.0; 4]], norm(4.0, 1.0, 4.0));
    let out = policy_loss(&config(json!({})), &make()).unwrap();
    close(value(&out.loss), (1.1 + 1.5 + 0.8 + 0.8) / 4.0);
    close(out.metrics["clip_frac_low"], 0.5);
    close(out.metrics["clip_frac_high"], 0.0);
    // Dual clip c = 1.3 caps the 1.5 token at 1.3.
    let out = policy_loss(&config(json!({"dual_clip": 1.3})), &make()).unwrap();
    close(value(&out.loss), (1.1 + 1.3 + 0.8 + 0.8) / 4.0);
    close(out.metrics["dual_clip_frac"], 0.25);
}

#[test]
fn clip_higher_is_asymmetric() {
    // clip_high 0.28: ratio 1.25 is inside; clip_low 0.2: ratio 0.75 with A < 0 is clipped to 0.8.
    let c = config(json!({"clip_low": 0.2, "clip_high": 0.28}));
    let x = inputs(&[&[1.25, 1.3]], &[2.0], &[&[1.0, 1.0]], norm(2.0, 1.0, 2.0));
    close(value(&policy_loss(&c, &x).unwrap().loss), -2.0 * (1.25 + 1.28) / 2.0);
    let x = inputs(&[&[0.75, 0.85]], &[-2.0], &[&[1.0, 1.0]], norm(2.0, 1.0, 2.0));
    close(value(&policy_loss(&c, &x).unwrap().loss), 2.0 * (0.8 + 0.85) / 2.0);
}

/// Two sequences: [[a, b, pad], [c, pad, pad]] with ratio 1 and advantages [1, -3], so the per-token
/// losses are [[-1, -1], [3]].
fn agg_case(n: LossNormalizer) -> LossInputs {
    inputs(&[&[1.0, 1.0, 1.0], &[1.0, 1.0, 1.0]], &[1.0, -3.0], &[&[1.0, 1.0, 0.0], &[1.0, 0.0, 0.0]], n)
}

#[test]
fn aggregation_modes_by_hand() {
    let cases = [
        ("token-mean", 1.0 / 3.0),
        ("seq-mean-token-sum", (-2.0 + 3.0) / 2.0),
        ("seq-mean-token-mean", (-1.0 + 3.0) / 2.0),
        ("seq-mean-token-sum-norm", 1.0 / (2.0 * 4.0)),
    ];
    for (mode, want) in cases {
        let c = config(json!({ "loss_agg": mode }));
        close(value(&policy_loss(&c, &agg_case(norm(3.0, 2.0, 4.0))).unwrap().loss), want);
        // As part of a mini-batch twice as large, the share halves.
        close(value(&policy_loss(&c, &agg_case(norm(6.0, 4.0, 4.0))).unwrap().loss), want / 2.0);
    }
}

#[test]
fn micro_batch_losses_add_up_to_the_mini_batch_loss() {
    let ratios: [&[f64]; 4] = [&[1.1, 0.9, 1.3], &[0.7, 1.0, 1.0], &[1.25, 1.05, 0.6], &[1.0, 1.4, 1.0]];
    let mask: [&[f64]; 4] = [&[1.0, 1.0, 1.0], &[1.0, 0.0, 0.0], &[1.0, 1.0, 0.0], &[1.0, 1.0, 1.0]];
    let adv = [0.5, -1.5, 2.0, -0.25];
    let n = norm(9.0, 4.0, 5.0);
    for mode in ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"] {
        let c = config(json!({ "loss_agg": mode, "dual_clip": 3.0 }));
        let whole = value(&policy_loss(&c, &inputs(&ratios, &adv, &mask, n)).unwrap().loss);
        let first = value(&policy_loss(&c, &inputs(&ratios[..2], &adv[..2], &mask[..2], n)).unwrap().loss);
        let second = value(&policy_loss(&c, &inputs(&ratios[2..], &adv[2..], &mask[2..], n)).unwrap().loss);
        assert!((whole - (first + second)).abs() < 1e-12, "{mode}: {whole} vs {first} + {second}");
    }
    // token-mean over the whole mini-batch is verl's masked mean.
    let c = config(json!({}));
    let whole = policy_loss(&c, &inputs(&ratios, &adv, &mask, n)).unwrap();
    let mut sum = 0.0;
    for ((r, m), a) in ratios.iter().zip(&mask).zip(&adv) {
        for (ri, mi) in r.iter().zip(m.iter()) {
            let pg = (-a * ri).max(-a * ri.clamp(0.8, 1.2));
            sum += pg * mi;
        }
    }
    close(value(&whole.loss), sum / 9.0);
}

#[test]
fn kl_estimators_by_hand() {
    let logp = t1(&[0.5f64.ln()]);
    let reference = t1(&[0.25f64.ln()]);
    let ln2 = 2f64.ln();
    let k = |e| kl_estimate(&logp, &reference, e).unwrap().double_value(&[0]);
    close(k(KlEstimator::K1), ln2);
    close(k(KlEstimator::K2), 0.5 * ln2 * ln2);
    close(k(KlEstimator::K3), 0.5 + ln2 - 1.0);
    // k3 is clamped to 10 as in verl's low_var_kl.
    let far = kl_estimate(&t1(&[-30.0]), &t1(&[0.0]), KlEstimator::K3).unwrap().double_value(&[0]);
    close(far, 10.0);
}

#[test]
fn kl_and_entropy_terms_enter_the_loss() {
    let base = || inputs(&[&[1.0, 1.0]], &[1.0], &[&[1.0, 1.0]], norm(2.0, 1.0, 2.0));
    let mut x = base();
    x.ref_logprobs = Some(t2(&[&[0.5f64.ln(), 0.0]])); // logp = 0, so k1 = [ln 2, 0]
    x.entropy = Some(t2(&[&[2.0, 4.0]]));
    let c = config(json!({"kl_coef": 0.1, "kl_estimator": "k1", "entropy_coef": 0.01}));
    let out = policy_loss(&c, &x).unwrap();
    let want = -1.0 + 0.1 * (2f64.ln() / 2.0) - 0.01 * 3.0;
    close(value(&out.loss), want);
    close(out.metrics["pg_loss"], -1.0);
    close(out.metrics["kl"], 2f64.ln() / 2.0);
    close(out.metrics["entropy"], 3.0);
    // Without the coefficients the same inputs only report kl and entropy.
    let out = policy_loss(&config(json!({})), &x).unwrap();
    close(value(&out.loss), -1.0);
    close(out.metrics["entropy"], 3.0);
    // A coefficient without its input is an error, not a silent zero.
    let e = policy_loss(&c, &base()).unwrap_err().to_string();
    assert!(e.contains("ref_logprobs"), "{e}");
    let e = policy_loss(&config(json!({"entropy_coef": 0.01})), &base()).unwrap_err().to_string();
    assert!(e.contains("entropy"), "{e}");
}

#[test]
fn masked_padding_is_ignored_even_when_infinite() {
    let mut x = inputs(&[&[1.1, 1.0]], &[1.0], &[&[1.0, 0.0]], norm(1.0, 1.0, 2.0));
    x.logprobs = t2(&[&[1.1f64.ln(), f64::NEG_INFINITY]]).set_requires_grad(true);
    let out = policy_loss(&config(json!({})), &x).unwrap();
    close(value(&out.loss), -1.1);
    out.loss.backward();
    assert!(x.logprobs.grad().double_value(&[0, 1]) == 0.0);
}

#[test]
fn shape_and_normalizer_errors_are_clear() {
    let c = config(json!({}));
    let mut x = inputs(&[&[1.0, 1.0]], &[1.0], &[&[1.0, 1.0]], norm(2.0, 1.0, 2.0));
    x.advantages = t1(&[1.0, 2.0]);
    let e = policy_loss(&c, &x).unwrap_err().to_string();
    assert!(e.contains("advantages") && e.contains("[1]"), "{e}");
    let mut x = inputs(&[&[1.0, 1.0]], &[1.0], &[&[1.0, 1.0]], norm(2.0, 1.0, 2.0));
    x.mask = t2(&[&[1.0, 1.0, 1.0]]);
    assert!(policy_loss(&c, &x).unwrap_err().to_string().contains("mask has shape"));
    let mut x = inputs(&[&[1.0, 1.0]], &[1.0], &[&[1.0, 1.0]], norm(2.0, 1.0, 2.0));
    x.logprobs = t1(&[0.0, 0.0]);
    assert!(policy_loss(&c, &x).unwrap_err().to_string().contains("[batch, response_len]"));
    let x = inputs(&[&[1.0, 1.0]], &[1.0], &[&[1.0, 1.0]], norm(1.0, 1.0, 2.0));
    assert!(policy_loss(&c, &x).unwrap_err().to_string().contains("normalizer.tokens"));
    let x = inputs(&[&[1.0], &[1.0]], &[1.0, 1.0], &[&[1.0], &[1.0]], norm(2.0, 1.0, 2.0));
    assert!(policy_loss(&c, &x).unwrap_err().to_string().contains("normalizer.sequences"));
    // Fully masked sequences do not count against the normaliser's sequences.
    let x = inputs(&[&[1.0], &[1.0]], &[1.0, 1.0], &[&[1.0], &[0.0]], norm(1.0, 1.0, 2.0));
    policy_loss(&c, &x).unwrap();
    let x = inputs(&[&[1.0]], &[1.0], &[&[1.0]], norm(f64::NAN, 1.0, 2.0));
    assert!(policy_loss(&c, &x).unwrap_err().to_string().contains("finite"));
}

#[test]
fn aggregate_of_an_all_masked_micro_batch_is_zero() {
    let m = t2(&[&[0.0, 0.0]]);
    let v = t2(&[&[5.0, 6.0]]);
    for mode in [
        LossAgg::TokenMean,
        LossAgg::SeqMeanTokenSum,
        LossAgg::SeqMeanTokenMean,
        LossAgg::SeqMeanTokenSumNorm,
        LossAgg::QwenlongL1,
    ] {
        close(value(&aggregate(&v, &m, &norm(0.0, 1.0, 2.0), mode).unwrap()), 0.0);
    }
}

#[test]
fn trait_entry_point_uses_the_config() {
    let g = Grpo::new(config(json!({"loss_agg": "seq-mean-token-mean"}))).unwrap();
    close(value(&g.loss(&agg_case(norm(3.0, 2.0, 4.0))).unwrap().loss), 1.0);
    assert_eq!(g.loss(&agg_case(norm(3.0, 2.0, 4.0))).unwrap().loss.kind(), Kind::Double);
}

/// One token: (log-ratio, advantage).
fn token() -> impl Strategy<Value = (f64, f64)> {
    (-1.0f64..1.0, prop_oneof![-2.0f64..-0.05, 0.05f64..2.0])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn gradient_vanishes_exactly_outside_the_clip_range(
        tokens in prop::collection::vec(token(), 1..12),
        clip_low in 0.05f64..0.4,
        clip_high in 0.05f64..0.4,
        dual in prop::option::of(1.3f64..2.5),
    ) {
        // One token per sequence, so each token has its own advantage.
        let b = tokens.len() as i64;
        let log_ratio: Vec<f64> = tokens.iter().map(|t| t.0).collect();
        let adv: Vec<f64> = tokens.iter().map(|t| t.1).collect();
        let logprobs = Tensor::from_slice(&log_ratio).view([b, 1]).set_requires_grad(true);
        let x = LossInputs {
            old_logprobs: logprobs.zeros_like(),
            logprobs,
            ref_logprobs: None,
            entropy: None,
            advantages: t1(&adv),
            mask: Tensor::ones([b, 1], (Kind::Double, tch::Device::Cpu)),
            normalizer: norm(b as f64, b as f64, 1.0),
        };
        let c = config(json!({"clip_low": clip_low, "clip_high": clip_high, "dual_clip": dual}));
        let out = policy_loss(&c, &x).unwrap();
        out.loss.backward();
        let grad = x.logprobs.grad();
        let (low, high) = (1.0 - clip_low, 1.0 + clip_high);
        for (i, (lr, a)) in tokens.iter().enumerate() {
            let r = lr.exp();
            let near = |bound: f64| (r - bound).abs() < 1e-6;
            if near(low) || near(high) || dual.is_some_and(near) {
                continue; // ties at a bound: either side is a valid subgradient
            }
            let outside = if *a > 0.0 { r > high } else { r < low || dual.is_some_and(|c| r > c) };
            let g = grad.double_value(&[i as i64, 0]);
            if outside {
                prop_assert!(g == 0.0, "token {i}: ratio {r}, adv {a}: gradient {g} should vanish");
            } else {
                // d/dlogp of -A * exp(logp - old) / tokens.
                let want = -a * r / b as f64;
                prop_assert!((g - want).abs() < 1e-9, "token {i}: ratio {r}, adv {a}: gradient {g}, want {want}");
            }
        }
    }
}

/// A scalar transcription of verl's `compute_policy_loss` + `kl_penalty` + `agg_loss` (with the
/// mini-batch divisors of this crate), to check the tensor code on random inputs.
fn reference_loss(
    c: &GrpoConfig,
    log_ratio: &[Vec<f64>],
    ref_diff: &[Vec<f64>],
    entropy: &[Vec<f64>],
    adv: &[f64],
    mask: &[Vec<f64>],
    n: LossNormalizer,
) -> f64 {
    let micro_tokens: f64 = mask.iter().flatten().sum();
    let micro_active = mask.iter().filter(|row| row.iter().any(|m| *m > 0.0)).count() as f64;
    let agg = |values: &dyn Fn(usize, usize) -> f64| -> f64 {
        let mut total = 0.0;
        for (i, row) in mask.iter().enumerate() {
            let seq: f64 = row.iter().enumerate().map(|(t, m)| values(i, t) * m).sum();
            let count: f64 = row.iter().sum();
            total += match c.loss_agg {
                LossAgg::TokenMean => seq / n.tokens,
                LossAgg::SeqMeanTokenSum => seq / n.sequences,
                LossAgg::SeqMeanTokenMean => seq / count.max(1.0) / n.sequences,
                LossAgg::SeqMeanTokenSumNorm => seq / (n.sequences * n.max_response_len),
                LossAgg::QwenlongL1 => seq / micro_tokens.max(1.0) * micro_active / n.sequences,
            };
        }
        total
    };
    let pg = |i: usize, t: usize| {
        let lr = log_ratio[i][t];
        let r = if c.loss_agg == LossAgg::QwenlongL1 { lr.exp() } else { lr.clamp(-20.0, 20.0).exp() };
        let a = adv[i];
        let clipped = (-a * r).max(-a * r.clamp(1.0 - c.clip_low, 1.0 + c.clip_high));
        match c.dual_clip {
            Some(cc) if a < 0.0 => clipped.min(-a * cc),
            _ => clipped,
        }
    };
    let kl = |i: usize, t: usize| {
        let d: f64 = ref_diff[i][t]; // logp - ref
        match c.kl_estimator {
            KlEstimator::K1 => d,
            KlEstimator::K2 => 0.5 * d * d,
            KlEstimator::K3 => {
                let k = (-d).clamp(-20.0, 20.0);
                (k.exp() - k - 1.0).clamp(-10.0, 10.0)
            }
        }
    };
    agg(&pg) + c.kl_coef * agg(&kl) - c.entropy_coef * agg(&|i, t| entropy[i][t])
}

/// A scalar transcription of one micro-batch's loss in the verl of QwenLong-L1
/// (`verl/workers/actor/dp_actor.py::update_policy` with `core_algos.compute_policy_loss(...,
/// use_token_level_loss=True)`): `pg_loss = masked_mean(max(-A*ratio, -A*clip(ratio)))`,
/// `policy_loss = pg_loss - masked_mean(entropy) * entropy_coeff (+ masked_mean(kld) * kl_coef)`,
/// `loss = policy_loss * len(micro) / ppo_mini_batch_size`; ratio = exp(logp - old), unclamped.
fn qwenlong_l1_reference(
    c: &GrpoConfig,
    log_ratio: &[Vec<f64>],
    entropy: &[Vec<f64>],
    adv: &[f64],
    mask: &[Vec<f64>],
    mini_batch_size: f64,
) -> f64 {
    let masked_mean = |values: &dyn Fn(usize, usize) -> f64| {
        let mut sum = 0.0;
        let mut count = 0.0;
        for (i, row) in mask.iter().enumerate() {
            for (t, m) in row.iter().enumerate() {
                sum += values(i, t) * m;
                count += m;
            }
        }
        sum / count
    };
    let pg_loss = masked_mean(&|i, t| {
        let ratio = log_ratio[i][t].exp();
        (-adv[i] * ratio).max(-adv[i] * ratio.clamp(1.0 - c.clip_low, 1.0 + c.clip_high))
    });
    let entropy_loss = masked_mean(&|i, t| entropy[i][t]);
    let policy_loss = pg_loss - entropy_loss * c.entropy_coef;
    policy_loss * (mask.len() as f64 / mini_batch_size)
}

fn matrix(rows: usize, cols: usize, range: std::ops::Range<f64>) -> impl Strategy<Value = Vec<Vec<f64>>> {
    prop::collection::vec(prop::collection::vec(range, cols), rows)
}

/// (log-ratios, logp - ref, entropy, advantages, mask) of one random micro-batch.
type Case = (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<f64>, Vec<Vec<f64>>);

fn case() -> impl Strategy<Value = Case> {
    (1usize..5, 1usize..7).prop_flat_map(|(b, t)| {
        (
            matrix(b, t, -0.6..0.6),
            matrix(b, t, -3.0..3.0),
            matrix(b, t, 0.0..3.0),
            prop::collection::vec(-2.0f64..2.0, b),
            prop::collection::vec(prop::collection::vec(prop::bool::weighted(0.7).prop_map(f64::from), t), b),
        )
    })
}

fn tensor(rows: &[Vec<f64>]) -> Tensor {
    let refs: Vec<&[f64]> = rows.iter().map(|r| r.as_slice()).collect();
    t2(&refs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn loss_matches_a_scalar_reference(
        (log_ratio, ref_diff, entropy, adv, mask) in case(),
        mode in prop::sample::select(vec![
            "token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm", "qwenlong-l1",
        ]),
        estimator in prop::sample::select(vec!["k1", "k2", "k3"]),
        dual in prop::option::of(1.5f64..4.0),
        extra_tokens in 0.0f64..10.0,
        extra_sequences in 0.0f64..4.0,
    ) {
        let dual = if mode == "qwenlong-l1" { None } else { dual };
        let c = config(json!({
            "loss_agg": mode, "kl_estimator": estimator, "kl_coef": 0.05, "entropy_coef": 0.01,
            "clip_low": 0.2, "clip_high": 0.28, "dual_clip": dual,
        }));
        let tokens: f64 = mask.iter().flatten().sum();
        let n = norm(tokens + extra_tokens, adv.len() as f64 + extra_sequences.floor(), 9.0);
        let logprobs = tensor(&log_ratio).set_requires_grad(true);
        let x = LossInputs {
            old_logprobs: logprobs.zeros_like(),
            ref_logprobs: Some(logprobs.detach() - tensor(&ref_diff)),
            logprobs,
            entropy: Some(tensor(&entropy)),
            advantages: t1(&adv),
            mask: tensor(&mask),
            normalizer: n,
        };
        let got = value(&policy_loss(&c, &x).unwrap().loss);
        let want = reference_loss(&c, &log_ratio, &ref_diff, &entropy, &adv, &mask, n);
        prop_assert!((got - want).abs() < 1e-9 * want.abs().max(1.0), "{mode} {estimator}: got {got}, want {want}");
    }
}

#[test]
fn qwenlong_l1_matches_a_hand_transcription_of_its_verl() {
    // A mini-batch of 4 sequences in two micro-batches of 2, with very different token counts:
    // the paper's verl weighs each micro-batch's token mean by 2/4, so the short micro-batch's
    // tokens weigh more than under a mini-batch token mean.
    let ratios: [&[f64]; 4] =
        [&[1.1, 0.9, 1.3, 1.0], &[0.7, 1.0, 1.0, 1.0], &[1.25, 1.0, 1.0, 1.0], &[1.4, 1.0, 1.0, 1.0]];
    let mask: [&[f64]; 4] =
        [&[1.0, 1.0, 1.0, 1.0], &[1.0, 1.0, 1.0, 0.0], &[1.0, 0.0, 0.0, 0.0], &[1.0, 1.0, 0.0, 0.0]];
    let entropy: [&[f64]; 4] =
        [&[0.5, 1.0, 1.5, 2.0], &[0.1, 0.2, 0.3, 9.0], &[2.5, 9.0, 9.0, 9.0], &[1.2, 0.4, 9.0, 9.0]];
    let adv = [0.5, -1.5, 2.0, -0.25];
    let c = config(json!({"loss_agg": "qwenlong-l1", "entropy_coef": 0.001}));
    let n = norm(10.0, 4.0, 4.0);
    let rows = |r: &[&[f64]]| r.iter().map(|x| x.to_vec()).collect::<Vec<_>>();
    let mut ours = 0.0;
    let mut theirs = 0.0;
    for range in [0..2, 2..4] {
        let mut x = inputs(&ratios[range.clone()], &adv[range.clone()], &mask[range.clone()], n);
        x.entropy = Some(t2(&entropy[range.clone()]));
        ours += value(&policy_loss(&c, &x).unwrap().loss);
        theirs += qwenlong_l1_reference(
            &c,
            &rows(&ratios[range.clone()]).iter().map(|r| r.iter().map(|v| v.ln()).collect()).collect::<Vec<_>>(),
            &rows(&entropy[range.clone()]),
            &adv[range.clone()],
            &rows(&mask[range]),
            4.0,
        );
    }
    close(ours, theirs);
    // By hand: micro 1 pg tokens (A=0.5: -0.55, -0.45, -0.6, -0.5; A=-1.5: 1.2, 1.5, 1.5) / 7,
    // micro 2 (A=2: -2.4; A=-0.25: 0.35, 0.25) / 3; entropy means 9.1/7 and 4.1/3.
    let micro1 =
        (-0.55 - 0.45 - 0.6 - 0.5 + 1.2 + 1.5 + 1.5) / 7.0 - 0.001 * (0.5 + 1.0 + 1.5 + 2.0 + 0.1 + 0.2 + 0.3) / 7.0;
    let micro2 = (-2.4 + 0.35 + 0.25) / 3.0 - 0.001 * (2.5 + 1.2 + 0.4) / 3.0;
    close(ours, 0.5 * micro1 + 0.5 * micro2);
    // The default token-mean divides every token by the mini-batch's 10 instead.
    let token_mean = config(json!({"entropy_coef": 0.001}));
    let mut whole = inputs(&ratios, &adv, &mask, n);
    whole.entropy = Some(t2(&entropy));
    assert!((value(&policy_loss(&token_mean, &whole).unwrap().loss) - ours).abs() > 1e-3);
}

#[test]
fn qwenlong_l1_does_not_clamp_the_log_ratio_and_has_no_dual_clip() {
    // A log-ratio of 25 (beyond verl's current ±20 clamp) with a negative advantage: unclipped.
    let x = || {
        let logprobs = t2(&[&[25.0]]).set_requires_grad(true);
        LossInputs {
            old_logprobs: logprobs.zeros_like(),
            logprobs,
            ref_logprobs: None,
            entropy: None,
            advantages: t1(&[-1.0]),
            mask: t2(&[&[1.0]]),
            normalizer: norm(1.0, 1.0, 1.0),
        }
    };
    close(value(&policy_loss(&config(json!({"loss_agg": "qwenlong-l1"})), &x()).unwrap().loss), 25f64.exp());
    close(value(&policy_loss(&config(json!({})), &x()).unwrap().loss), 20f64.exp());
    let e = Grpo::new(config(json!({"loss_agg": "qwenlong-l1", "dual_clip": 3.0}))).err().unwrap().to_string();
    assert!(e.contains("dual_clip"), "{e}");
}

#[test]
fn seq_mean_modes_leave_fully_masked_sequences_out() {
    // Three sequences, the last fully masked (a dropped or unscored rollout): the normaliser counts
    // the two with tokens, and the masked one neither adds to the numerator nor to the divisor.
    let x = |n| {
        inputs(&[&[1.0, 1.0], &[1.0, 1.0], &[1.0, 1.0]], &[1.0, -3.0, 5.0], &[&[1.0, 1.0], &[1.0, 0.0], &[0.0, 0.0]], n)
    };
    let c = config(json!({"loss_agg": "seq-mean-token-mean"}));
    close(value(&policy_loss(&c, &x(norm(3.0, 2.0, 2.0))).unwrap().loss), (-1.0 + 3.0) / 2.0);
    let c = config(json!({"loss_agg": "seq-mean-token-sum"}));
    close(value(&policy_loss(&c, &x(norm(3.0, 2.0, 2.0))).unwrap().loss), (-2.0 + 3.0) / 2.0);
    // A normaliser counting fewer sequences with tokens than the micro-batch has is refused.
    let e = policy_loss(&c, &x(norm(3.0, 1.0, 2.0))).unwrap_err().to_string();
    assert!(e.contains("normalizer.sequences") && e.contains("unmasked"), "{e}");
}
