//! Evaluation after each stage on the run's own held-out examples (`data.eval_files`), broken down
//! by length bucket and question kind (`extra.bucket` / `extra.kind` of the rows, as
//! `longrl data synth` writes them), and `RUN_DIR/report.md` gathering every stage's table and the
//! training curves.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use longrl_core::api::{GenerationParams, Policy};
use serde::{Deserialize, Serialize};

use longrl_data::{Example, prompt};
use longrl_rollout::{Group, LocalPolicy, RewardSet, RolloutPrompt, RolloutSpec, is_unscored, roll_out};

use crate::stats::{difference_interval, paired_difference_interval, wilson_interval};

/// Accuracy of one group of questions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub n: usize,
    /// Mean score over questions (each the mean of its samples), in [0, 1].
    pub accuracy: f64,
    /// 95% Wilson interval over the n questions.
    pub ci95: [f64; 2],
}

impl Cell {
    fn of(scores: &[f64]) -> Cell {
        let n = scores.len();
        let accuracy = if n == 0 { 0.0 } else { scores.iter().sum::<f64>() / n as f64 };
        let (lo, hi) = wilson_interval(accuracy, n);
        Cell { n, accuracy, ci95: [lo, hi] }
    }
}

/// One question's score in a stage evaluation (the mean over its samples), kept so that two stages
/// compare on the same questions (a paired interval) and sweeps can recompute any slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionScore {
    pub id: String,
    pub bucket: String,
    pub kind: String,
    pub score: f64,
}

/// One stage's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageEval {
    pub stage: String,
    pub overall: Cell,
    pub by_bucket: BTreeMap<String, Cell>,
    pub by_kind: BTreeMap<String, Cell>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub questions: Vec<QuestionScore>,
}

/// How to answer the evaluation questions.
#[derive(Debug, Clone)]
pub struct StageEvalSpec {
    pub generation: GenerationParams,
    /// User messages longer than this many tokens keep their first and last halves (0: no limit).
    pub max_input_tokens: usize,
    pub batch_prompts: usize,
    /// A sample scoring at least this counts as correct.
    pub correct_at: f32,
    /// The policy's component name (named in errors).
    pub policy: String,
}

fn label(example: &Example, key: &str) -> String {
    match example.extra.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => "all".into(),
        Some(other) => other.to_string(),
    }
}

/// What a stage evaluation hands on for each question: the example, the user message the policy saw
/// and the scored group (the run's rollout log keeps them).
pub type QuestionOutputs<'a> = &'a mut dyn FnMut(&Example, &str, &Group) -> anyhow::Result<()>;

/// Answer every example with `policy`, score with `rewards`, hand each question's group to
/// `outputs`, and summarise. A question whose responses no reward could decide (unscored) is left
/// out of the accuracies and counted in a warning; a partly unscored one is scored on the rest.
pub fn evaluate_examples(
    policy: &mut dyn Policy,
    rewards: &RewardSet,
    examples: &[Example],
    spec: &StageEvalSpec,
    stage: &str,
    outputs: QuestionOutputs<'_>,
) -> anyhow::Result<StageEval> {
    let mut unscored_questions = 0usize;
    let budget = (spec.max_input_tokens > 0).then_some(spec.max_input_tokens);
    let mut per_question = Vec::with_capacity(examples.len());
    for (call, chunk) in examples.chunks(spec.batch_prompts.max(1)).enumerate() {
        let built = chunk
            .iter()
            .map(|ex| prompt::build(policy, &ex.prompt, budget).with_context(|| format!("eval example `{}`", ex.id)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let prompts: Vec<RolloutPrompt<'_>> =
            chunk.iter().zip(&built).map(|(ex, b)| RolloutPrompt::new(ex, b)).collect();
        let seed = spec.generation.seed.wrapping_add(call as u64);
        let rollout = RolloutSpec {
            params: GenerationParams { rollouts: spec.generation.rollouts.max(1), ..spec.generation.clone() },
            batch_prompts: 0,
            seed_of_call: &|_| seed,
            strip_responses: true,
        };
        let rolled = roll_out(&mut LocalPolicy::new(policy, &spec.policy), rewards, &prompts, &rollout, &mut |_| {})?;
        for ((ex, group), built) in chunk.iter().zip(&rolled.groups).zip(&built) {
            outputs(ex, &built.user, group)?;
            let scored: Vec<f32> =
                group.rollouts.iter().filter(|r| !is_unscored(&r.score)).map(|r| r.score.score).collect();
            if scored.is_empty() {
                unscored_questions += 1;
                continue;
            }
            let correct = scored.iter().filter(|&&s| s >= spec.correct_at).count();
            per_question.push(QuestionScore {
                id: ex.id.clone(),
                bucket: label(ex, "bucket"),
                kind: label(ex, "kind"),
                score: correct as f64 / scored.len() as f64,
            });
        }
    }
    if unscored_questions > 0 {
        tracing::warn!(
            stage,
            unscored_questions,
            "questions whose responses no reward could decide are left out of the stage's accuracies"
        );
    }
    let all: Vec<f64> = per_question.iter().map(|q| q.score).collect();
    let mut buckets: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut kinds: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for q in &per_question {
        buckets.entry(q.bucket.clone()).or_default().push(q.score);
        kinds.entry(q.kind.clone()).or_default().push(q.score);
    }
    Ok(StageEval {
        stage: stage.to_string(),
        overall: Cell::of(&all),
        by_bucket: buckets.iter().map(|(k, v)| (k.clone(), Cell::of(v))).collect(),
        by_kind: kinds.iter().map(|(k, v)| (k.clone(), Cell::of(v))).collect(),
        questions: per_question,
    })
}

const STAGES_FILE: &str = "eval/stages.jsonl";

/// Append a stage's evaluation to `RUN_DIR/eval/stages.jsonl` (a re-run stage replaces its line).
pub fn record_stage(run_dir: &Path, eval: &StageEval) -> anyhow::Result<()> {
    let mut all: Vec<StageEval> = read_stages(run_dir)?.into_iter().filter(|s| s.stage != eval.stage).collect();
    all.push(eval.clone());
    let path = run_dir.join(STAGES_FILE);
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    let text: String = all.iter().map(|s| serde_json::to_string(s).map(|l| l + "\n")).collect::<Result<_, _>>()?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

pub fn read_stages(run_dir: &Path) -> anyhow::Result<Vec<StageEval>> {
    let path = run_dir.join(STAGES_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    std::fs::read_to_string(&path)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1)))
        .collect()
}

fn pct(c: &Cell) -> String {
    format!("{:.1} [{:.1}, {:.1}] (n={})", 100.0 * c.accuracy, 100.0 * c.ci95[0], 100.0 * c.ci95[1], c.n)
}

/// Length buckets sort by their number (`512` before `1024`); other labels alphabetically after.
fn column_order(label: &str) -> (u8, u64, String) {
    match label.parse::<u64>() {
        Ok(n) => (0, n, String::new()),
        Err(_) => (1, 0, label.to_string()),
    }
}

fn table(out: &mut String, title: &str, stages: &[StageEval], pick: impl Fn(&StageEval) -> &BTreeMap<String, Cell>) {
    let mut columns: Vec<String> = stages.iter().flat_map(|s| pick(s).keys().cloned()).collect();
    columns.sort_by_key(|c| column_order(c));
    columns.dedup();
    let _ = writeln!(out, "### {title}\n");
    let _ = writeln!(out, "| after | {} | all |", columns.join(" | "));
    let _ = writeln!(out, "|---|{}---|", "---|".repeat(columns.len()));
    for s in stages {
        let cells: Vec<String> = columns.iter().map(|c| pick(s).get(c).map_or("–".into(), pct)).collect();
        let _ = writeln!(out, "| {} | {} | {} |", s.stage, cells.join(" | "), pct(&s.overall));
    }
    let _ = writeln!(out);
}

/// The paired counts `[both, only before, only after, neither]` of the questions of `bucket`, when
/// both stages scored the same questions 0 or 1 (one sample each); `None` otherwise.
fn paired_counts(before: &StageEval, after: &StageEval, bucket: &str) -> Option<[usize; 4]> {
    let scores = |s: &StageEval| -> BTreeMap<String, f64> {
        s.questions.iter().filter(|q| q.bucket == bucket).map(|q| (q.id.clone(), q.score)).collect()
    };
    let (first, second) = (scores(before), scores(after));
    if first.is_empty() || !first.keys().eq(second.keys()) {
        return None;
    }
    let mut counts = [0usize; 4];
    for (id, x) in &first {
        let y = second[id];
        if ![0.0, 1.0].contains(x) || ![0.0, 1.0].contains(&y) {
            return None;
        }
        let slot = match (*x == 1.0, y == 1.0) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        };
        counts[slot] += 1;
    }
    Some(counts)
}

/// Did RL help where the recipe aims it? The longest length bucket after the last RL stage against
/// after SFT: the difference with its 95% interval (paired over the same questions when the stages
/// recorded per-question scores of one sample each, else Newcombe's independent-samples interval),
/// and a plain verdict.
fn long_bucket_check(stages: &[StageEval]) -> Option<String> {
    let sft = stages.iter().find(|s| s.stage == "sft")?;
    let last = stages.iter().rev().find(|s| s.stage != "sft")?;
    let bucket = sft.by_bucket.keys().filter(|b| b.parse::<u64>().is_ok()).max_by_key(|b| column_order(b))?;
    let (before, after) = (sft.by_bucket.get(bucket)?, last.by_bucket.get(bucket)?);
    let (d, lo, hi, method) = match paired_counts(sft, last, bucket) {
        Some([both, only_before, only_after, neither]) => {
            let (d, lo, hi) = paired_difference_interval(both, only_before, only_after, neither);
            let n = both + only_before + only_after + neither;
            let method = format!(
                "paired over the same {n} questions: {only_after} right only after, {only_before} right only \
                 before; Newcombe's square-and-add interval for paired proportions"
            );
            (d, lo, hi, method)
        }
        None => {
            let (d, lo, hi) = difference_interval(before.accuracy, before.n, after.accuracy, after.n);
            (d, lo, hi, "Newcombe's hybrid score interval for independent samples".to_string())
        }
    };
    let verdict = if lo > 0.0 {
        "RL improved the longest bucket: the interval of the difference lies above 0."
    } else if hi < 0.0 {
        "RL made the longest bucket worse: the interval of the difference lies below 0."
    } else {
        "No difference shown on the longest bucket: the interval of the difference contains 0."
    };
    Some(format!(
        "### Longest bucket ({bucket} tokens): after `{}` against after `sft`\n\n\
         {:.1}% -> {:.1}%: {:+.1} points, 95% interval of the difference [{:+.1}, {:+.1}] ({method}). \
         {verdict}\n",
        last.stage,
        100.0 * before.accuracy,
        100.0 * after.accuracy,
        100.0 * d,
        100.0 * lo,
        100.0 * hi,
    ))
}

/// The seeds behind this report: one run, whose seed `RUN_DIR/config.toml` records.
fn seeds_line(run_dir: &Path) -> String {
    let seed = std::fs::read_to_string(run_dir.join("config.toml"))
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| t.get("seed").and_then(|v| v.as_integer()));
    let which = seed.map_or(String::new(), |s| format!(" (seed {s})"));
    format!(
        "Seeds: these figures are one run{which}, so one seed. On a model this small RL varies from seed to seed: \
         `longrl sweep --seeds 0,1,2 ...` gives the mean over seeds with its interval (docs/results.md).\n"
    )
}

/// Write `RUN_DIR/report.md` from the recorded stage evaluations, benchmark summaries (if any)
/// and the PNG curves in `RUN_DIR/plots`.
pub fn write_report(run_dir: &Path, benchmark_tables: &[(String, String)]) -> anyhow::Result<std::path::PathBuf> {
    let stages = read_stages(run_dir)?;
    let mut out = String::from("# longrl run report\n\n");
    let _ = writeln!(out, "Run directory: `{}`\n", run_dir.display());
    if stages.is_empty() {
        let _ = writeln!(out, "No evaluation was recorded (set `eval.enabled = true` and `data.eval_files`).\n");
    } else {
        let _ = writeln!(
            out,
            "## Accuracy on the held-out examples after each stage\n\nPercent correct (a sample is correct when its \
             reward reaches the cascade's `max_score`; a question's accuracy is the mean over its samples), with the \
             95% Wilson interval over the n questions.\n"
        );
        table(&mut out, "By length bucket", &stages, |s| &s.by_bucket);
        table(&mut out, "By question kind", &stages, |s| &s.by_kind);
        if let Some(check) = long_bucket_check(&stages) {
            let _ = writeln!(out, "{check}");
        }
        let _ = writeln!(out, "{}", seeds_line(run_dir));
    }
    for (stage, md) in benchmark_tables {
        let _ = writeln!(out, "## Benchmarks after {stage}\n\n{md}\n");
    }
    let plots = run_dir.join("plots");
    if plots.exists() {
        let mut files: Vec<String> = std::fs::read_dir(&plots)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".png"))
            .collect();
        files.sort();
        if !files.is_empty() {
            let _ = writeln!(out, "## Training curves\n\nRed lines mark phase boundaries.\n");
            for f in files {
                let _ = writeln!(out, "![{f}](plots/{f})\n");
            }
        }
    }
    let path = run_dir.join("report.md");
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_and_report_tables() {
        let c = Cell::of(&[1.0, 0.0, 1.0, 1.0]);
        assert_eq!(c.n, 4);
        assert_eq!(c.accuracy, 0.75);
        assert!(c.ci95[0] < 0.75 && c.ci95[1] > 0.75);
        let dir = tempfile::tempdir().unwrap();
        let stage = |name: &str, acc: f64| StageEval {
            stage: name.into(),
            overall: Cell::of(&[acc]),
            by_bucket: [("512".to_string(), Cell::of(&[acc])), ("2048".to_string(), Cell::of(&[acc, 0.0]))].into(),
            by_kind: [("lookup".to_string(), Cell::of(&[acc]))].into(),
            questions: Vec::new(),
        };
        record_stage(dir.path(), &stage("sft", 0.0)).unwrap();
        record_stage(dir.path(), &stage("phase1", 1.0)).unwrap();
        record_stage(dir.path(), &stage("sft", 0.5)).unwrap();
        let stages = read_stages(dir.path()).unwrap();
        assert_eq!(stages.iter().map(|s| s.stage.as_str()).collect::<Vec<_>>(), vec!["phase1", "sft"]);
        let report = std::fs::read_to_string(write_report(dir.path(), &[]).unwrap()).unwrap();
        assert!(report.contains("| after | 512 | 2048 | all |"), "{report}");
        assert!(report.contains("| sft | 50.0 [5.5, 94.5] (n=1) | 25.0 ["), "{report}");
        // Longest bucket: sft 25% (n=2) against phase1 50% (n=2): too few questions to show anything.
        assert!(report.contains("### Longest bucket (2048 tokens): after `phase1` against after `sft`"), "{report}");
        assert!(report.contains("25.0% -> 50.0%: +25.0 points"), "{report}");
        assert!(report.contains("the interval of the difference contains 0"), "{report}");
    }

    #[test]
    fn long_bucket_check_reports_a_real_improvement() {
        let cell = |correct: usize, n: usize| {
            let scores: Vec<f64> = (0..n).map(|i| if i < correct { 1.0 } else { 0.0 }).collect();
            Cell::of(&scores)
        };
        let stage = |name: &str, long: Cell| StageEval {
            stage: name.into(),
            overall: long.clone(),
            by_bucket: [("256".to_string(), cell(1, 2)), ("1024".to_string(), long)].into(),
            by_kind: BTreeMap::new(),
            questions: Vec::new(),
        };
        let stages = [stage("sft", cell(10, 100)), stage("short", cell(20, 100)), stage("long", cell(40, 100))];
        let check = long_bucket_check(&stages).unwrap();
        assert!(check.contains("(1024 tokens): after `long`"), "{check}");
        assert!(check.contains("10.0% -> 40.0%: +30.0 points"), "{check}");
        assert!(check.contains("RL improved the longest bucket"), "{check}");
        let worse = [stage("sft", cell(40, 100)), stage("long", cell(10, 100))];
        assert!(long_bucket_check(&worse).unwrap().contains("made the longest bucket worse"));
        assert!(long_bucket_check(&stages[..1]).is_none(), "no RL stage, no comparison");
    }

    #[test]
    fn long_bucket_check_pairs_the_same_questions() {
        // 40 questions of 1024 tokens: 2 right before, 12 right after, 1 of them right both times.
        let stage = |name: &str, right: &[usize]| {
            let questions: Vec<QuestionScore> = (0..40)
                .map(|i| QuestionScore {
                    id: format!("q{i}"),
                    bucket: "1024".into(),
                    kind: "lookup".into(),
                    score: if right.contains(&i) { 1.0 } else { 0.0 },
                })
                .collect();
            let scores: Vec<f64> = questions.iter().map(|q| q.score).collect();
            StageEval {
                stage: name.into(),
                overall: Cell::of(&scores),
                by_bucket: [("1024".to_string(), Cell::of(&scores))].into(),
                by_kind: BTreeMap::new(),
                questions,
            }
        };
        let after: Vec<usize> = (1..13).collect();
        let stages = [stage("sft", &[0, 1]), stage("long", &after)];
        assert_eq!(paired_counts(&stages[0], &stages[1], "1024"), Some([1, 1, 11, 27]));
        let check = long_bucket_check(&stages).unwrap();
        let (d, lo, hi) = paired_difference_interval(1, 1, 11, 27);
        let expected = format!(
            "+{:.1} points, 95% interval of the difference [{:+.1}, {:+.1}]",
            100.0 * d,
            100.0 * lo,
            100.0 * hi
        );
        assert!(check.contains(&expected), "{check}\n{expected}");
        assert!(
            check.contains("paired over the same 40 questions: 11 right only after, 1 right only before"),
            "{check}"
        );
        assert!(check.contains("RL improved the longest bucket"), "{check}");
        // Several samples per question (fractional scores): the independent-samples interval.
        let mut fractional = stages.clone();
        fractional[1].questions[5].score = 0.5;
        assert!(long_bucket_check(&fractional).unwrap().contains("independent samples"));
    }

    #[test]
    fn the_report_says_how_many_seeds_stand_behind_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), "seed = 7\n").unwrap();
        assert!(seeds_line(dir.path()).starts_with("Seeds: these figures are one run (seed 7), so one seed."));
    }
}
