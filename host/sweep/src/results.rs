//! What the trainer wrote in each finished run directory: the stage evaluations
//! (`eval/stages.jsonl`: per stage, accuracy overall, by length bucket and by kind) and the per-step
//! metrics (`metrics.jsonl`), read with `longrl-report`'s run-directory reader.

pub use longrl_metrics::Record as StepRecord;
pub use longrl_report::run_dir::{Cell as Accuracy, StageEval};

use crate::plan::{Cell, Plan};
use crate::runner::{State, read_status};

/// Every slice of a stage: `all`, `bucket=B` per length bucket, `kind=K` per question kind.
pub fn slices(stage: &StageEval) -> Vec<(String, &Accuracy)> {
    let mut out = vec![("all".to_string(), &stage.overall)];
    out.extend(stage.by_bucket.iter().map(|(b, a)| (format!("bucket={b}"), a)));
    out.extend(stage.by_kind.iter().map(|(k, a)| (format!("kind={k}"), a)));
    out
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub cell: Cell,
    pub stages: Vec<StageEval>,
    pub metrics: Vec<StepRecord>,
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
            Some(s) if s.state == State::Finished => {
                let data = longrl_report::run_dir::read(&cell.run_dir)?;
                out.runs.push(RunResult {
                    cell: cell.clone(),
                    stages: data.stages,
                    metrics: data.records,
                    wall_s: s.wall_s,
                })
            }
            Some(s) => out.failed.push(FailedRun {
                cell: cell.clone(),
                error: s.error.unwrap_or_else(|| format!("exit code {:?}", s.exit_code)),
            }),
            None => out.missing.push(cell.clone()),
        }
    }
    Ok(out)
}
