//! RL and SFT examples turned into token ids with the policy's chat template and tokenizer, once,
//! with over-long prompts truncated in the middle or skipped (counted and reported either way).

use longrl_core::api::{PhaseSpec, Policy, PoolItem, Sequence};

use crate::data::truncate::truncate_middle;
use crate::data::{Example, SftExample};

/// What to do with a prompt longer than the last phase admits (`data.overlong_prompts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlong {
    TruncateMiddle,
    Skip,
}

impl Overlong {
    pub fn parse(value: &str) -> anyhow::Result<Self> {
        match value {
            "truncate-middle" => Ok(Overlong::TruncateMiddle),
            "skip" => Ok(Overlong::Skip),
            other => anyhow::bail!("config key `data.overlong_prompts`: `{other}` is not one of truncate-middle, skip"),
        }
    }
}

/// The RL examples as the trainer uses them.
pub struct RlPrompts {
    pub examples: Vec<Example>,
    /// Chat-templated prompt text (what reward judges see).
    pub texts: Vec<String>,
    /// Prompt token ids, after truncation.
    pub ids: Vec<Vec<u32>>,
    /// Token count before truncation.
    pub original_tokens: Vec<u64>,
    /// Left out of every phase (over-long under `skip`).
    pub skipped: Vec<bool>,
    pub truncated_count: usize,
    pub skipped_count: usize,
}

pub fn prompt_text(policy: &dyn Policy, messages: &[longrl_core::api::ChatMessage]) -> anyhow::Result<String> {
    Ok(policy.apply_chat_template(messages, true)?)
}

impl RlPrompts {
    /// Tokenize every example; `max_tokens` is the last phase's input limit.
    pub fn prepare(policy: &dyn Policy, examples: Vec<Example>, max_tokens: u64, overlong: Overlong) -> anyhow::Result<Self> {
        let mut out = RlPrompts {
            texts: Vec::with_capacity(examples.len()),
            ids: Vec::with_capacity(examples.len()),
            original_tokens: Vec::with_capacity(examples.len()),
            skipped: Vec::with_capacity(examples.len()),
            truncated_count: 0,
            skipped_count: 0,
            examples: Vec::new(),
        };
        for example in &examples {
            let text = prompt_text(policy, &example.prompt).map_err(|e| e.context(format!("example `{}`", example.id)))?;
            let ids = policy.tokenize(&text, false).map_err(|e| anyhow::anyhow!("example `{}`: {e}", example.id))?;
            let n = ids.len() as u64;
            out.original_tokens.push(n);
            if n > max_tokens {
                match overlong {
                    Overlong::TruncateMiddle => {
                        out.truncated_count += 1;
                        out.ids.push(truncate_middle(&ids, max_tokens as usize));
                        out.skipped.push(false);
                    }
                    Overlong::Skip => {
                        out.skipped_count += 1;
                        out.ids.push(ids);
                        out.skipped.push(true);
                    }
                }
            } else {
                out.ids.push(ids);
                out.skipped.push(false);
            }
            out.texts.push(text);
        }
        if out.truncated_count + out.skipped_count > 0 {
            tracing::warn!(
                truncated = out.truncated_count,
                skipped = out.skipped_count,
                limit = max_tokens,
                "prompts longer than the last phase's input limit"
            );
        }
        out.examples = examples;
        Ok(out)
    }

    /// The examples phase `spec` admits, as the sampler sees them.
    pub fn pool(&self, spec: &PhaseSpec) -> Vec<PoolItem> {
        (0..self.examples.len())
            .filter(|&i| !self.skipped[i] && spec.admits(self.ids[i].len() as u64))
            .map(|i| PoolItem {
                index: i as u32,
                id: self.examples[i].id.clone(),
                prompt_tokens: self.ids[i].len() as u64,
                data_source: self.examples[i].data_source.clone(),
            })
            .collect()
    }
}

/// SFT traces as prompt/response token sequences (the response ends with the EOS token).
pub fn prepare_sft(policy: &dyn Policy, examples: &[SftExample], max_tokens: usize) -> anyhow::Result<Vec<Sequence>> {
    let description = policy.describe()?;
    let eos = description.eos_token_ids.first().copied();
    let mut out = Vec::with_capacity(examples.len());
    for example in examples {
        let text = prompt_text(policy, &example.prompt).map_err(|e| e.context(format!("SFT example `{}`", example.id)))?;
        let mut prompt = policy.tokenize(&text, false)?;
        let mut response = policy.tokenize(&example.response, false)?;
        if let Some(eos) = eos
            && response.last() != Some(&eos)
        {
            response.push(eos);
        }
        if max_tokens > 0 && prompt.len() + response.len() > max_tokens {
            // Keep the whole answer when possible; the document's middle goes first.
            let room = max_tokens.saturating_sub(response.len()).max(1);
            prompt = truncate_middle(&prompt, room);
            response.truncate(max_tokens.saturating_sub(prompt.len()).max(1));
        }
        if response.is_empty() {
            anyhow::bail!("SFT example `{}` has an empty response", example.id);
        }
        out.push(Sequence { prompt, response });
    }
    Ok(out)
}
