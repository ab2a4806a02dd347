//! The one rollout -> reward -> group pipeline of training, stage evaluation, the benchmarks and
//! `longrl difficulty`: generate `rollouts` responses per prompt in calls of `batch_prompts`
//! prompts, score every response with the reward set, and regroup the scored responses by prompt.
//!
//! Prompts arrive built by `longrl_data::prompt`, which holds the one truncation rule. Every count a
//! component returns is checked, and a wrong one is an error naming the component: generations per
//! call (prompts x rollouts, the generator), scores per response (each reward, in
//! [`RewardSet::score`]).

use std::time::Instant;

use longrl_core::api::{FinishReason, GenerationParams, RewardInput, RewardScore};
use longrl_data::Example;
use longrl_data::prompt::BuiltPrompt;

use crate::{Generator, RewardSet};

/// A prompt to roll out, with what the rewards need to score its responses.
#[derive(Debug, Clone, Copy)]
pub struct RolloutPrompt<'a> {
    /// Chat-templated token ids.
    pub ids: &'a [u32],
    /// The user message as the model saw it: rewards and judges read the problem from it.
    pub user: &'a str,
    pub ground_truth: &'a str,
    /// Routes the reward.
    pub data_source: &'a str,
    /// The bare question, when known (judges fall back to it).
    pub question: &'a str,
}

impl<'a> RolloutPrompt<'a> {
    /// A data set example as built for the policy.
    pub fn new(example: &'a Example, built: &'a BuiltPrompt) -> Self {
        RolloutPrompt {
            ids: &built.ids,
            user: &built.user,
            ground_truth: &example.ground_truth,
            data_source: &example.data_source,
            question: &example.question,
        }
    }
}

/// How to roll out.
pub struct RolloutSpec<'a> {
    /// Sampling settings: `rollouts` responses per prompt; `seed` is set per call by `seed_of_call`.
    pub params: GenerationParams,
    /// Prompts per `generate` call (0: all at once); bounds the KV cache.
    pub batch_prompts: usize,
    /// The seed of the `c`-th `generate` call of this batch.
    pub seed_of_call: &'a dyn Fn(u64) -> u64,
    /// Strip white space around responses before scoring, as the reference evaluation scripts do;
    /// training rewards read the response as generated (as verl's reward functions do).
    pub strip_responses: bool,
}

/// A response to score: generated here, or read from saved predictions (no tokens, no finish).
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub tokens: Vec<u32>,
    pub text: String,
    pub finish: Option<FinishReason>,
    /// The sampler's log-prob of each token, when the generator reports them (empty otherwise).
    pub logprobs: Vec<f32>,
}

/// One scored response.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// Response token ids (the EOS token that ended it included).
    pub tokens: Vec<u32>,
    /// The response text as the rewards read it.
    pub text: String,
    /// How generation ended (`None` for saved predictions).
    pub finish: Option<FinishReason>,
    /// The sampler's log-prob of each token, when the generator reports them (empty otherwise).
    pub logprobs: Vec<f32>,
    pub score: RewardScore,
}

/// The scored responses of one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub rollouts: Vec<Rollout>,
}

/// Everything rolled out for a batch of prompts: one group per prompt, in prompt order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rollouts {
    pub groups: Vec<Group>,
    /// Response tokens generated.
    pub generated_tokens: u64,
    pub generate_seconds: f64,
    pub reward_seconds: f64,
}

/// Roll out every prompt `spec.params.rollouts` times, score, and group by prompt. `on_generated`
/// hears the number of responses of each `generate` call (progress bars).
pub fn roll_out(
    generator: &mut dyn Generator,
    rewards: &RewardSet,
    prompts: &[RolloutPrompt<'_>],
    spec: &RolloutSpec<'_>,
    on_generated: &mut dyn FnMut(usize),
) -> anyhow::Result<Rollouts> {
    let rollouts = spec.params.rollouts as usize;
    if rollouts == 0 {
        anyhow::bail!("a rollout batch needs at least one rollout per prompt");
    }
    let chunk = if spec.batch_prompts > 0 { spec.batch_prompts } else { prompts.len().max(1) };
    let mut out = Rollouts::default();
    let mut responses = Vec::with_capacity(prompts.len());
    let started = Instant::now();
    for (call, part) in prompts.chunks(chunk).enumerate() {
        let ids: Vec<Vec<u32>> = part.iter().map(|p| p.ids.to_vec()).collect();
        let mut params = spec.params.clone();
        params.seed = (spec.seed_of_call)(call as u64);
        let generated = generator.generate(&ids, &params)?;
        if generated.generations.len() != part.len() * rollouts {
            anyhow::bail!(
                "{} returned {} generations for {} prompts x {rollouts} rollouts",
                generator.name(),
                generated.generations.len(),
                part.len()
            );
        }
        out.generated_tokens += generated.generations.iter().map(|g| g.tokens.len() as u64).sum::<u64>();
        let mut generations = generated.generations.into_iter();
        for _ in part {
            let group = generations.by_ref().take(rollouts);
            responses.push(
                group
                    .map(|g| Response { tokens: g.tokens, text: g.text, finish: Some(g.finish), logprobs: g.logprobs })
                    .collect(),
            );
        }
        on_generated(part.len() * rollouts);
    }
    out.generate_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    out.groups = score_groups(rewards, prompts, responses, spec.strip_responses)?;
    out.reward_seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

/// Score each prompt's responses (`responses[i]` answers `prompts[i]`; any number each) in one call
/// of the reward set, and regroup the scores by prompt.
pub fn score_groups(
    rewards: &RewardSet,
    prompts: &[RolloutPrompt<'_>],
    responses: Vec<Vec<Response>>,
    strip_responses: bool,
) -> anyhow::Result<Vec<Group>> {
    if responses.len() != prompts.len() {
        anyhow::bail!("{} groups of responses for {} prompts", responses.len(), prompts.len());
    }
    let mut texts = Vec::new();
    let mut inputs = Vec::new();
    for (prompt, group) in prompts.iter().zip(&responses) {
        for response in group {
            let text = if strip_responses { response.text.trim() } else { response.text.as_str() };
            texts.push(text.to_string());
            inputs.push(RewardInput {
                response: text.to_string(),
                ground_truth: prompt.ground_truth.to_string(),
                data_source: prompt.data_source.to_string(),
                prompt: prompt.user.to_string(),
                question: prompt.question.to_string(),
            });
        }
    }
    let scores = rewards.score(&inputs)?;
    if scores.len() != inputs.len() {
        anyhow::bail!("the rewards returned {} scores for {} responses", scores.len(), inputs.len());
    }
    let mut scored = texts.into_iter().zip(scores);
    Ok(responses
        .into_iter()
        .map(|group| Group {
            rollouts: group
                .into_iter()
                .zip(scored.by_ref())
                .map(|(response, (text, score))| Rollout {
                    tokens: response.tokens,
                    text,
                    finish: response.finish,
                    logprobs: response.logprobs,
                    score,
                })
                .collect(),
        })
        .collect())
}
