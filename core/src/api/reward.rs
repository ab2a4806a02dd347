//! A reward scores a batch of responses. Rule verifiers and LLM judges are both rewards.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Result;

/// One response to score and what it is scored against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardInput {
    /// The model's full response (reasoning included).
    pub response: String,
    pub ground_truth: String,
    /// Routes the example to a rule (`docmath_v1`, `musique_v1`, ...).
    pub data_source: String,
    /// The prompt text the model saw (judges extract the problem from it).
    pub prompt: String,
    /// The bare question, when known (fallback for judges).
    pub question: String,
}

/// A score and how it was reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardScore {
    pub score: f32,
    /// The rule or verdict that decided, e.g. `docqa.sub_em` or `judge.yes`.
    pub decided_by: String,
    /// Component-specific breakdown (extracted answer, normalised forms, ...).
    pub details: serde_json::Value,
}

pub trait Reward: Send + Sync {
    /// Fail at start-up for data sources this reward cannot route.
    fn check_sources(&self, sources: &[String]) -> Result<()>;
    fn score(&self, batch: &[RewardInput]) -> Result<Vec<RewardScore>>;
    /// Counters accumulated since the last call (judge calls, fallbacks, ...), then reset.
    fn take_metrics(&self) -> Result<BTreeMap<String, f64>> {
        Ok(BTreeMap::new())
    }
}
