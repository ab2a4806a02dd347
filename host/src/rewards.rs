//! The configured rewards as one: scored in order, combined by max; with `cascade`, a later reward
//! sees only the responses whose best score so far is below `max_score` (the hybrid reward asks the
//! judge only when the rule fails).

use std::collections::BTreeMap;

use longrl_core::api::{ComponentContext, Reward, RewardInput, RewardScore};

use crate::config::RewardConfig;
use crate::plugins::PluginSet;

pub struct RewardSet {
    rewards: Vec<(String, Box<dyn Reward>)>,
    cascade: bool,
    max_score: f32,
}

impl RewardSet {
    pub fn new(rewards: Vec<(String, Box<dyn Reward>)>, cascade: bool, max_score: f32) -> Self {
        RewardSet { rewards, cascade, max_score }
    }

    pub fn from_config(config: &RewardConfig, plugins: &PluginSet, ctx: &ComponentContext) -> anyhow::Result<Self> {
        let mut rewards = Vec::new();
        for component in &config.components {
            let reward = plugins.reward(&component.name, &component.config, ctx)?;
            rewards.push((component.name.clone(), reward));
        }
        Ok(RewardSet::new(rewards, config.cascade, config.max_score))
    }

    /// Every reward must route every data source of the data (checked at start-up).
    pub fn check_sources(&self, sources: &[String]) -> anyhow::Result<()> {
        for (_, reward) in &self.rewards {
            reward.check_sources(sources)?;
        }
        Ok(())
    }

    /// One score per input: the max over rewards, `decided_by` from the reward that gave it, and
    /// every reward's breakdown under `details.<name>`.
    pub fn score(&self, inputs: &[RewardInput]) -> anyhow::Result<Vec<RewardScore>> {
        if self.rewards.is_empty() {
            anyhow::bail!("no reward is configured (`reward.components` is empty)");
        }
        let mut best: Vec<Option<RewardScore>> = vec![None; inputs.len()];
        let mut details: Vec<serde_json::Map<String, serde_json::Value>> = vec![Default::default(); inputs.len()];
        for (name, reward) in &self.rewards {
            let pending: Vec<usize> = (0..inputs.len())
                .filter(|&i| !self.cascade || best[i].as_ref().is_none_or(|b| b.score < self.max_score))
                .collect();
            if pending.is_empty() {
                continue;
            }
            let batch: Vec<RewardInput> = pending.iter().map(|&i| inputs[i].clone()).collect();
            let scores = reward.score(&batch)?;
            for (&i, score) in pending.iter().zip(scores) {
                details[i].insert(name.clone(), serde_json::json!({"score": score.score, "decided_by": score.decided_by, "details": score.details}));
                if best[i].as_ref().is_none_or(|b| score.score > b.score) {
                    best[i] = Some(score);
                }
            }
        }
        Ok(best
            .into_iter()
            .zip(details)
            .map(|(score, details)| {
                let score = score.expect("at least one reward scores every input");
                RewardScore { score: score.score, decided_by: score.decided_by, details: serde_json::Value::Object(details) }
            })
            .collect())
    }

    /// Counters of every reward since the last call.
    pub fn take_metrics(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (_, reward) in &self.rewards {
            out.extend(reward.take_metrics());
        }
        out
    }
}
