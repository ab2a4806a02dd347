//! Reading what a run directory holds: `metrics.jsonl` (one record per optimizer step),
//! `eval/stages.jsonl` (accuracy after each stage, by length bucket and kind), `rollouts.jsonl` and
//! the behaviour summaries. Only the fields the report shows are read; nothing here needs the
//! trainer or libtorch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use longrl_metrics::{METRICS_FILE, Record, read_metrics};

use crate::behaviours::summary::{self, StepSummary};
use crate::rollout_log::{self, ROLLOUTS_FILE, RolloutLogData};

/// Accuracy of a group of questions, as the stage evaluation writes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Cell {
    pub n: usize,
    pub accuracy: f64,
    pub ci95: [f64; 2],
}

/// A line of `eval/stages.jsonl`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StageEval {
    pub stage: String,
    pub overall: Cell,
    #[serde(default)]
    pub by_bucket: BTreeMap<String, Cell>,
    #[serde(default)]
    pub by_kind: BTreeMap<String, Cell>,
}

/// Everything the report reads from a run directory.
#[derive(Debug, Clone, Default)]
pub struct RunData {
    pub dir: PathBuf,
    pub records: Vec<Record>,
    pub stages: Vec<StageEval>,
    pub rollouts: RolloutLogData,
    pub behaviours: Vec<StepSummary>,
    /// `report.md`'s verdict lines (the longest-bucket check), shown at the top of the page.
    pub verdicts: Vec<String>,
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Vec<T>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1)))
        .collect()
}

/// Read a run directory. A run without metrics is an error (nothing to report); stage evaluations,
/// rollouts and behaviours are optional.
pub fn read(dir: &Path) -> anyhow::Result<RunData> {
    if !dir.join(METRICS_FILE).exists() {
        anyhow::bail!("{} is not a run directory: it has no {METRICS_FILE}", dir.display());
    }
    let records = read_metrics(dir)?;
    let stages_path = dir.join("eval/stages.jsonl");
    let stages = if stages_path.exists() { read_jsonl(&stages_path)? } else { Vec::new() };
    let rollouts_path = dir.join(ROLLOUTS_FILE);
    let rollouts = if rollouts_path.exists() { rollout_log::read(&rollouts_path)? } else { RolloutLogData::default() };
    let behaviours = summary::read_summaries(dir)?;
    let verdicts = std::fs::read_to_string(dir.join("report.md"))
        .map(|md| md.lines().filter(|l| l.contains("interval of the difference")).map(str::to_string).collect())
        .unwrap_or_default();
    Ok(RunData { dir: dir.to_path_buf(), records, stages, rollouts, behaviours, verdicts })
}
