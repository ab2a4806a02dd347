//! `[sft]` and `[train]`: the warm-up and the RL loop (owned by the trainer).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftConfig {
    pub enabled: bool,
    pub epochs: u32,
    pub lr: f64,
}

impl Default for SftConfig {
    fn default() -> Self {
        SftConfig { enabled: false, epochs: 3, lr: 5e-6 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Prompts per RL step (train batch size).
    pub batch_prompts: u32,
    /// Rollouts per prompt (G).
    pub rollouts: u32,
    pub lr: f64,
    pub temperature: f32,
    pub top_p: f32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig { batch_prompts: 128, rollouts: 8, lr: 2e-6, temperature: 0.7, top_p: 0.95 }
    }
}
