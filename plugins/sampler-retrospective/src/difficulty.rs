//! Per-example reward statistics, the difficulty derived from them, and the offline difficulty file.

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

/// Eq. 10: difficulty = 1 / mean reward, smoothed so that an example never solved is finite
/// (1 / smoothing). Negative means (shaped rewards) count as 0, so difficulty stays positive.
pub fn difficulty(mean_reward: f64, smoothing: f64) -> f64 {
    1.0 / (mean_reward.max(0.0) + smoothing)
}

#[derive(Debug, Deserialize)]
struct FileLine {
    id: serde_json::Value,
    mean_reward: f64,
    #[serde(default)]
    difficulty: Option<f64>,
}

/// Read a JSONL difficulty file (`{"id": ..., "difficulty": ..., "mean_reward": ...}` per line, as
/// written by `longrl difficulty`): example id -> mean reward. Other fields are ignored; the sampler
/// recomputes difficulty from `mean_reward` with its own smoothing.
pub fn read_file(path: &Path) -> Result<BTreeMap<String, f64>> {
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
        if !row.mean_reward.is_finite() {
            return Err(bad(format!("`mean_reward` is {}", row.mean_reward)));
        }
        if let Some(d) = row.difficulty
            && !(d.is_finite() && d > 0.0)
        {
            return Err(bad(format!("`difficulty` must be a positive number, got {d}")));
        }
        if out.insert(id.clone(), row.mean_reward).is_some() {
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
    fn difficulty_is_smoothed_inverse_reward() {
        assert!((difficulty(0.0, 0.1) - 10.0).abs() < 1e-12);
        assert!((difficulty(0.4, 0.1) - 2.0).abs() < 1e-12);
        assert!((difficulty(-0.5, 0.1) - 10.0).abs() < 1e-12);
        let mut s = Stats::seeded(1.0);
        s.observe(0.0);
        s.observe(0.5);
        assert!((s.mean_reward - 0.5).abs() < 1e-12 && s.groups == 3);
    }

    #[test]
    fn reads_ids_of_either_type_and_blank_lines() {
        let f = file(
            "{\"id\": \"a\", \"difficulty\": 10.0, \"mean_reward\": 0.0}\n\n{\"id\": 7, \"mean_reward\": 0.5, \"extra\": 1}\n",
        );
        let m = read_file(f.path()).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m["a"], 0.0);
        assert_eq!(m["7"], 0.5);
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
        let e = read_file(Path::new("/nonexistent/diff.jsonl")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/diff.jsonl"), "{e}");
    }
}
