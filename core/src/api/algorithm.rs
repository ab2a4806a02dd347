//! The RL algorithm: turns groups of rewarded rollouts into advantages and a policy loss.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::Result;

/// Everything the loss of one micro-batch needs. Tensors are `[batch, max_response_len]` unless noted.
#[derive(Debug)]
pub struct LossInputs {
    /// Current policy log-probs, with gradients.
    pub logprobs: Tensor,
    /// Log-probs recorded at rollout time (the behaviour policy).
    pub old_logprobs: Tensor,
    /// Frozen reference log-probs, when the algorithm asked for them.
    pub ref_logprobs: Option<Tensor>,
    /// Per-token entropy, when the algorithm asked for it.
    pub entropy: Option<Tensor>,
    /// One advantage per sequence: `[batch]`.
    pub advantages: Tensor,
    /// 1.0 on tokens that count, 0.0 on padding and masked-out responses.
    pub mask: Tensor,
    /// Sizes of the whole mini-batch this micro-batch belongs to, so that micro-batch losses
    /// summed over gradient accumulation equal the mini-batch loss.
    pub normalizer: LossNormalizer,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossNormalizer {
    /// Unmasked response tokens in the mini-batch.
    pub tokens: f64,
    /// Sequences of the mini-batch with at least one unmasked token (fully masked ones stay out of
    /// the seq-mean divisors, as in verl).
    pub sequences: f64,
    /// The longest response allowed (the Dr.GRPO constant of seq-mean-token-sum-norm).
    pub max_response_len: f64,
}

#[derive(Debug)]
pub struct LossOutput {
    /// Scalar loss to call `backward` on.
    pub loss: Tensor,
    /// Diagnostics: `pg_loss`, `clip_frac`, `kl`, `entropy`, `ratio_mean`, ...
    pub metrics: BTreeMap<String, f64>,
}

/// How the trainer should drive the algorithm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlgorithmSettings {
    /// Passes over each rollout batch.
    pub epochs: u32,
    /// Prompts (groups) per optimizer step.
    pub mini_batch_prompts: u32,
    /// Keep a frozen reference policy and pass its log-probs.
    pub needs_reference: bool,
    /// Pass per-token entropy (entropy bonus or metrics).
    pub needs_entropy: bool,
    /// DAPO dynamic sampling: drop groups whose rewards are all equal and generate more.
    pub dynamic_sampling: bool,
    /// Generation rounds allowed to fill one batch under dynamic sampling.
    pub max_gen_batches: u32,
    /// Exclude truncated (finish = length) responses from the loss.
    pub mask_truncated: bool,
}

impl Default for AlgorithmSettings {
    /// The plainest loop: one pass, one prompt per optimizer step, no reference, entropy, dynamic
    /// sampling or masking (what the host falls back to when a plugin's settings cannot be read).
    fn default() -> Self {
        AlgorithmSettings {
            epochs: 1,
            mini_batch_prompts: 1,
            needs_reference: false,
            needs_entropy: false,
            dynamic_sampling: false,
            max_gen_batches: 1,
            mask_truncated: false,
        }
    }
}

pub trait Algorithm: Send {
    fn settings(&self) -> AlgorithmSettings;
    /// Reward after length shaping (DAPO's overlong penalty); identity when shaping is off.
    fn shape_reward(&self, reward: f32, response_len: u32, max_response_len: u32) -> f32;
    /// Whether a group takes part in the update (dynamic sampling); always true when that is off.
    fn keep_group(&self, rewards: &[f32]) -> bool;
    /// One advantage per rollout. `rewards` is laid out group after group; `group_sizes` sums to its length.
    fn advantages(&self, rewards: &[f32], group_sizes: &[u32]) -> Result<Vec<f32>>;
    fn loss(&self, inputs: &LossInputs) -> Result<LossOutput>;
    /// Opaque state for checkpoints (empty for stateless algorithms).
    fn save_state(&self) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }
    fn load_state(&mut self, _state: &[u8]) -> Result<()> {
        Ok(())
    }
}
