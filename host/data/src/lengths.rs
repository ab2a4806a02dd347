//! Prompt lengths in the policy's tokens (measured once, cached on disk) and the admission of
//! examples under a phase's input limit: over-long prompts are truncated by the host's one rule
//! ([`crate::prompt`]) or skipped, and counted either way.

use std::path::Path;

use anyhow::Context;
use longrl_core::api::{ChatMessage, Policy};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use longrl_config::OverlongPolicy;

use super::Example;
use crate::prompt::fit_user_message;

/// Tokens of a prompt as the model sees it: chat template with the generation prompt, no extra
/// special tokens (the template already holds them).
pub fn measure(policy: &dyn Policy, prompt: &[ChatMessage]) -> anyhow::Result<u64> {
    let text = policy.apply_chat_template(prompt, true)?;
    Ok(policy.tokenize(&text, false)?.len() as u64)
}

/// What identifies a tokenizer and chat template: a hash of how they treat a probe.
pub fn tokenizer_fingerprint(policy: &dyn Policy) -> anyhow::Result<String> {
    const PROBE: &str = "Probe: <think> the 12,345.6 QUICK brown fox</think> — ünïcode 漢字\n\tend";
    let mut hash = Sha256::new();
    hash.update(policy.describe()?.vocab_size.to_le_bytes());
    for id in policy.tokenize(PROBE, false)?.into_iter().chain(policy.tokenize(PROBE, true)?) {
        hash.update(id.to_le_bytes());
    }
    let messages = [ChatMessage::new("system", "S"), ChatMessage::new("user", PROBE)];
    hash.update(policy.apply_chat_template(&messages, true)?.as_bytes());
    Ok(hex::encode(hash.finalize()))
}

#[derive(Serialize, Deserialize)]
struct LengthCache {
    tokenizer: String,
    lengths: Vec<u64>,
}

/// The prompt length of every example. With `cache_dir`, lengths are read from (or written to)
/// `cache_dir/lengths-<hash>.json`, the hash covering the tokenizer and every example's id and prompt,
/// so any change to either measures again.
/// Without a cache directory the tokenizer is not fingerprinted (nothing is compared).
pub fn prompt_lengths(examples: &[Example], policy: &dyn Policy, cache_dir: Option<&Path>) -> anyhow::Result<Vec<u64>> {
    let cache = match cache_dir {
        Some(dir) => {
            let fingerprint = tokenizer_fingerprint(policy)?;
            Some((dir.join(format!("lengths-{}.json", cache_key(&fingerprint, examples))), fingerprint))
        }
        None => None,
    };
    if let Some((file, fingerprint)) = &cache
        && let Ok(bytes) = std::fs::read(file)
    {
        match serde_json::from_slice::<LengthCache>(&bytes) {
            Ok(cache) if &cache.tokenizer == fingerprint && cache.lengths.len() == examples.len() => {
                tracing::info!(file = %file.display(), "prompt lengths from cache");
                return Ok(cache.lengths);
            }
            _ => tracing::warn!(file = %file.display(), "length cache does not match the data; measuring again"),
        }
    }
    tracing::info!(examples = examples.len(), "measuring prompt lengths with the policy's tokenizer");
    let lengths = examples
        .iter()
        .map(|e| measure(policy, &e.prompt).with_context(|| format!("measuring the prompt of example `{}`", e.id)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some((file, fingerprint)) = cache {
        let dir = file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        // Written aside and renamed: a crash never leaves a half cache that parses.
        let tmp = file.with_extension("json.tmp");
        let cache = LengthCache { tokenizer: fingerprint, lengths: lengths.clone() };
        std::fs::write(&tmp, serde_json::to_vec(&cache)?)
            .with_context(|| format!("{}: cannot write", tmp.display()))?;
        std::fs::rename(&tmp, &file).with_context(|| format!("{}: cannot write", file.display()))?;
    }
    Ok(lengths)
}

fn cache_key(fingerprint: &str, examples: &[Example]) -> String {
    let mut hash = Sha256::new();
    hash.update(fingerprint.as_bytes());
    for example in examples {
        hash.update(example.id.as_bytes());
        hash.update([0]);
        for message in &example.prompt {
            hash.update(message.role.as_bytes());
            hash.update([0]);
            hash.update(message.content.as_bytes());
            hash.update([0]);
        }
        hash.update([1]);
    }
    hex::encode(&hash.finalize()[..12])
}

/// An example a phase may use.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmittedExample {
    /// Index in the full dataset.
    pub index: usize,
    /// The example, its document cut in the middle when it was truncated.
    pub example: Example,
    pub prompt_tokens: u64,
    /// Length before truncation.
    pub original_tokens: u64,
    pub truncated: bool,
}

/// The examples under a limit and what happened to the others.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Admission {
    pub examples: Vec<AdmittedExample>,
    /// Over the limit and truncated to fit.
    pub truncated: usize,
    /// Over the limit and left out (`skip`, or too long to fit even with an empty document).
    pub skipped: usize,
    pub skipped_ids: Vec<String>,
}

/// The examples whose prompts fit `max_input_tokens`, over-long ones truncated or skipped by `overlong`.
/// `lengths` come from [`prompt_lengths`].
pub fn admit(
    examples: &[Example],
    lengths: &[u64],
    max_input_tokens: u64,
    overlong: OverlongPolicy,
    policy: &dyn Policy,
) -> anyhow::Result<Admission> {
    anyhow::ensure!(examples.len() == lengths.len(), "{} examples but {} lengths", examples.len(), lengths.len());
    let mut admission = Admission::default();
    for (index, (example, &length)) in examples.iter().zip(lengths).enumerate() {
        let fitted = if length <= max_input_tokens {
            Some((example.clone(), length, false))
        } else if overlong == OverlongPolicy::TruncateMiddle {
            fit_under(example, length, max_input_tokens, policy)?.map(|(e, n)| (e, n, true))
        } else {
            None
        };
        match fitted {
            Some((example, prompt_tokens, truncated)) => {
                admission.truncated += usize::from(truncated);
                admission.examples.push(AdmittedExample {
                    index,
                    example,
                    prompt_tokens,
                    original_tokens: length,
                    truncated,
                });
            }
            None => {
                admission.skipped += 1;
                admission.skipped_ids.push(example.id.clone());
            }
        }
    }
    if admission.truncated + admission.skipped > 0 {
        tracing::info!(
            limit = max_input_tokens,
            truncated = admission.truncated,
            skipped = admission.skipped,
            "prompts over the input limit"
        );
    }
    Ok(admission)
}

/// Fit an over-long prompt under `limit` tokens of the whole templated prompt by the crate's one
/// truncation rule ([`crate::prompt`]): the last user message gets what the template and the other
/// turns leave. `None` when even an empty user message is too long.
fn fit_under(
    example: &Example,
    length: u64,
    limit: u64,
    policy: &dyn Policy,
) -> anyhow::Result<Option<(Example, u64)>> {
    let Some(turn) = example.prompt.iter().rposition(|m| m.role == "user") else {
        return Ok(None);
    };
    let user_tokens = policy.tokenize(&example.prompt[turn].content, false)?.len() as u64;
    let overhead = length.saturating_sub(user_tokens);
    if overhead >= limit {
        return Ok(None);
    }
    let mut budget = (limit - overhead) as usize;
    // Token boundaries can shift where the kept halves meet; shrink and retry.
    for _ in 0..8 {
        let mut fitted = example.clone();
        fitted.prompt = fit_user_message(policy, &example.prompt, budget)?.messages;
        let tokens = measure(policy, &fitted.prompt)?;
        if tokens <= limit {
            return Ok(Some((fitted, tokens)));
        }
        let excess = (tokens - limit) as usize;
        if budget == 0 {
            break;
        }
        budget = budget.saturating_sub(excess.max(1));
    }
    Ok(None)
}
