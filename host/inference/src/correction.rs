//! Off-policy correction for rollouts drawn by an inference server: its kernels, batching and
//! precision differ from the trainer's, so the server's log-probs of the sampled tokens differ from
//! the trainer's log-probs of the same tokens under the same weights.
//!
//! Per token, `delta = log pi_trainer - log pi_server` and `ratio = exp(delta)`. The samples come
//! from the server, so `mean(-delta)` (k1) and `mean(ratio - 1 - delta)` (k3, never negative) both
//! estimate KL(pi_server || pi_trainer) (Schulman, "Approximating KL divergence", 2020).
//!
//! Truncated importance sampling reweights the policy-gradient term by `min(ratio, cap)` per token or
//! `min(prod ratio, cap)` per response (Yao et al. 2025, "Your efficient RL framework secretly brings
//! you off-policy RL training"; verl's `rollout_is` with `rollout_is_threshold`).

use std::collections::BTreeMap;

use crate::config::{CorrectionConfig, IsLevel};

/// Log-ratios are clamped to this before `exp`, as the policy loss clamps its own.
const LOG_RATIO_CLAMP: f64 = 20.0;

/// How far the server's log-probs are from the trainer's, over a batch of responses.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub tokens: usize,
    pub sequences: usize,
    /// `mean(log pi_server - log pi_trainer)` over tokens.
    pub kl_k1: f64,
    /// `mean(ratio - 1 - log ratio)` over tokens.
    pub kl_k3: f64,
    pub log_ratio_abs_mean: f64,
    pub log_ratio_abs_max: f64,
    pub ratio_min: f64,
    pub ratio_max: f64,
    /// Per response, `exp(sum delta)`.
    pub seq_ratio_min: f64,
    pub seq_ratio_max: f64,
}

impl Mismatch {
    /// Metric names and values (`rollout_mismatch/...`); none for a batch without tokens.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        if self.tokens == 0 {
            return BTreeMap::new();
        }
        [
            ("kl_k1", self.kl_k1),
            ("kl_k3", self.kl_k3),
            ("log_ratio_abs_mean", self.log_ratio_abs_mean),
            ("log_ratio_abs_max", self.log_ratio_abs_max),
            ("ratio_min", self.ratio_min),
            ("ratio_max", self.ratio_max),
            ("seq_ratio_min", self.seq_ratio_min),
            ("seq_ratio_max", self.seq_ratio_max),
            ("tokens", self.tokens as f64),
        ]
        .into_iter()
        .map(|(k, v)| (format!("rollout_mismatch/{k}"), v))
        .collect()
    }
}

/// Check both sides give one log-prob per token of the same responses.
fn check_shapes(server: &[Vec<f32>], trainer: &[Vec<f32>]) -> Result<(), String> {
    if server.len() != trainer.len() {
        return Err(format!("{} server responses but {} trainer responses", server.len(), trainer.len()));
    }
    for (i, (s, t)) in server.iter().zip(trainer).enumerate() {
        if s.len() != t.len() {
            return Err(format!("response {i}: {} server log-probs but {} trainer log-probs", s.len(), t.len()));
        }
    }
    Ok(())
}

fn log_ratio(server: f32, trainer: f32) -> f64 {
    (f64::from(trainer) - f64::from(server)).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
}

/// The mismatch between `server[i][t]` and `trainer[i][t]`, log-probs of token `t` of response `i`.
pub fn mismatch(server: &[Vec<f32>], trainer: &[Vec<f32>]) -> Result<Mismatch, String> {
    check_shapes(server, trainer)?;
    let mut m = Mismatch {
        tokens: 0,
        sequences: server.len(),
        kl_k1: 0.0,
        kl_k3: 0.0,
        log_ratio_abs_mean: 0.0,
        log_ratio_abs_max: 0.0,
        ratio_min: f64::INFINITY,
        ratio_max: 0.0,
        seq_ratio_min: f64::INFINITY,
        seq_ratio_max: 0.0,
    };
    for (s, t) in server.iter().zip(trainer) {
        let mut sum = 0.0;
        for (&sv, &tv) in s.iter().zip(t) {
            let delta = log_ratio(sv, tv);
            let ratio = delta.exp();
            m.tokens += 1;
            m.kl_k1 -= delta;
            m.kl_k3 += ratio - 1.0 - delta;
            m.log_ratio_abs_mean += delta.abs();
            m.log_ratio_abs_max = m.log_ratio_abs_max.max(delta.abs());
            m.ratio_min = m.ratio_min.min(ratio);
            m.ratio_max = m.ratio_max.max(ratio);
            sum += delta;
        }
        let seq = sum.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP).exp();
        m.seq_ratio_min = m.seq_ratio_min.min(seq);
        m.seq_ratio_max = m.seq_ratio_max.max(seq);
    }
    if m.tokens > 0 {
        let n = m.tokens as f64;
        m.kl_k1 /= n;
        m.kl_k3 /= n;
        m.log_ratio_abs_mean /= n;
    }
    Ok(m)
}

/// Truncated importance weights, one per token (a response's weight repeated over its tokens at
/// the sequence level); all 1 with `IsLevel::Off`. They multiply the policy-gradient loss and carry
/// no gradient.
pub fn truncated_is_weights(
    server: &[Vec<f32>],
    trainer: &[Vec<f32>],
    level: IsLevel,
    cap: f64,
) -> Result<Vec<Vec<f32>>, String> {
    check_shapes(server, trainer)?;
    if level != IsLevel::Off && !(cap.is_finite() && cap >= 1.0) {
        return Err(format!("the importance-weight cap must be a number >= 1, got {cap}"));
    }
    let log_cap = cap.ln();
    Ok(server
        .iter()
        .zip(trainer)
        .map(|(s, t)| match level {
            IsLevel::Off => vec![1.0; s.len()],
            IsLevel::Token => s.iter().zip(t).map(|(&sv, &tv)| log_ratio(sv, tv).min(log_cap).exp() as f32).collect(),
            IsLevel::Sequence => {
                let sum: f64 = s.iter().zip(t).map(|(&sv, &tv)| log_ratio(sv, tv)).sum();
                vec![sum.min(log_cap).exp() as f32; s.len()]
            }
        })
        .collect())
}

/// Mean weight and the fraction of tokens whose weight was truncated at `cap`.
pub fn is_metrics(weights: &[Vec<f32>], cap: f64) -> BTreeMap<String, f64> {
    let all: Vec<f64> = weights.iter().flatten().map(|&w| f64::from(w)).collect();
    if all.is_empty() {
        return BTreeMap::new();
    }
    let n = all.len() as f64;
    let truncated = all.iter().filter(|&&w| w >= cap * (1.0 - 1e-6)).count() as f64;
    BTreeMap::from([
        ("rollout_is/weight_mean".to_string(), all.iter().sum::<f64>() / n),
        ("rollout_is/truncated_frac".to_string(), truncated / n),
    ])
}

/// What one batch's correction gives the trainer.
#[derive(Debug, Clone, PartialEq)]
pub struct Correction {
    /// `rollout_mismatch/*` always, `rollout_is/*` when importance sampling is on.
    pub metrics: BTreeMap<String, f64>,
    /// Per-token weights of the policy-gradient term (all 1 when `tis = "off"`).
    pub weights: Vec<Vec<f32>>,
}

/// Mismatch metrics and, per `config`, truncated importance weights of one batch.
pub fn correct(server: &[Vec<f32>], trainer: &[Vec<f32>], config: &CorrectionConfig) -> Result<Correction, String> {
    let mut metrics = mismatch(server, trainer)?.metrics();
    let weights = truncated_is_weights(server, trainer, config.tis, config.tis_cap)?;
    if config.tis != IsLevel::Off {
        metrics.extend(is_metrics(&weights, config.tis_cap));
    }
    Ok(Correction { metrics, weights })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn equal_log_probs_have_no_mismatch() {
        let lp = vec![vec![-0.1, -2.0, -0.7], vec![-1.5]];
        let m = mismatch(&lp, &lp).unwrap();
        assert_eq!((m.tokens, m.sequences), (4, 2));
        assert_eq!((m.kl_k1, m.kl_k3, m.log_ratio_abs_max), (0.0, 0.0, 0.0));
        assert_eq!((m.ratio_min, m.ratio_max, m.seq_ratio_min, m.seq_ratio_max), (1.0, 1.0, 1.0, 1.0));
        let w = truncated_is_weights(&lp, &lp, IsLevel::Token, 2.0).unwrap();
        assert!(w.iter().flatten().all(|&x| x == 1.0));
    }

    #[test]
    fn mismatch_matches_hand_computed_values() {
        // Trainer minus server: +ln 2 and -ln 2 on response 0, +ln 4 on response 1.
        let (l2, l4) = (2f64.ln() as f32, 4f64.ln() as f32);
        let server = vec![vec![-1.0, -1.0], vec![-3.0]];
        let trainer = vec![vec![-1.0 + l2, -1.0 - l2], vec![-3.0 + l4]];
        let m = mismatch(&server, &trainer).unwrap();
        let (l2, l4) = (2f64.ln(), 4f64.ln());
        assert!(close(m.kl_k1, -(l4) / 3.0), "{}", m.kl_k1);
        // k3 per token: (2 - 1 - ln2) + (0.5 - 1 + ln2) + (4 - 1 - ln4).
        assert!(close(m.kl_k3, (1.0 - l2 + -0.5 + l2 + 3.0 - l4) / 3.0), "{}", m.kl_k3);
        assert!(close(m.log_ratio_abs_mean, (l2 + l2 + l4) / 3.0));
        assert!(close(m.log_ratio_abs_max, l4));
        assert!(close(m.ratio_min, 0.5) && close(m.ratio_max, 4.0));
        assert!(close(m.seq_ratio_min, 1.0) && close(m.seq_ratio_max, 4.0));
        assert_eq!(m.metrics()["rollout_mismatch/ratio_max"], m.ratio_max);
    }

    #[test]
    fn truncated_weights_match_hand_computed_values() {
        let (l2, l3) = (2f64.ln() as f32, 3f64.ln() as f32);
        let server = vec![vec![-1.0, -1.0, -1.0], vec![-2.0, -2.0]];
        // Ratios: [2, 1/2, 3] and [3, 3].
        let trainer = vec![vec![-1.0 + l2, -1.0 - l2, -1.0 + l3], vec![-2.0 + l3, -2.0 + l3]];
        let token = truncated_is_weights(&server, &trainer, IsLevel::Token, 2.5).unwrap();
        let expect = [vec![2.0, 0.5, 2.5], vec![2.5, 2.5]];
        for (got, want) in token.iter().flatten().zip(expect.iter().flatten()) {
            assert!(close(f64::from(*got), *want), "{token:?}");
        }
        // Sequence: prod 3 -> min(3, 2.5); prod 9 -> 2.5; with cap 10 the second stays 9.
        let seq = truncated_is_weights(&server, &trainer, IsLevel::Sequence, 2.5).unwrap();
        assert!(seq[0].iter().all(|&w| close(f64::from(w), 2.5)) && seq[1].len() == 2);
        let seq = truncated_is_weights(&server, &trainer, IsLevel::Sequence, 10.0).unwrap();
        assert!(close(f64::from(seq[0][0]), 3.0) && close(f64::from(seq[1][1]), 9.0), "{seq:?}");
        let off = truncated_is_weights(&server, &trainer, IsLevel::Off, 2.5).unwrap();
        assert_eq!(off, vec![vec![1.0; 3], vec![1.0; 2]]);
        let metrics = is_metrics(&token, 2.5);
        assert!(close(metrics["rollout_is/weight_mean"], (2.0 + 0.5 + 2.5 * 3.0) / 5.0));
        assert!(close(metrics["rollout_is/truncated_frac"], 0.6));
    }

    #[test]
    fn correct_reports_is_metrics_only_when_on() {
        let (server, trainer) = (vec![vec![-1.0, -2.0]], vec![vec![-1.5, -2.0]]);
        let off = correct(&server, &trainer, &CorrectionConfig::default()).unwrap();
        assert!(
            off.metrics.contains_key("rollout_mismatch/kl_k1") && !off.metrics.contains_key("rollout_is/weight_mean")
        );
        assert_eq!(off.weights, vec![vec![1.0, 1.0]]);
        let on = correct(&server, &trainer, &CorrectionConfig { tis: IsLevel::Sequence, tis_cap: 2.0 }).unwrap();
        assert!(close(f64::from(on.weights[0][1]), (-0.5f64).exp()));
        assert!(on.metrics.contains_key("rollout_is/truncated_frac"));
    }

    #[test]
    fn shapes_and_caps_are_checked() {
        assert!(mismatch(&[vec![-1.0]], &[]).unwrap_err().contains("1 server responses"));
        assert!(mismatch(&[vec![-1.0]], &[vec![-1.0, -2.0]]).unwrap_err().contains("response 0"));
        assert!(truncated_is_weights(&[vec![-1.0]], &[vec![-1.0]], IsLevel::Token, 0.5).is_err());
        assert!(mismatch(&[], &[]).unwrap().metrics().is_empty());
        // Extreme differences stay finite.
        let m = mismatch(&[vec![-1000.0]], &[vec![0.0]]).unwrap();
        assert!(m.ratio_max.is_finite() && m.ratio_max > 1e8);
    }
}
