//! `[sft]` and `[train]`: the warm-up and the RL loop (owned by the trainer).

use serde::{Deserialize, Serialize};

/// How the learning rate moves after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// The peak rate until the end (the recipe's choice).
    Constant,
    /// Cosine decay from the peak to `min_lr_ratio * lr` at the last step.
    Cosine,
}

/// AdamW and its schedule: the keys `[sft]` and `[train]` share, flattened into each (verl's actor
/// defaults, which the QwenLong-L1 script inherits: weight decay 0.01, grad clip 1.0, constant lr).
/// No serde defaults of its own: the sections' defaults (which differ in `lr`) fill missing keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up from 0 over this many optimizer steps.
    pub warmup_steps: u64,
    /// `constant` or `cosine` after warm-up.
    pub schedule: LrSchedule,
    /// Floor of the cosine schedule, as a fraction of `lr`.
    pub min_lr_ratio: f64,
    /// Decoupled weight decay (AdamW), applied to every parameter.
    pub weight_decay: f64,
    /// AdamW first-moment coefficient.
    pub beta1: f64,
    /// AdamW second-moment coefficient.
    pub beta2: f64,
    /// AdamW epsilon.
    #[serde(rename = "adam_eps")]
    pub eps: f64,
    /// Clip the global gradient norm to this (0: no clipping).
    pub grad_clip: f64,
}

impl OptimConfig {
    /// verl's actor optimizer with peak rate `lr`.
    pub fn with_lr(lr: f64) -> Self {
        OptimConfig {
            lr,
            warmup_steps: 0,
            schedule: LrSchedule::Constant,
            min_lr_ratio: 0.0,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            grad_clip: 1.0,
        }
    }

    /// Checks serde cannot express; `prefix` is the section (`sft` or `train`).
    fn validate(&self, prefix: &str) -> anyhow::Result<()> {
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            anyhow::bail!("config key `{prefix}.lr`: must be a non-negative number");
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            anyhow::bail!("config key `{prefix}.beta1`/`{prefix}.beta2`: must be in [0, 1)");
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            anyhow::bail!("config key `{prefix}.min_lr_ratio`: must be in [0, 1]");
        }
        if self.grad_clip < 0.0 || self.weight_decay < 0.0 || self.eps <= 0.0 {
            anyhow::bail!("config key `{prefix}.grad_clip`/`weight_decay`/`adam_eps`: must be >= 0 (adam_eps > 0)");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftConfig {
    /// Run the SFT warm-up on `data.sft_files` before RL.
    pub enabled: bool,
    pub epochs: u32,
    /// Sequences per optimizer step (batches are formed from sequences of similar length).
    pub batch_size: u32,
    /// Sequences per forward/backward pass; gradients accumulate over a batch's micro-batches.
    pub micro_batch_size: u32,
    /// Longer traces (prompt + response tokens) are truncated in the middle of the prompt (0: no limit).
    pub max_tokens: u32,
    /// Steps between metric records of the SFT loss (1: every step).
    pub log_every: u64,
    /// `lr`, `warmup_steps`, `schedule`, `min_lr_ratio`, `weight_decay`, `beta1`, `beta2`,
    /// `adam_eps`, `grad_clip`.
    #[serde(flatten)]
    pub optim: OptimConfig,
}

impl Default for SftConfig {
    /// The paper's SFT: 3 epochs, lr 5e-6.
    fn default() -> Self {
        SftConfig {
            enabled: false,
            epochs: 3,
            batch_size: 128,
            micro_batch_size: 1,
            max_tokens: 0,
            log_every: 1,
            optim: OptimConfig::with_lr(5e-6),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Run the RL phases of the curriculum (false: SFT and evaluation only).
    pub enabled: bool,
    /// Prompts (groups) per RL step (the train batch size).
    pub batch_prompts: u32,
    /// Prompts drawn per generation round; dynamic sampling draws rounds until `batch_prompts` groups
    /// are kept (0: `batch_prompts`; the release script used 384 for a batch of 128).
    pub gen_batch_prompts: u32,
    /// Prompts (groups) per optimizer step: each RL step takes `batch_prompts / mini_batch_prompts`
    /// optimizer steps per epoch (recipe: 32).
    pub mini_batch_prompts: u32,
    /// Passes of the policy update over each step's rollouts (PPO epochs).
    pub epochs: u32,
    /// DAPO dynamic sampling: drop groups the algorithm finds uninformative (GRPO: rewards all equal)
    /// and draw more prompts until `batch_prompts` groups are kept.
    pub dynamic_sampling: bool,
    /// Generation rounds allowed to fill one batch under dynamic sampling (recipe: 10), then an error.
    pub max_gen_batches: u32,
    /// Leave responses cut at the length limit (finish = length) out of the loss.
    pub mask_truncated: bool,
    /// Rollouts per prompt (G).
    pub rollouts: u32,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: u32,
    /// Cap on response tokens; each phase's `max_output_tokens` applies below it (0: the phase's alone).
    pub max_response_tokens: u32,
    /// Sequences per forward/backward pass of the policy update (gradient accumulation within a
    /// mini-batch) and per no-grad log-prob pass.
    pub micro_batch_size: u32,
    /// Prompts per `generate` call (bounds the KV cache; 0: all prompts of a round at once).
    pub generate_batch_prompts: u32,
    /// Stop generation at these strings (kept out of the response).
    pub stop: Vec<String>,
    /// Tokens per chunk of the vocabulary projection in log-prob passes (0: the policy's default).
    pub logprob_chunk_tokens: u32,
    /// `lr`, `warmup_steps`, `schedule`, `min_lr_ratio`, `weight_decay`, `beta1`, `beta2`,
    /// `adam_eps`, `grad_clip`.
    #[serde(flatten)]
    pub optim: OptimConfig,
    /// Save a checkpoint every this many RL steps (0: only at phase ends); SFT saves at its end.
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk (the oldest are deleted; at least 1).
    pub keep_checkpoints: u32,
    /// Stop after this many RL steps in total, whatever the curriculum says (0: no limit).
    pub max_steps: u64,
    /// Write TensorBoard event files beside `metrics.jsonl`.
    pub tensorboard: bool,
    /// Show a progress bar on the console.
    pub progress_bar: bool,
    /// Append sampled groups to `RUN_DIR/rollouts.jsonl` every this many RL steps (verl's
    /// `rollout_data_dir`, TRL's `log_completions`), and count the reasoning behaviours of the logged
    /// responses into that step's metrics (`behaviour/...`); 0: off.
    pub log_rollouts_every: u64,
    /// Groups (prompts with all their rollouts) logged per logged step (0: every group of the step).
    pub log_rollout_groups: u32,
}

impl Default for TrainConfig {
    /// The QwenLong-L1 recipe: batch 128 in mini-batches of 32, G 8, lr 2e-6 constant, temperature
    /// 0.7, top-p 0.95, DAPO dynamic sampling over at most 10 generation rounds.
    fn default() -> Self {
        TrainConfig {
            enabled: true,
            batch_prompts: 128,
            gen_batch_prompts: 0,
            mini_batch_prompts: 32,
            epochs: 1,
            dynamic_sampling: true,
            max_gen_batches: 10,
            mask_truncated: false,
            rollouts: 8,
            temperature: 0.7,
            top_p: 0.95,
            top_k: 0,
            max_response_tokens: 0,
            micro_batch_size: 1,
            generate_batch_prompts: 0,
            stop: Vec::new(),
            logprob_chunk_tokens: 0,
            optim: OptimConfig::with_lr(2e-6),
            checkpoint_every: 50,
            keep_checkpoints: 2,
            max_steps: 0,
            tensorboard: true,
            progress_bar: true,
            log_rollouts_every: 10,
            log_rollout_groups: 4,
        }
    }
}

impl TrainConfig {
    /// Checks serde cannot express, naming the key.
    pub fn validate(&self, sft: &SftConfig) -> anyhow::Result<()> {
        let positive = [
            ("train.batch_prompts", self.batch_prompts as f64),
            ("train.rollouts", self.rollouts as f64),
            ("train.mini_batch_prompts", self.mini_batch_prompts as f64),
            ("train.epochs", self.epochs as f64),
            ("train.max_gen_batches", self.max_gen_batches as f64),
            ("train.micro_batch_size", self.micro_batch_size as f64),
            ("train.keep_checkpoints", self.keep_checkpoints as f64),
            ("sft.batch_size", sft.batch_size as f64),
            ("sft.micro_batch_size", sft.micro_batch_size as f64),
        ];
        for (key, value) in positive {
            if value <= 0.0 {
                anyhow::bail!("config key `{key}`: must be at least 1");
            }
        }
        self.optim.validate("train")?;
        sft.optim.validate("sft")?;
        if !(self.temperature >= 0.0) || !(self.top_p > 0.0 && self.top_p <= 1.0) {
            anyhow::bail!("config key `train.temperature`/`train.top_p`: temperature >= 0 and 0 < top_p <= 1");
        }
        Ok(())
    }
}
