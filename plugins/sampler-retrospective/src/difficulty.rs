//! Per-example reward statistics, the difficulty measures, and the offline difficulty file.

use std::collections::BTreeMap;
use std::path::Path;

use longrl_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// What the sampler knows about one example's rewards.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Mean over observed groups of the group's mean reward.
    pub mean_reward: f64,
    /// Groups observed (an offline seed counts as one).
    pub groups: u64,
}

impl Stats {
    pub fn seeded(mean_reward: f64) -> Self {
        Stats { mean_reward, groups: 1 }
    }

    /// Fold in one group: every group weighs the same, however many rollouts it had.
    pub fn observe(&mut self, group_mean: f64) {
        self.groups += 1;
        self.mean_reward += (group_mean - self.mean_reward) / self.groups as f64;
    }
}

/// Eq. 10 of the paper, `1 / mean reward`, with two guards: `smoothing` added to the mean (0: the
/// paper's formula), and the result capped at `max_difficulty`, which is what an example the
/// base model never solved (mean 0, Eq. 10's infinity) gets. Negative means (shaped rewards) count
/// as 0. With G <= `max_difficulty` rollouts no solved example reaches the cap, so never-solved
/// examples stay the hardest.
pub fn difficulty(mean_reward: f64, smoothing: f64, max_difficulty: f64) -> f64 {
    let denominator = mean_reward.max(0.0) + smoothing;
    if denominator <= 0.0 { max_difficulty } else { (1.0 / denominator).min(max_difficulty) }
}

/// How an example's difficulty is measured: its sampling weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Eq. 10: 1 / mean reward of G rollouts (`mean_reward`), capped.
    InverseMeanReward,
    /// The policy's mean token loss (negative log-likelihood) on the reference answer
    /// (`reference_loss`): an answer the model finds unlikely is hard.
    ReferenceLoss,
    /// The number of reasoning steps the reference answer needs (`reasoning_steps`, e.g. hops).
    ReasoningSteps,
    /// The file's own `difficulty` column, as `longrl difficulty` (or another tool) wrote it.
    File,
}

impl Measure {
    /// The file column this measure reads.
    pub fn column(self) -> &'static str {
        match self {
            Measure::InverseMeanReward => "mean_reward",
            Measure::ReferenceLoss => "reference_loss",
            Measure::ReasoningSteps => "reasoning_steps",
            Measure::File => "difficulty",
        }
    }
}

/// One line of a difficulty file: what is known about one example offline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_reward: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difficulty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_steps: Option<f64>,
}

impl Entry {
    /// The weight of this example under `measure`, or `None` when the file lacks its column.
    pub fn weight(&self, measure: Measure, smoothing: f64, max_difficulty: f64) -> Option<f64> {
        match measure {
            Measure::InverseMeanReward => self.mean_reward.map(|m| difficulty(m, smoothing, max_difficulty)),
            Measure::ReferenceLoss => self.reference_loss,
            Measure::ReasoningSteps => self.reasoning_steps,
            Measure::File => self.difficulty,
        }
    }
}

#[derive(Debug, Deserialize)]
struct FileLine {
    id: serde_json::Value,
    #[serde(flatten)]
    entry: Entry,
}

/// Read a JSONL difficulty file (one `{"id", ...}` per line, as written by `longrl difficulty`):
/// example id -> what it states. Known columns: `mean_reward` (the base model's mean reward over G
/// rollouts), `difficulty`, `reference_loss`, `reasoning_steps`; other fields are ignored. Every
/// line needs at least one of them; values must be finite, and all but `mean_reward` positive.
pub fn read_file(path: &Path) -> Result<BTreeMap<String, Entry>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::msg(format!("sampler/retrospective: cannot read difficulty file {}: {e}", path.display()))
    })?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |msg: String| Error::msg(format!("difficulty file {} line {}: {msg}", path.display(), i + 1));
        if line.trim().is_empty() {
            continue;
        }
        let row: FileLine = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let id = match row.id {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            other => return Err(bad(format!("`id` must be a string or number, got {other}"))),
        };
        let e = row.entry;
        if e == Entry::default() {
            return Err(bad("states none of `mean_reward`, `difficulty`, `reference_loss`, `reasoning_steps`".into()));
        }
        if let Some(m) = e.mean_reward.filter(|m| !m.is_finite()) {
            return Err(bad(format!("`mean_reward` is {m}")));
        }
        for (column, value) in
            [("difficulty", e.difficulty), ("reference_loss", e.reference_loss), ("reasoning_steps", e.reasoning_steps)]
        {
            if let Some(v) = value.filter(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(bad(format!("`{column}` must be a positive number, got {v}")));
            }
        }
        if out.insert(id.clone(), e).is_some() {
            return Err(bad(format!("example id `{id}` appears twice")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn eq10_with_its_cap() {
        assert_eq!(difficulty(0.0, 0.0, 10.0), 10.0, "never solved: the cap");
        assert_eq!(difficulty(0.125, 0.0, 10.0), 8.0, "1 of 8 rollouts right");
        assert_eq!(difficulty(0.5, 0.0, 10.0), 2.0);
        assert_eq!(difficulty(1.0, 0.0, 10.0), 1.0);
        assert_eq!(difficulty(0.05, 0.0, 10.0), 10.0, "1/0.05 = 20 is capped");
        assert_eq!(difficulty(-0.5, 0.0, 10.0), 10.0);
        assert!((difficulty(0.4, 0.1, 10.0) - 2.0).abs() < 1e-12, "smoothing: 1 / (0.4 + 0.1)");
        let mut s = Stats::seeded(1.0);
        s.observe(0.0);
        s.observe(0.5);
        assert!((s.mean_reward - 0.5).abs() < 1e-12 && s.groups == 3);
    }

    #[test]
    fn reads_ids_of_either_type_every_measure_and_blank_lines() {
        let f = file(concat!(
            "{\"id\": \"a\", \"difficulty\": 10.0, \"mean_reward\": 0.0}\n\n",
            "{\"id\": 7, \"mean_reward\": 0.5, \"extra\": 1}\n",
            "{\"id\": \"s\", \"reference_loss\": 2.5, \"reasoning_steps\": 3}\n",
        ));
        let m = read_file(f.path()).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m["a"].mean_reward, Some(0.0));
        assert_eq!(m["7"].weight(Measure::InverseMeanReward, 0.0, 10.0), Some(2.0));
        assert_eq!(m["s"].weight(Measure::ReferenceLoss, 0.0, 10.0), Some(2.5));
        assert_eq!(m["s"].weight(Measure::ReasoningSteps, 0.0, 10.0), Some(3.0));
        assert_eq!(m["s"].weight(Measure::InverseMeanReward, 0.0, 10.0), None);
        assert_eq!(m["a"].weight(Measure::File, 0.0, 10.0), Some(10.0));
    }

    #[test]
    fn errors_name_file_and_line() {
        let f = file("{\"id\": \"a\", \"mean_reward\": 0.0}\n{\"id\": \"b\"}\n");
        let e = read_file(f.path()).unwrap_err().to_string();
        assert!(
            e.contains("line 2") && e.contains("mean_reward") && e.contains(&f.path().display().to_string()),
            "{e}"
        );
        let f = file("{\"id\": \"a\", \"mean_reward\": 0.0}\n{\"id\": \"a\", \"mean_reward\": 1.0}\n");
        assert!(read_file(f.path()).unwrap_err().to_string().contains("line 2: example id `a` appears twice"));
        let f = file("not json\n");
        assert!(read_file(f.path()).unwrap_err().to_string().contains("line 1"));
        let f = file("{\"id\": \"a\", \"mean_reward\": 0.0, \"difficulty\": -1}\n");
        assert!(read_file(f.path()).unwrap_err().to_string().contains("difficulty"));
        let f = file("{\"id\": \"a\", \"reasoning_steps\": 0}\n");
        assert!(read_file(f.path()).unwrap_err().to_string().contains("reasoning_steps"));
        let e = read_file(Path::new("/nonexistent/diff.jsonl")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/diff.jsonl"), "{e}");
    }
}
