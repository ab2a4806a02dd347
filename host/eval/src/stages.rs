//! Evaluation after each stage on the run's own held-out examples (`data.eval_files`), broken down
//! by length bucket and question kind (`extra.bucket` / `extra.kind` of the rows, as
//! `longrl data synth` writes them), and `RUN_DIR/report.md` gathering every stage's table and the
//! training curves.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use longrl_core::api::{GenerationParams, Policy, RewardInput};
use serde::{Deserialize, Serialize};

use longrl_data::Example;
use longrl_data::prompt::prompt_text;
use longrl_data::truncate::truncate_middle;
use longrl_rollout::RewardSet;

use crate::stats::{difference_interval, wilson_interval};

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

/// One stage's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageEval {
    pub stage: String,
    pub overall: Cell,
    pub by_bucket: BTreeMap<String, Cell>,
    pub by_kind: BTreeMap<String, Cell>,
}

/// How to answer the evaluation questions.
#[derive(Debug, Clone)]
pub struct StageEvalSpec {
    pub generation: GenerationParams,
    pub max_input_tokens: usize,
    pub batch_prompts: usize,
    /// A sample scoring at least this counts as correct.
    pub correct_at: f32,
}

fn label(example: &Example, key: &str) -> String {
    match example.extra.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => "all".into(),
        Some(other) => other.to_string(),
    }
}

/// Answer every example with `policy`, score with `rewards`, and summarise.
pub fn evaluate_examples(
    policy: &mut dyn Policy,
    rewards: &RewardSet,
    examples: &[Example],
    spec: &StageEvalSpec,
    stage: &str,
) -> anyhow::Result<StageEval> {
    let samples = spec.generation.n.max(1) as usize;
    let mut per_question = Vec::with_capacity(examples.len());
    for (c, chunk) in examples.chunks(spec.batch_prompts.max(1)).enumerate() {
        let mut texts = Vec::new();
        let mut prompts = Vec::new();
        for ex in chunk {
            let text = prompt_text(policy, &ex.prompt).with_context(|| format!("eval example `{}`", ex.id))?;
            let ids = policy.tokenize(&text, false)?;
            prompts.push(if spec.max_input_tokens > 0 { truncate_middle(&ids, spec.max_input_tokens) } else { ids });
            texts.push(text);
        }
        let mut params = spec.generation.clone();
        params.seed = spec.generation.seed.wrapping_add(c as u64);
        let out = policy.generate(&prompts, &params)?;
        let inputs: Vec<RewardInput> = out
            .generations
            .iter()
            .enumerate()
            .map(|(k, g)| {
                let ex = &chunk[k / samples];
                RewardInput {
                    response: g.text.trim().to_string(),
                    ground_truth: ex.ground_truth.clone(),
                    data_source: ex.data_source.clone(),
                    prompt: texts[k / samples].clone(),
                    question: ex.question.clone(),
                }
            })
            .collect();
        let scores = rewards.score(&inputs)?;
        for (i, ex) in chunk.iter().enumerate() {
            let s = &scores[i * samples..(i + 1) * samples];
            let acc = s.iter().filter(|x| x.score >= spec.correct_at).count() as f64 / samples as f64;
            per_question.push((label(ex, "bucket"), label(ex, "kind"), acc));
        }
    }
    let all: Vec<f64> = per_question.iter().map(|q| q.2).collect();
    let mut buckets: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut kinds: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (b, k, a) in &per_question {
        buckets.entry(b.clone()).or_default().push(*a);
        kinds.entry(k.clone()).or_default().push(*a);
    }
    Ok(StageEval {
        stage: stage.to_string(),
        overall: Cell::of(&all),
        by_bucket: buckets.iter().map(|(k, v)| (k.clone(), Cell::of(v))).collect(),
        by_kind: kinds.iter().map(|(k, v)| (k.clone(), Cell::of(v))).collect(),
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

/// Did RL help where the recipe aims it? The longest length bucket after the last RL stage against
/// after SFT: the difference with its 95% interval (Newcombe), and a plain verdict.
fn long_bucket_check(stages: &[StageEval]) -> Option<String> {
    let sft = stages.iter().find(|s| s.stage == "sft")?;
    let last = stages.iter().rev().find(|s| s.stage != "sft")?;
    let bucket = sft.by_bucket.keys().filter(|b| b.parse::<u64>().is_ok()).max_by_key(|b| column_order(b))?;
    let (before, after) = (sft.by_bucket.get(bucket)?, last.by_bucket.get(bucket)?);
    let (d, lo, hi) = difference_interval(before.accuracy, before.n, after.accuracy, after.n);
    let verdict = if lo > 0.0 {
        "RL improved the longest bucket: the interval of the difference lies above 0."
    } else if hi < 0.0 {
        "RL made the longest bucket worse: the interval of the difference lies below 0."
    } else {
        "No difference shown on the longest bucket: the interval of the difference contains 0."
    };
    Some(format!(
        "### Longest bucket ({bucket} tokens): after `{}` against after `sft`\n\n\
         {:.1}% -> {:.1}%: {:+.1} points, 95% interval of the difference [{:+.1}, {:+.1}] \
         (Newcombe's hybrid score interval). {verdict}\n",
        last.stage,
        100.0 * before.accuracy,
        100.0 * after.accuracy,
        100.0 * d,
        100.0 * lo,
        100.0 * hi,
    ))
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
}
