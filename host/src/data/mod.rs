//! Training and evaluation data: examples, the recipe's prompt template, loaders.

pub mod template;
pub mod truncate;

use serde::{Deserialize, Serialize};

/// One RL example, whatever file format it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Stable id (the row's own id, else `<file stem>:<row>`).
    pub id: String,
    /// Routes the reward (`docmath_v1`, `musique_v1`, `long_toc_choices_0_20000`, ...).
    pub data_source: String,
    /// The chat messages of the prompt (the user turn holds the templated document and question).
    pub prompt: Vec<longrl_core::api::ChatMessage>,
    /// The bare question when known (judges fall back to it).
    pub question: String,
    pub ground_truth: String,
    pub ability: String,
    /// Anything else the row carried.
    pub extra: serde_json::Value,
}

/// One SFT trace: the prompt messages and the target response (`<think>…</think>` + answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftExample {
    pub id: String,
    pub prompt: Vec<longrl_core::api::ChatMessage>,
    pub response: String,
}
