//! The RL algorithm: turns groups of rewarded rollouts into advantages and a policy loss.

use serde::{Deserialize, Serialize};
#[cfg(feature = "tensor")]
use {crate::Result, std::collections::BTreeMap, tch::Tensor};

#[cfg(feature = "tensor")]
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

#[cfg(feature = "tensor")]
#[derive(Debug)]
pub struct LossOutput {
    /// Scalar loss to call `backward` on.
    pub loss: Tensor,
    /// Diagnostics: `pg_loss`, `clip_frac`, `kl`, `entropy`, `ratio_mean`, ...
    pub metrics: BTreeMap<String, f64>,
}

/// What the algorithm needs from the trainer. The batch schedule the host executes (mini-batches,
/// epochs, dynamic sampling's rounds, masking truncated responses) is the `[train]` config's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlgorithmSettings {
    /// Keep a frozen reference policy and pass its log-probs.
    pub needs_reference: bool,
    /// Pass per-token entropy (entropy bonus or metrics).
    pub needs_entropy: bool,
}

/// Every method may fail: the host stops with the error (naming the plugin) rather than guess a value.
#[cfg(feature = "tensor")]
pub trait Algorithm: Send {
    fn settings(&self) -> Result<AlgorithmSettings>;
    /// Reward after length shaping (DAPO's overlong penalty); identity when shaping is off.
    fn shape_reward(&self, reward: f32, response_len: u32, max_response_len: u32) -> Result<f32>;
    /// Whether a group takes part in the update under dynamic sampling (`train.dynamic_sampling`;
    /// not asked when that is off).
    fn keep_group(&self, rewards: &[f32]) -> Result<bool>;
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
