//! RL and SFT examples turned into token ids with the policy's chat template and tokenizer. RL
//! prompt lengths come from the data layer's length cache (measured once per tokenizer and
//! dataset), so phase pools are known without a tokenizer pass; over-long prompts have their
//! document truncated in the middle or are skipped (counted and reported either way), and a
//! prompt's ids are made the first time the sampler draws it.

use std::path::Path;

use longrl_core::api::{PhaseSpec, Policy, PoolItem, Sequence};

use longrl_data::prompt::{self, BuiltPrompt, prompt_text};
use longrl_data::truncate::truncate_middle;
use longrl_data::{Example, OverlongPolicy, SftExample, admit, prompt_lengths};
use longrl_rollout::RolloutPrompt;

/// The RL examples as the trainer uses them.
pub struct RlPrompts {
    /// The examples, an over-long one with its document cut to fit (`truncate-middle`).
    pub examples: Vec<Example>,
    /// Prompt tokens as admitted (after truncation).
    pub prompt_tokens: Vec<u64>,
    /// Left out of every phase (over-long under `skip`, or too long to fit even truncated).
    pub skipped: Vec<bool>,
    pub truncated_count: usize,
    pub skipped_count: usize,
    tokenized: Vec<Option<BuiltPrompt>>,
}

impl RlPrompts {
    /// Measure (or read from `cache_dir`) every prompt's length and admit the examples under
    /// `max_tokens`, the last phase's input limit.
    pub fn prepare(
        policy: &dyn Policy,
        examples: Vec<Example>,
        max_tokens: u64,
        overlong: OverlongPolicy,
        cache_dir: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let lengths = prompt_lengths(&examples, policy, cache_dir)?;
        let admission = admit(&examples, &lengths, max_tokens, overlong, policy)?;
        let n = examples.len();
        let mut out = RlPrompts {
            prompt_tokens: lengths,
            skipped: vec![true; n],
            truncated_count: admission.truncated,
            skipped_count: admission.skipped,
            tokenized: (0..n).map(|_| None).collect(),
            examples,
        };
        for admitted in admission.examples {
            out.skipped[admitted.index] = false;
            out.prompt_tokens[admitted.index] = admitted.prompt_tokens;
            if admitted.truncated {
                out.examples[admitted.index] = admitted.example;
            }
        }
        if out.truncated_count + out.skipped_count > 0 {
            tracing::warn!(
                truncated = out.truncated_count,
                skipped = out.skipped_count,
                limit = max_tokens,
                "prompts longer than the last phase's input limit"
            );
        }
        Ok(out)
    }

    /// Template and tokenize the prompts of `indices` not tokenized yet (admission already fitted
    /// them under the last phase's limit).
    pub fn tokenize(&mut self, policy: &dyn Policy, indices: &[u32]) -> anyhow::Result<()> {
        for &index in indices {
            let i = index as usize;
            if self.tokenized[i].is_some() {
                continue;
            }
            let example = &self.examples[i];
            let built = prompt::build(policy, &example.prompt, None)
                .map_err(|e| e.context(format!("example `{}`", example.id)))?;
            if built.ids.len() as u64 != self.prompt_tokens[i] {
                tracing::warn!(example = %example.id, measured = self.prompt_tokens[i], tokens = built.ids.len(), "prompt length differs from the measured one");
            }
            self.tokenized[i] = Some(built);
        }
        Ok(())
    }

    fn get(&self, index: u32) -> &BuiltPrompt {
        self.tokenized[index as usize].as_ref().expect("prompts are tokenized when drawn (RlPrompts::tokenize)")
    }

    /// The user message of a drawn example as the model saw it (after truncation).
    pub fn user(&self, index: u32) -> &str {
        &self.get(index).user
    }

    /// Prompt token ids of a drawn example.
    pub fn ids(&self, index: u32) -> &[u32] {
        &self.get(index).ids
    }

    /// A drawn example as the rollout pipeline takes it.
    pub fn rollout_prompt(&self, index: u32) -> RolloutPrompt<'_> {
        RolloutPrompt::new(&self.examples[index as usize], self.get(index))
    }

    /// The prompt tokens of an example that some phase may admit; `None` for an index out of range
    /// or an example left out of every phase.
    pub fn admitted_tokens(&self, index: u32) -> Option<u64> {
        let i = index as usize;
        (i < self.examples.len() && !self.skipped[i]).then(|| self.prompt_tokens[i])
    }

    /// The examples phase `spec` admits, as the sampler sees them.
    pub fn pool(&self, spec: &PhaseSpec) -> Vec<PoolItem> {
        (0..self.examples.len())
            .filter(|&i| !self.skipped[i] && spec.admits(self.prompt_tokens[i]))
            .map(|i| PoolItem {
                index: i as u32,
                id: self.examples[i].id.clone(),
                prompt_tokens: self.prompt_tokens[i],
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
        let text =
            prompt_text(policy, &example.prompt).map_err(|e| e.context(format!("SFT example `{}`", example.id)))?;
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
