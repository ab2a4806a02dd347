//! The evaluation harness: the seven long-context DocQA benchmarks of QwenLong-L1 (Table 4).
//!
//! Rows are read in each benchmark's published format ([`bench`]), prompted with the recipe's
//! template and middle-truncated as the reference harness does ([`prompt`]), answered by a policy
//! (K samples each) or taken from a predictions file ([`predictions`]), scored by the reward set
//! (the `rule` reward routed by benchmark name, max'd with the `judge` when configured), and
//! summarised with 95% intervals and pass@k ([`stats`], [`report`]).

pub mod bench;
pub mod predictions;
pub mod prompt;
pub mod report;
pub mod stages;
pub mod stats;

use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use longrl_core::api::{ComponentContext, FinishReason, GenerationParams, Policy, RewardInput};
use serde::Serialize;
use serde_json::json;

use longrl_config::EvalConfig;
use longrl_plugins::PluginSet;
use longrl_rollout::RewardSet;

pub use bench::{Bench, EvalRow, Suite};

/// A sample counts as correct for pass@k when its score reaches this (rule and judge give 0 or 1).
const CORRECT_SCORE: f32 = 1.0 - 1e-6;

/// Reward inputs per `score` call.
const SCORE_CHUNK: usize = 64;

/// What to evaluate and how to generate.
#[derive(Debug, Clone)]
pub struct EvalSpec {
    pub suites: Vec<Suite>,
    /// Responses per question (K).
    pub samples: u32,
    /// User messages longer than this many tokens are truncated in the middle.
    pub max_input_tokens: u32,
    /// Sampling settings (`n` is set to `samples` and `seed` advanced per call).
    pub generation: GenerationParams,
    /// Prompts per `generate` call.
    pub batch_prompts: usize,
    /// The model's name in the summary table.
    pub label: String,
}

impl EvalSpec {
    /// Resolve the benchmark files of `config` and read their rows.
    pub fn from_config(config: &EvalConfig, label: impl Into<String>) -> anyhow::Result<EvalSpec> {
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
            n: config.samples,
            prefill_chunk: config.prefill_chunk,
        };
        Ok(EvalSpec {
            suites,
            samples: config.samples,
            max_input_tokens: config.max_input_tokens,
            generation,
            batch_prompts: config.batch_prompts.max(1) as usize,
            label: label.into(),
        })
    }
}

/// The rewards of an evaluation: the `rule` reward (its table from `eval.rule`), then the `judge`
/// when `eval.judge_url` is set, combined by max and the judge asked only when the rule fails.
pub fn eval_rewards(plugins: &PluginSet, config: &EvalConfig, ctx: &ComponentContext) -> anyhow::Result<RewardSet> {
    let rule = if config.rule.is_null() { json!({}) } else { config.rule.clone() };
    let mut rewards = vec![("rule".to_string(), plugins.reward("rule", &rule, ctx)?)];
    if !config.judge_url.trim().is_empty() {
        let judge = json!({ "url": config.judge_url, "model": config.judge_model });
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

/// A question as answered, before scoring.
struct Answered<'a> {
    row: &'a EvalRow,
    /// The user message the responses answer (what judges read the problem from).
    prompt: String,
    truncated: bool,
    responses: Vec<(String, Option<FinishReason>)>,
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
    let samples = spec.samples.max(1) as usize;
    let total: usize = spec.suites.iter().map(|s| s.evaluated * samples).sum();
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} responses ({elapsed} elapsed, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut params = spec.generation.clone();
    params.n = samples as u32;
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
            let prompts: Vec<Vec<u32>> = built.iter().map(|p| p.tokens.clone()).collect();
            params.seed = spec.generation.seed.wrapping_add(call);
            call += 1;
            let output = policy
                .generate(&prompts, &params)
                .with_context(|| format!("{}: generating for rows from line {}", suite.bench.name(), chunk[0].line))?;
            if output.generations.len() != chunk.len() * samples {
                anyhow::bail!(
                    "the policy returned {} generations for {} prompts x {samples} samples",
                    output.generations.len(),
                    chunk.len()
                );
            }
            for (i, (row, prompt)) in chunk.iter().zip(built).enumerate() {
                let responses = output.generations[i * samples..(i + 1) * samples]
                    .iter()
                    // The reference strips the response before scoring.
                    .map(|g| (g.text.trim().to_string(), Some(g.finish)))
                    .collect();
                answered.push(Answered { row, prompt: prompt.user, truncated: prompt.truncated, responses });
            }
            bar.inc((chunk.len() * samples) as u64);
        }
        results.push(score_suite(rewards, suite.bench, answered, 0, 0)?);
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
        let mut answered = Vec::new();
        let mut no_prediction = 0;
        for (row, responses) in suite.evaluated_rows().iter().zip(responses) {
            if responses.is_empty() {
                no_prediction += 1;
                continue;
            }
            let responses = responses.into_iter().map(|r| (r.trim().to_string(), None)).collect();
            answered.push(Answered { row, prompt: prompt::user_message(row), truncated: false, responses });
        }
        if no_prediction > 0 {
            tracing::warn!(
                "{}: {no_prediction} of {} rows have no prediction and are left out",
                suite.bench.name(),
                suite.evaluated
            );
        }
        if answered.is_empty() {
            anyhow::bail!(
                "{}: no prediction for any of the {} evaluated rows of `{}` ({})",
                predictions_file.display(),
                suite.evaluated,
                suite.bench.name(),
                suite.file.display()
            );
        }
        let beyond = matched.beyond_limit.get(&suite.bench).copied().unwrap_or(0);
        results.push(score_suite(rewards, suite.bench, answered, no_prediction, beyond)?);
    }
    let other = matched.other_benches.iter().map(|(b, n)| (b.name(), *n)).collect();
    finish(label, results, other, out_dir)
}

fn check_sources(rewards: &RewardSet, suites: &[Suite]) -> anyhow::Result<()> {
    let sources: Vec<String> = suites.iter().map(|s| s.bench.name().to_string()).collect();
    rewards.check_sources(&sources)
}

/// Score every response of a benchmark; the benchmark name is the reward's data source.
fn score_suite(
    rewards: &RewardSet,
    bench: Bench,
    answered: Vec<Answered<'_>>,
    no_prediction: usize,
    beyond_limit: usize,
) -> anyhow::Result<BenchResult> {
    let inputs: Vec<(usize, RewardInput)> = answered
        .iter()
        .enumerate()
        .flat_map(|(q, a)| {
            a.responses.iter().map(move |(response, _)| {
                (
                    q,
                    RewardInput {
                        response: response.clone(),
                        ground_truth: a.row.gold.clone(),
                        data_source: bench.name().to_string(),
                        prompt: a.prompt.clone(),
                        question: a.row.question.clone(),
                    },
                )
            })
        })
        .collect();
    let mut scores = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(SCORE_CHUNK) {
        let batch: Vec<RewardInput> = chunk.iter().map(|(_, input)| input.clone()).collect();
        let scored = rewards.score(&batch).with_context(|| format!("scoring `{}`", bench.name()))?;
        if scored.len() != batch.len() {
            anyhow::bail!("the rewards returned {} scores for {} responses", scored.len(), batch.len());
        }
        scores.extend(scored);
    }
    let mut scores = scores.into_iter();
    let questions = answered
        .into_iter()
        .map(|a| QuestionResult {
            id: a.row.id.clone(),
            line: a.row.line,
            gold: a.row.gold.clone(),
            truncated: a.truncated,
            samples: a
                .responses
                .into_iter()
                .map(|(response, finish)| {
                    let score = scores.next().expect("one score per response");
                    SampleResult {
                        response,
                        score: score.score,
                        decided_by: score.decided_by,
                        details: score.details,
                        finish,
                    }
                })
                .collect(),
        })
        .collect();
    Ok(BenchResult { bench, questions, no_prediction, beyond_limit })
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
