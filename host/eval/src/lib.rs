//! The evaluation harness: the seven long-context DocQA benchmarks of QwenLong-L1 (Table 4).
//!
//! Rows are read in each benchmark's published format ([`bench`]), prompted with the recipe's
//! template and middle-truncated as the reference harness does ([`prompt`]), answered by a policy
//! (K samples each) or taken from a predictions file ([`predictions`]), scored by the reward set
//! (the `rule` reward routed by benchmark name, max'd with the `judge` when configured), and
//! summarised with 95% intervals and pass@k ([`stats`], [`report`]); before/after accuracies on
//! the same questions get a paired interval ([`paired`]).

pub mod bench;
pub mod paired;
pub mod predictions;
pub mod prompt;
pub mod report;
pub mod stages;
pub mod stats;

use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use longrl_core::api::{ComponentContext, FinishReason, GenerationParams, Policy};
use serde::Serialize;
use serde_json::json;

use longrl_config::EvalConfig;
use longrl_plugins::PluginSet;
use longrl_rollout::{Group, LocalPolicy, Response, RewardSet, RolloutPrompt, RolloutSpec, roll_out, score_groups};

pub use bench::{Bench, EvalRow, Suite};

/// A sample counts as correct for pass@k when its score reaches this (rule and judge give 0 or 1).
const CORRECT_SCORE: f32 = 1.0 - 1e-6;

/// What to evaluate and how to generate.
#[derive(Debug, Clone)]
pub struct EvalSpec {
    pub suites: Vec<Suite>,
    /// Responses per question (K, the rollouts of each prompt).
    pub rollouts: u32,
    /// User messages longer than this many tokens are truncated in the middle.
    pub max_input_tokens: u32,
    /// Sampling settings (`rollouts` is set to K and `seed` advanced per call).
    pub generation: GenerationParams,
    /// Prompts per `generate` call.
    pub batch_prompts: usize,
    /// The model's name in the summary table.
    pub label: String,
    /// The policy's component name (named in errors).
    pub policy: String,
}

impl EvalSpec {
    /// Resolve the benchmark files of `config` and read their rows.
    pub fn from_config(config: &EvalConfig, label: impl Into<String>, policy: &str) -> anyhow::Result<EvalSpec> {
        let benches = Bench::parse_list(&config.benchmarks).context("config key `eval.benchmarks`")?;
        if config.samples == 0 {
            anyhow::bail!("config key `eval.samples`: must be at least 1");
        }
        if config.max_input_tokens == 0 || config.max_output_tokens == 0 {
            anyhow::bail!("config keys `eval.max_input_tokens` and `eval.max_output_tokens` must be at least 1");
        }
        let mut suites = Vec::new();
        for (bench, file) in bench::resolve_files(&benches, &config.data, &config.files)? {
            suites.push(Suite::load(bench, &file, config.limit)?);
        }
        let generation = GenerationParams {
            max_new_tokens: config.max_output_tokens,
            temperature: config.temperature,
            top_p: config.top_p,
            top_k: 0,
            seed: config.seed,
            stop: Vec::new(),
            rollouts: config.samples,
            prefill_chunk: config.prefill_chunk,
        };
        Ok(EvalSpec {
            suites,
            rollouts: config.samples,
            max_input_tokens: config.max_input_tokens,
            generation,
            batch_prompts: config.batch_prompts.max(1) as usize,
            label: label.into(),
            policy: policy.to_string(),
        })
    }
}

/// The rewards of an evaluation: the `rule` reward (its table from `eval.rule`, with `protocol =
/// "eval"` unless the table sets one: the official evaluation scripts' rules), then the `judge`
/// when `eval.judge_url` is set, combined by max and the judge asked only when the rule fails.
pub fn eval_rewards(plugins: &PluginSet, config: &EvalConfig, ctx: &ComponentContext) -> anyhow::Result<RewardSet> {
    // The official evaluation scripts' protocol unless `eval.rule` names another.
    let mut rule = if config.rule.is_null() { json!({}) } else { config.rule.clone() };
    if let Some(table) = rule.as_object_mut() {
        table.entry("protocol").or_insert_with(|| json!("eval"));
    }
    let mut rewards = vec![("rule".to_string(), plugins.reward("rule", &rule, ctx)?)];
    if !config.judge_url.trim().is_empty() {
        let judge = json!({ "url": config.judge_url, "model": config.judge_model, "protocol": "eval" });
        rewards.push(("judge".to_string(), plugins.reward("judge", &judge, ctx)?));
    }
    Ok(RewardSet::new(rewards, true, 1.0))
}

/// One scored response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleResult {
    pub response: String,
    pub score: f32,
    pub decided_by: String,
    pub details: serde_json::Value,
    /// How generation ended (absent for saved predictions).
    pub finish: Option<FinishReason>,
}

impl SampleResult {
    pub fn correct(&self) -> bool {
        self.score >= CORRECT_SCORE
    }
}

/// One question and its scored samples.
#[derive(Debug, Clone, PartialEq)]
pub struct QuestionResult {
    pub id: String,
    pub line: usize,
    pub gold: String,
    /// The user message was truncated to the input limit.
    pub truncated: bool,
    pub samples: Vec<SampleResult>,
}

impl QuestionResult {
    /// Mean score of the question's samples.
    pub fn accuracy(&self) -> f64 {
        self.samples.iter().map(|s| s.score as f64).sum::<f64>() / self.samples.len() as f64
    }
}

/// Everything known about one benchmark after scoring.
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub bench: Bench,
    /// Questions with at least one response.
    pub questions: Vec<QuestionResult>,
    /// Evaluated rows without any saved prediction (left out of `n`).
    pub no_prediction: usize,
    /// Saved predictions for rows past `--limit` (left out).
    pub beyond_limit: usize,
}

/// The summary of one benchmark. Percentages are 0..100.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchSummary {
    pub bench: &'static str,
    /// Mean over questions of the mean score of their samples.
    pub accuracy: f64,
    /// Questions scored.
    pub n: usize,
    /// 95% Wilson score interval of `accuracy` over the `n` questions.
    pub ci95: [f64; 2],
    /// Fewest and most samples of a question.
    pub samples: [usize; 2],
    /// Unbiased pass@k for k up to the fewest samples of a question.
    pub pass_at: Vec<(usize, f64)>,
    /// Questions whose prompt was truncated in the middle.
    pub truncated_prompts: usize,
    /// Responses that hit the output limit.
    pub length_stops: usize,
    pub no_prediction: usize,
    pub beyond_limit: usize,
}

/// The result of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalSummary {
    pub label: String,
    /// In the paper's column order.
    pub benchmarks: Vec<BenchSummary>,
    /// Unweighted mean of the benchmark accuracies (the paper's Avg column).
    pub average: f64,
    /// Saved predictions of benchmarks that were not selected (left out), by benchmark name.
    pub other_benches: Vec<(&'static str, usize)>,
}

impl EvalSummary {
    pub fn accuracy(&self, bench: Bench) -> Option<f64> {
        self.benchmarks.iter().find(|b| b.bench == bench.name()).map(|b| b.accuracy)
    }
}

/// A row's prompt as the rewards see it (the benchmark name routes the reward).
fn rollout_prompt<'a>(bench: Bench, row: &'a EvalRow, user: &'a str, ids: &'a [u32]) -> RolloutPrompt<'a> {
    RolloutPrompt { ids, user, ground_truth: &row.gold, data_source: bench.name(), question: &row.question }
}

/// The results of one benchmark's questions from their scored groups.
fn questions(rows: &[&EvalRow], truncated: &[bool], groups: Vec<Group>) -> Vec<QuestionResult> {
    rows.iter()
        .zip(truncated)
        .zip(groups)
        .map(|((row, &truncated), group)| QuestionResult {
            id: row.id.clone(),
            line: row.line,
            gold: row.gold.clone(),
            truncated,
            samples: group
                .rollouts
                .into_iter()
                .map(|r| SampleResult {
                    response: r.text,
                    score: r.score.score,
                    decided_by: r.score.decided_by,
                    details: r.score.details,
                    finish: r.finish,
                })
                .collect(),
        })
        .collect()
}

/// Generate K responses per question with `policy`, score them and summarise; with `out_dir`, write
/// `examples.jsonl`, `summary.md` and `summary.json` there. Called by `longrl eval` and by the
/// trainer after each stage.
pub fn run_eval(
    policy: &mut dyn Policy,
    rewards: &RewardSet,
    spec: &EvalSpec,
    out_dir: Option<&Path>,
) -> anyhow::Result<EvalSummary> {
    check_sources(rewards, &spec.suites)?;
    let rollouts = spec.rollouts.max(1) as usize;
    let total: usize = spec.suites.iter().map(|s| s.evaluated * rollouts).sum();
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} responses ({elapsed} elapsed, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut params = spec.generation.clone();
    params.rollouts = rollouts as u32;
    let mut call = 0u64;
    let mut results = Vec::new();
    for suite in &spec.suites {
        bar.set_prefix(suite.bench.name());
        let mut answered = Vec::with_capacity(suite.evaluated);
        for chunk in suite.evaluated_rows().chunks(spec.batch_prompts.max(1)) {
            let mut built = Vec::with_capacity(chunk.len());
            for row in chunk {
                let prompt = prompt::build_prompt(policy, row, spec.max_input_tokens as usize).with_context(|| {
                    format!("{} row `{}` (line {}): building the prompt", suite.bench.name(), row.id, row.line)
                })?;
                built.push(prompt);
            }
            let prompts: Vec<RolloutPrompt<'_>> =
                chunk.iter().zip(&built).map(|(row, b)| rollout_prompt(suite.bench, row, &b.user, &b.ids)).collect();
            let seed = spec.generation.seed.wrapping_add(call);
            call += 1;
            let rollout = RolloutSpec {
                params: params.clone(),
                batch_prompts: 0,
                seed_of_call: &|_| seed,
                // The reference strips the response before scoring.
                strip_responses: true,
            };
            let rolled =
                roll_out(&mut LocalPolicy::new(policy, &spec.policy), rewards, &prompts, &rollout, &mut |_| {})
                    .with_context(|| {
                        format!("{}: generating for rows from line {}", suite.bench.name(), chunk[0].line)
                    })?;
            let rows: Vec<&EvalRow> = chunk.iter().collect();
            let truncated: Vec<bool> = built.iter().map(|b| b.truncated).collect();
            answered.extend(questions(&rows, &truncated, rolled.groups));
            bar.inc((chunk.len() * rollouts) as u64);
        }
        results.push(BenchResult { bench: suite.bench, questions: answered, no_prediction: 0, beyond_limit: 0 });
    }
    bar.finish_and_clear();
    finish(&spec.label, results, Vec::new(), out_dir)
}

/// Score saved responses (`--predictions`) against the rows of `suites`, without a model.
pub fn score_predictions(
    rewards: &RewardSet,
    suites: &[Suite],
    predictions_file: &Path,
    label: &str,
    out_dir: Option<&Path>,
) -> anyhow::Result<EvalSummary> {
    check_sources(rewards, suites)?;
    let predictions = predictions::read_predictions(predictions_file)?;
    let mut matched = predictions::match_predictions(predictions_file, predictions, suites)?;
    for (bench, count) in &matched.other_benches {
        tracing::warn!(
            "{}: {count} prediction(s) of `{}`, which is not evaluated, left out",
            predictions_file.display(),
            bench.name()
        );
    }
    let mut results = Vec::new();
    for suite in suites {
        let responses = matched.responses.remove(&suite.bench).unwrap_or_default();
        let mut rows = Vec::new();
        let mut users = Vec::new();
        let mut groups = Vec::new();
        let mut no_prediction = 0;
        for (row, responses) in suite.evaluated_rows().iter().zip(responses) {
            if responses.is_empty() {
                no_prediction += 1;
                continue;
            }
            rows.push(row);
            users.push(prompt::user_message(row));
            groups.push(
                responses
                    .into_iter()
                    .map(|text| Response { tokens: Vec::new(), text, finish: None, logprobs: Vec::new() })
                    .collect(),
            );
        }
        if no_prediction > 0 {
            tracing::warn!(
                "{}: {no_prediction} of {} rows have no prediction and are left out",
                suite.bench.name(),
                suite.evaluated
            );
        }
        if rows.is_empty() {
            anyhow::bail!(
                "{}: no prediction for any of the {} evaluated rows of `{}` ({})",
                predictions_file.display(),
                suite.evaluated,
                suite.bench.name(),
                suite.file.display()
            );
        }
        let prompts: Vec<RolloutPrompt<'_>> =
            rows.iter().zip(&users).map(|(row, user)| rollout_prompt(suite.bench, row, user, &[])).collect();
        // The reference strips the response before scoring.
        let groups = score_groups(rewards, &prompts, groups, true)
            .with_context(|| format!("scoring `{}`", suite.bench.name()))?;
        let beyond = matched.beyond_limit.get(&suite.bench).copied().unwrap_or(0);
        let questions = questions(&rows, &vec![false; rows.len()], groups);
        results.push(BenchResult { bench: suite.bench, questions, no_prediction, beyond_limit: beyond });
    }
    let other = matched.other_benches.iter().map(|(b, n)| (b.name(), *n)).collect();
    finish(label, results, other, out_dir)
}

fn check_sources(rewards: &RewardSet, suites: &[Suite]) -> anyhow::Result<()> {
    let sources: Vec<String> = suites.iter().map(|s| s.bench.name().to_string()).collect();
    rewards.check_sources(&sources)
}

/// The summary of one benchmark's results.
pub fn summarize(result: &BenchResult) -> BenchSummary {
    let n = result.questions.len();
    let p = if n == 0 { 0.0 } else { result.questions.iter().map(QuestionResult::accuracy).sum::<f64>() / n as f64 };
    let (lo, hi) = stats::wilson_interval(p, n);
    let fewest = result.questions.iter().map(|q| q.samples.len()).min().unwrap_or(0);
    let most = result.questions.iter().map(|q| q.samples.len()).max().unwrap_or(0);
    let pass_at = if n == 0 {
        Vec::new()
    } else {
        stats::pass_ks(fewest)
            .into_iter()
            .map(|k| {
                let total: f64 = result
                    .questions
                    .iter()
                    .map(|q| stats::pass_at_k(q.samples.len(), q.samples.iter().filter(|s| s.correct()).count(), k))
                    .sum();
                (k, 100.0 * total / n as f64)
            })
            .collect()
    };
    BenchSummary {
        bench: result.bench.name(),
        accuracy: 100.0 * p,
        n,
        ci95: [100.0 * lo, 100.0 * hi],
        samples: [fewest, most],
        pass_at,
        truncated_prompts: result.questions.iter().filter(|q| q.truncated).count(),
        length_stops: result
            .questions
            .iter()
            .flat_map(|q| &q.samples)
            .filter(|s| s.finish == Some(FinishReason::Length))
            .count(),
        no_prediction: result.no_prediction,
        beyond_limit: result.beyond_limit,
    }
}

fn finish(
    label: &str,
    results: Vec<BenchResult>,
    other_benches: Vec<(&'static str, usize)>,
    out_dir: Option<&Path>,
) -> anyhow::Result<EvalSummary> {
    let benchmarks: Vec<BenchSummary> = results.iter().map(summarize).collect();
    let average = if benchmarks.is_empty() {
        0.0
    } else {
        benchmarks.iter().map(|b| b.accuracy).sum::<f64>() / benchmarks.len() as f64
    };
    let summary = EvalSummary { label: label.to_string(), benchmarks, average, other_benches };
    if let Some(dir) = out_dir {
        report::write(dir, &summary, &results)?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests;
