//! What the trainer wrote in each finished run directory, as the sweep reads it: the stage
//! evaluations (`eval/stages.jsonl`: per stage, accuracy overall, by length bucket and by kind) and
//! the per-step metrics (`metrics.jsonl`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::plan::{Cell, Plan};
use crate::runner::{State, read_status};

/// Accuracy of one group of questions (the fields of the trainer's `Cell` the sweep uses).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Accuracy {
    pub n: usize,
    pub accuracy: f64,
}

/// One question's score in a stage evaluation (when the trainer records them).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct QuestionScore {
    pub id: String,
    #[serde(default)]
    pub bucket: String,
    pub score: f64,
}

/// One line of `eval/stages.jsonl`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StageEval {
    pub stage: String,
    pub overall: Accuracy,
    #[serde(default)]
    pub by_bucket: BTreeMap<String, Accuracy>,
    #[serde(default)]
    pub by_kind: BTreeMap<String, Accuracy>,
    #[serde(default)]
    pub questions: Vec<QuestionScore>,
}

impl StageEval {
    /// Every slice of this stage: `all`, `bucket=B` per length bucket, `kind=K` per question kind.
    pub fn slices(&self) -> Vec<(String, &Accuracy)> {
        let mut out = vec![("all".to_string(), &self.overall)];
        out.extend(self.by_bucket.iter().map(|(b, a)| (format!("bucket={b}"), a)));
        out.extend(self.by_kind.iter().map(|(k, a)| (format!("kind={k}"), a)));
        out
    }
}

/// One line of `metrics.jsonl`: the step, the stage and its numeric values.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsLine {
    pub step: u64,
    pub stage: String,
    pub values: BTreeMap<String, f64>,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub cell: Cell,
    pub stages: Vec<StageEval>,
    pub metrics: Vec<MetricsLine>,
    pub wall_s: f64,
}

#[derive(Debug, Clone)]
pub struct FailedRun {
    pub cell: Cell,
    pub error: String,
}

#[derive(Debug, Clone, Default)]
pub struct Collected {
    pub runs: Vec<RunResult>,
    pub failed: Vec<FailedRun>,
    /// Cells with no outcome yet (not run, or still running).
    pub missing: Vec<Cell>,
}

pub fn collect(plan: &Plan) -> anyhow::Result<Collected> {
    let mut out = Collected::default();
    for cell in &plan.cells {
        match read_status(&cell.run_dir)? {
            Some(s) if s.state == State::Finished => out.runs.push(RunResult {
                cell: cell.clone(),
                stages: read_stages(&cell.run_dir)?,
                metrics: read_metrics(&cell.run_dir)?,
                wall_s: s.wall_s,
            }),
            Some(s) => out.failed.push(FailedRun {
                cell: cell.clone(),
                error: s.error.unwrap_or_else(|| format!("exit code {:?}", s.exit_code)),
            }),
            None => out.missing.push(cell.clone()),
        }
    }
    Ok(out)
}

fn lines(path: &Path) -> anyhow::Result<Vec<(usize, String)>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, l)| (i + 1, l.to_string())).collect())
}

/// `RUN_DIR/eval/stages.jsonl` in the order the stages were recorded.
pub fn read_stages(run_dir: &Path) -> anyhow::Result<Vec<StageEval>> {
    let path = run_dir.join("eval").join("stages.jsonl");
    lines(&path)?
        .into_iter()
        .map(|(n, l)| serde_json::from_str(&l).with_context(|| format!("{}:{n}", path.display())))
        .collect()
}

/// `RUN_DIR/metrics.jsonl`: `step`, `stage` and every numeric value of each line.
pub fn read_metrics(run_dir: &Path) -> anyhow::Result<Vec<MetricsLine>> {
    let path = run_dir.join("metrics.jsonl");
    let mut out = Vec::new();
    for (n, line) in lines(&path)? {
        let place = || format!("{}:{n}", path.display());
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&line).with_context(place)?;
        let step = object.get("step").and_then(|v| v.as_u64()).with_context(|| format!("{}: no `step`", place()))?;
        let stage = object.get("stage").and_then(|v| v.as_str()).with_context(|| format!("{}: no `stage`", place()))?;
        let values = object
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "step" | "stage" | "phase"))
            .filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x)))
            .collect();
        out.push(MetricsLine { step, stage: stage.to_string(), values });
    }
    Ok(out)
}
