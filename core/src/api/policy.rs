//! The policy: the model being trained. Generates rollouts and scores tokens with gradients.

use serde::{Deserialize, Serialize};
#[cfg(feature = "tensor")]
use {crate::Result, std::path::Path, tch::Tensor};

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// Sampling settings of one `generate` call. `temperature == 0` means greedy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationParams {
    pub max_new_tokens: u32,
    pub temperature: f32,
    /// Nucleus sampling mass; 1.0 disables it.
    pub top_p: f32,
    /// Keep the k most likely tokens; 0 disables it.
    pub top_k: u32,
    pub seed: u64,
    /// Generation of a sequence stops once its text contains one of these (the stop string is kept
    /// out of the returned text, as OpenAI-compatible servers do).
    pub stop: Vec<String>,
    /// Rollouts per prompt (G): output `i * rollouts + j` is the j-th rollout of prompt i.
    pub rollouts: u32,
    /// Prefill long prompts this many tokens at a time (0: all at once).
    pub prefill_chunk: u32,
}

impl Default for GenerationParams {
    fn default() -> Self {
        GenerationParams {
            max_new_tokens: 256,
            temperature: 0.7,
            top_p: 0.95,
            top_k: 0,
            seed: 0,
            stop: Vec::new(),
            rollouts: 1,
            prefill_chunk: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// An EOS token or a stop string ended the sequence.
    Stop,
    /// `max_new_tokens` was reached.
    Length,
}

/// One generated sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Response token ids (the EOS token that ended it included).
    pub tokens: Vec<u32>,
    /// Decoded response, special tokens skipped, cut before a stop string.
    pub text: String,
    /// Log-probability of each sampled token under the sampling distribution.
    pub logprobs: Vec<f32>,
    pub finish: FinishReason,
}

/// Output of `generate`, with timings for throughput metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerateOutput {
    pub generations: Vec<Generation>,
    pub prefill_tokens: u64,
    pub prefill_seconds: f64,
    pub decode_tokens: u64,
    pub decode_seconds: f64,
}

/// A prompt and a response to score token by token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    pub prompt: Vec<u32>,
    pub response: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogprobOptions {
    /// Build the autograd graph (training) or not (rollout-time / reference log-probs).
    pub with_grad: bool,
    /// Also return the per-token entropy of the policy's distribution.
    pub entropy: bool,
    /// Tokens per chunk of the vocabulary projection; bounds peak memory (0: the policy's default).
    pub chunk_tokens: u32,
    /// Divide logits by this before the softmax (the rollout temperature), as verl does.
    pub temperature: f32,
}

impl Default for LogprobOptions {
    fn default() -> Self {
        LogprobOptions { with_grad: false, entropy: false, chunk_tokens: 0, temperature: 1.0 }
    }
}

#[cfg(feature = "tensor")]
/// Per-token results, right-padded to the longest response: `[batch, max_response_len]`.
#[derive(Debug)]
pub struct LogprobOutput {
    pub logprobs: Tensor,
    pub entropy: Option<Tensor>,
    /// 1.0 on real response tokens, 0.0 on padding.
    pub mask: Tensor,
}

/// Facts about a loaded policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyDescription {
    pub architecture: String,
    pub num_parameters: u64,
    pub vocab_size: u64,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    pub device: String,
    pub dtype: String,
    pub max_position_embeddings: u64,
}

/// The model being trained.
#[cfg(feature = "tensor")]
pub trait Policy: Send {
    fn describe(&self) -> Result<PolicyDescription>;
    fn tokenize(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>>;
    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String>;
    /// Render messages with the model's chat template (as `apply_chat_template(tokenize=False)`).
    fn apply_chat_template(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String>;
    /// Sample `params.rollouts` responses for each prompt, under no-grad.
    fn generate(&mut self, prompts: &[Vec<u32>], params: &GenerationParams) -> Result<GenerateOutput>;
    /// Log-probabilities of each response token given its prompt and the tokens before it.
    fn logprobs(&mut self, batch: &[Sequence], options: &LogprobOptions) -> Result<LogprobOutput>;
    /// The trainable parameters, by checkpoint name. The tensors share storage and `.grad` with the
    /// model's own, so an optimizer stepping them trains the model.
    fn parameters(&self) -> Result<Vec<(String, Tensor)>>;
    /// Write the model in its checkpoint layout (HF: config.json, safetensors, tokenizer files).
    fn save(&self, dir: &Path) -> Result<()>;
    /// Replace the weights with those saved in `dir` (same architecture).
    fn load_weights(&mut self, dir: &Path) -> Result<()>;
}
