//! The curriculum: which examples and lengths each phase admits, and when phases change.

use serde::{Deserialize, Serialize};

use crate::Result;

/// How long a phase runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseLength {
    Steps(u64),
    Epochs(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseSpec {
    pub name: String,
    /// Prompts must be longer than this (L(k-1); 0 in cumulative mode).
    pub min_input_tokens_exclusive: u64,
    /// L(k): prompts must be at most this long.
    pub max_input_tokens: u64,
    pub max_output_tokens: u32,
    pub length: PhaseLength,
}

impl PhaseSpec {
    pub fn admits(&self, prompt_tokens: u64) -> bool {
        prompt_tokens > self.min_input_tokens_exclusive && prompt_tokens <= self.max_input_tokens
    }
}

/// Progress within the current phase, reported by the trainer after each step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseProgress {
    pub steps: u64,
    pub epochs: u64,
    /// The step's accuracy: the share of its rollouts whose raw reward reaches the trainer's
    /// accuracy threshold (metric `accuracy`); `None` when the trainer does not report it.
    #[serde(default)]
    pub accuracy: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseTransition {
    Continue,
    /// Enter phase `k` (its index in `phases()`).
    Enter(usize),
    Finished,
}

pub trait Curriculum: Send {
    fn phases(&self) -> Result<Vec<PhaseSpec>>;
    /// Index of the phase being trained.
    fn current_phase(&self) -> Result<usize>;
    /// Decide, after a step, whether the phase goes on.
    fn advance(&mut self, progress: PhaseProgress) -> Result<PhaseTransition>;
    fn save_state(&self) -> Result<Vec<u8>>;
    fn load_state(&mut self, state: &[u8]) -> Result<()>;
}
