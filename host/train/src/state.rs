//! The trainer's counters: where the run is, saved in every checkpoint as `trainer.json`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub seed: u64,
    /// Steps logged so far across stages (the metrics' `step`).
    pub global_step: u64,
    /// SFT optimizer steps taken, and where the next batch comes from.
    pub sft_steps: u64,
    pub sft_epoch: u32,
    pub sft_batch: usize,
    pub sft_done: bool,
    /// `Sampler::begin_phase` has been called for the first phase.
    pub rl_started: bool,
    pub rl_steps: u64,
    pub phase: usize,
    pub phase_steps: u64,
    pub rl_done: bool,
    /// Which optimizer the checkpoint's `optimizer.safetensors` belongs to (`sft` or `rl`), and its step count.
    pub optimizer_stage: Option<String>,
    pub optimizer_steps: u64,
    /// A stage that ended before this checkpoint and whose evaluation has not run yet.
    pub pending_eval: Option<String>,
}
