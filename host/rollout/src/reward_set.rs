//! The configured rewards as one: scored in order, combined by max; with `cascade`, a later reward
//! sees only the responses whose best score so far is below `max_score` (the hybrid reward asks the
//! judge only when the rule fails).
//!
//! A response no reward could decide is **unscored**, never a made-up 0: a later reward (the judge)
//! that leaves it unscored (score NaN, `decided_by` ending in `.unscored`) or fails outright, where
//! the earlier rewards scored below `max_score`, makes the set's score NaN with that provenance
//! ([`is_unscored`]). Callers leave such responses out of means and of the loss and count them. A
//! score at `max_score` is decided whatever a later reward does (the max cannot exceed it). A later
//! reward's `*.unavailable` verdicts still score 0 (the earlier score stands); fallbacks and failures
//! are counted in `judge_fallbacks`, and a failure is logged once per burst, not once per batch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use longrl_core::api::{ComponentContext, Reward, RewardInput, RewardScore};

use longrl_config::RewardConfig;
use longrl_plugins::PluginSet;

/// Metric key of responses whose later reward (the judge) could not answer.
pub const FALLBACK_METRIC: &str = "judge_fallbacks";
/// Metric key of the calls of a later reward that failed outright (their responses fell back).
pub const FAILED_CALLS_METRIC: &str = "reward_failed_calls";

/// Whether no reward could decide this response (its score is NaN; `decided_by` says why).
pub fn is_unscored(score: &RewardScore) -> bool {
    !score.score.is_finite()
}

struct Member {
    name: String,
    reward: Box<dyn Reward>,
    /// Inside a run of failed calls (logged at its start and end only).
    failing: AtomicBool,
}

pub struct RewardSet {
    rewards: Vec<Member>,
    cascade: bool,
    max_score: f32,
    /// `*.unavailable` verdicts seen (reported when the reward does not report `judge_fallbacks`).
    unavailable: AtomicU64,
    /// Responses that kept an earlier score because a later reward failed outright.
    failed_items: AtomicU64,
    failed_calls: AtomicU64,
}

impl RewardSet {
    pub fn new(rewards: Vec<(String, Box<dyn Reward>)>, cascade: bool, max_score: f32) -> Self {
        let rewards = rewards
            .into_iter()
            .map(|(name, reward)| Member { name, reward, failing: AtomicBool::new(false) })
            .collect();
        RewardSet {
            rewards,
            cascade,
            max_score,
            unavailable: AtomicU64::new(0),
            failed_items: AtomicU64::new(0),
            failed_calls: AtomicU64::new(0),
        }
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
        for member in &self.rewards {
            member.reward.check_sources(sources).map_err(|e| anyhow::anyhow!("reward `{}`: {e}", member.name))?;
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
        // The first reward that could not decide each response, if any did not.
        let mut undecided: Vec<Option<RewardScore>> = vec![None; inputs.len()];
        let mut details: Vec<serde_json::Map<String, serde_json::Value>> = vec![Default::default(); inputs.len()];
        for (position, member) in self.rewards.iter().enumerate() {
            let pending: Vec<usize> = (0..inputs.len())
                .filter(|&i| !self.cascade || best[i].as_ref().is_none_or(|b| b.score < self.max_score))
                .collect();
            if pending.is_empty() {
                continue;
            }
            let batch: Vec<RewardInput> = pending.iter().map(|&i| inputs[i].clone()).collect();
            let scores = match self.call(member, &batch) {
                Ok(scores) => scores,
                // The first reward scores everything; without it there is nothing to fall back on.
                Err(error) if position == 0 => return Err(error),
                Err(error) => {
                    self.note_failure(member, &error, pending.len());
                    for &i in &pending {
                        details[i].insert(member.name.clone(), serde_json::json!({"error": format!("{error:#}")}));
                        undecided[i].get_or_insert_with(|| RewardScore {
                            score: f32::NAN,
                            decided_by: format!("{}.failed", member.name),
                            details: serde_json::Value::Null,
                        });
                    }
                    continue;
                }
            };
            for (&i, score) in pending.iter().zip(scores) {
                if score.decided_by.ends_with(".unavailable") {
                    self.unavailable.fetch_add(1, Ordering::Relaxed);
                }
                // JSON has no NaN: an unscored verdict's score is null.
                let shown = if is_unscored(&score) { None } else { Some(score.score) };
                details[i].insert(
                    member.name.clone(),
                    serde_json::json!({"score": shown, "decided_by": score.decided_by, "details": score.details}),
                );
                if is_unscored(&score) {
                    undecided[i].get_or_insert(score);
                    continue;
                }
                if best[i].as_ref().is_none_or(|b| score.score > b.score) {
                    best[i] = Some(score);
                }
            }
        }
        best.into_iter()
            .zip(undecided)
            .zip(details)
            .map(|((score, undecided), details)| {
                let decided = score.filter(|s| undecided.is_none() || s.score >= self.max_score);
                let score = decided
                    .or(undecided)
                    .ok_or_else(|| anyhow::anyhow!("internal: an input was scored by no reward"))?;
                Ok(RewardScore {
                    score: score.score,
                    decided_by: score.decided_by,
                    details: serde_json::Value::Object(details),
                })
            })
            .collect()
    }

    /// One reward's scores for `batch`, checked: one finite score per input.
    fn call(&self, member: &Member, batch: &[RewardInput]) -> anyhow::Result<Vec<RewardScore>> {
        let scores = member.reward.score(batch).map_err(|e| anyhow::anyhow!("reward `{}`: {e}", member.name))?;
        if scores.len() != batch.len() {
            anyhow::bail!("reward `{}` returned {} scores for {} responses", member.name, scores.len(), batch.len());
        }
        if let Some(bad) = scores.iter().find(|s| !s.score.is_finite() && !s.decided_by.ends_with(".unscored")) {
            anyhow::bail!(
                "reward `{}` returned a non-finite score ({}, decided by `{}`; only `*.unscored` verdicts may be NaN)",
                member.name,
                bad.score,
                bad.decided_by
            );
        }
        if member.failing.swap(false, Ordering::Relaxed) {
            tracing::info!(reward = %member.name, "reward answering again");
        }
        Ok(scores)
    }

    fn note_failure(&self, member: &Member, error: &anyhow::Error, items: usize) {
        self.failed_calls.fetch_add(1, Ordering::Relaxed);
        self.failed_items.fetch_add(items as u64, Ordering::Relaxed);
        if !member.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                reward = %member.name,
                "{error:#}; the earlier rewards' scores stand (counted in {FALLBACK_METRIC}; logged once until it answers again)"
            );
        }
    }

    /// Counters of every reward since the last call, with the fallbacks this set saw.
    pub fn take_metrics(&self) -> anyhow::Result<BTreeMap<String, f64>> {
        let mut out = BTreeMap::new();
        for member in &self.rewards {
            out.extend(member.reward.take_metrics()?);
        }
        let unavailable = self.unavailable.swap(0, Ordering::Relaxed) as f64;
        let failed_items = self.failed_items.swap(0, Ordering::Relaxed) as f64;
        let failed_calls = self.failed_calls.swap(0, Ordering::Relaxed) as f64;
        if self.rewards.len() > 1 {
            // A judge that counts its own fallbacks is trusted; failed calls are never counted by it.
            *out.entry(FALLBACK_METRIC.to_string()).or_insert(unavailable) += failed_items;
            out.insert(FAILED_CALLS_METRIC.to_string(), failed_calls);
        }
        Ok(out)
    }
}
