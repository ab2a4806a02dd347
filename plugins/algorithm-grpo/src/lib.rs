//! Algorithm `grpo`: group-relative advantages (GRPO, Dr.GRPO, RLOO) and the DAPO-style clipped
//! policy loss (clip-higher, dual clip, four loss aggregations, KL and entropy terms), plus DAPO's
//! dynamic sampling rule and overlong reward shaping (QwenLong-L1 Eq. 7). Config keys: see
//! [`config::GrpoConfig`]; the batch schedule the host runs (mini-batches, epochs, dynamic sampling
//! on or off, masking truncated responses) is the host's `[train]` config.

pub mod advantages;
pub mod config;
pub mod loss;

use longrl_core::Result;
use longrl_core::abi::Component;
use longrl_core::api::{
    Algorithm, AlgorithmSettings, ComponentContext, ComponentInfo, ComponentKind, LossInputs, LossOutput,
};
use longrl_core::sdk::{config_keys, parse_config};

use config::GrpoConfig;

pub struct Grpo {
    config: GrpoConfig,
}

impl Grpo {
    pub fn new(config: GrpoConfig) -> Result<Self> {
        config.validate()?;
        Ok(Grpo { config })
    }

    pub fn config(&self) -> &GrpoConfig {
        &self.config
    }
}

impl Component for Grpo {
    fn info() -> ComponentInfo {
        ComponentInfo {
            kind: ComponentKind::Algorithm,
            name: "grpo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "GRPO / Dr.GRPO / RLOO advantages and the DAPO clipped policy loss (clip-higher, dual clip, \
                          token- or sequence-level aggregation, optional KL to a reference and entropy bonus), with \
                          DAPO dynamic sampling and overlong reward shaping: QwenLong-L1's RL algorithm."
                .into(),
            config: config_keys::<GrpoConfig>(),
        }
    }

    fn create(config: &serde_json::Value, _context: &ComponentContext) -> Result<Self> {
        let grpo = Grpo::new(parse_config("algorithm/grpo", config)?)?;
        let c = &grpo.config;
        tracing::info!(advantage = ?c.advantage, scale = ?c.scale(), clip_low = c.clip_low, clip_high = c.clip_high,
            dual_clip = ?c.dual_clip, loss_agg = ?c.loss_agg, kl_coef = c.kl_coef, entropy_coef = c.entropy_coef,
            overlong_buffer = c.overlong_buffer, "grpo algorithm ready");
        Ok(grpo)
    }
}

impl Algorithm for Grpo {
    fn settings(&self) -> Result<AlgorithmSettings> {
        let c = &self.config;
        Ok(AlgorithmSettings {
            needs_reference: c.kl_coef > 0.0,
            needs_entropy: c.entropy_coef != 0.0 || c.log_entropy,
        })
    }

    /// DAPO's overlong penalty, as in its code: `min(-(len - (max - buffer)) / buffer * factor, 0)`.
    /// The buffer is capped at `max_response_len` so a small test budget is not penalised everywhere.
    fn shape_reward(&self, reward: f32, response_len: u32, max_response_len: u32) -> Result<f32> {
        let buffer = self.config.overlong_buffer.min(max_response_len);
        if buffer == 0 {
            return Ok(reward);
        }
        let expected = f64::from(max_response_len - buffer);
        let exceed = f64::from(response_len) - expected;
        let penalty = (-exceed / f64::from(buffer) * self.config.overlong_factor).min(0.0);
        Ok((f64::from(reward) + penalty) as f32)
    }

    /// Keep a group unless its rewards are all equal (std = 0, so every advantage would be 0). A
    /// lone rollout has std 0 and is dropped, as in verl.
    fn keep_group(&self, rewards: &[f32]) -> Result<bool> {
        Ok(rewards.first().is_some_and(|first| rewards.iter().any(|r| r != first)))
    }

    fn advantages(&self, rewards: &[f32], group_sizes: &[u32]) -> Result<Vec<f32>> {
        advantages::compute(self.config.advantage, self.config.scale(), self.config.eps, rewards, group_sizes)
    }

    fn loss(&self, inputs: &LossInputs) -> Result<LossOutput> {
        loss::policy_loss(&self.config, inputs)
    }
}

longrl_core::export_plugin!(algorithm: [Grpo]);

#[cfg(test)]
mod loss_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn grpo(config: serde_json::Value) -> Grpo {
        Grpo::create(&config, &ComponentContext::default()).unwrap()
    }

    #[test]
    fn settings_follow_config() {
        let s = grpo(json!({})).settings().unwrap();
        assert!(!s.needs_reference && s.needs_entropy);
        let s = grpo(json!({"kl_coef": 0.01, "log_entropy": false})).settings().unwrap();
        assert!(s.needs_reference && !s.needs_entropy);
        let s = grpo(json!({"log_entropy": false, "entropy_coef": 0.001})).settings().unwrap();
        assert!(s.needs_entropy);
    }

    #[test]
    fn overlong_shaping_matches_eq7() {
        let g = grpo(json!({"overlong_buffer": 1000, "overlong_factor": 1.0}));
        // max 10000, buffer 1000: no penalty up to 9000, then linear to -1 at 10000.
        assert_eq!(g.shape_reward(1.0, 5000, 10000).unwrap(), 1.0);
        assert_eq!(g.shape_reward(1.0, 9000, 10000).unwrap(), 1.0);
        assert!((g.shape_reward(1.0, 9500, 10000).unwrap() - 0.5).abs() < 1e-6);
        assert!((g.shape_reward(0.0, 10000, 10000).unwrap() + 1.0).abs() < 1e-6);
        let g = grpo(json!({"overlong_buffer": 100, "overlong_factor": 0.5}));
        assert!((g.shape_reward(1.0, 975, 1000).unwrap() - (1.0 - 0.75 * 0.5)).abs() < 1e-6);
        // A buffer longer than the budget covers the whole budget.
        assert!((g.shape_reward(1.0, 40, 50).unwrap() - (1.0 - 0.4)).abs() < 1e-6);
        // Off by default.
        assert_eq!(grpo(json!({})).shape_reward(0.3, 10000, 10000).unwrap(), 0.3);
    }

    #[test]
    fn dynamic_sampling_keeps_only_informative_groups() {
        let g = grpo(json!({}));
        assert!(g.keep_group(&[0.0, 1.0, 0.0]).unwrap());
        assert!(!g.keep_group(&[1.0, 1.0, 1.0]).unwrap());
        assert!(!g.keep_group(&[0.0, 0.0]).unwrap());
        assert!(!g.keep_group(&[0.5]).unwrap());
        assert!(!g.keep_group(&[]).unwrap());
    }

    #[test]
    fn estimator_and_scale_resolve() {
        let adv = grpo(json!({"advantage": "drgrpo"})).advantages(&[1.0, 0.0], &[2]).unwrap();
        assert_eq!(adv, vec![0.5, -0.5]);
        let adv = grpo(json!({"advantage": "grpo", "scale": "none"})).advantages(&[1.0, 0.0], &[2]).unwrap();
        assert_eq!(adv, vec![0.5, -0.5]);
        let adv = grpo(json!({"advantage": "rloo"})).advantages(&[1.0, 0.0], &[2]).unwrap();
        assert_eq!(adv, vec![1.0, -1.0]);
    }

    #[test]
    fn bad_configs_name_the_key() {
        let err = |config: serde_json::Value| {
            Grpo::create(&config, &ComponentContext::default()).err().expect("should fail").to_string()
        };
        for (config, key) in [
            (json!({"clip_low": 1.0}), "clip_low"),
            (json!({"clip_high": -0.1}), "clip_high"),
            (json!({"dual_clip": 0.9}), "dual_clip"),
            (json!({"kl_coef": -1.0}), "kl_coef"),
            (json!({"eps": -1.0}), "eps"),
            (json!({"overlong_factor": -2.0}), "overlong_factor"),
            (json!({"advantage": "drgrpo", "scale": "group"}), "scale"),
            (json!({"advantage": "ppo"}), "ppo"),
            (json!({"loss_agg": "token_mean"}), "token_mean"),
            (json!({"kl_estimator": "k4"}), "k4"),
            (json!({"clip_ratio": 0.2}), "clip_ratio"),
        ] {
            let e = err(config.clone());
            assert!(e.contains(key), "{config}: {e}");
        }
    }
}
