//! Base-model difficulty (QwenLong-L1 Eq. 10): each example's mean reward over G rollouts of the
//! policy before RL, written as the JSONL the `retrospective` sampler reads
//! (`{"id", "difficulty", "mean_reward", "unscored"}` per line). `longrl difficulty` and the trainer
//! (at RL start, when the sampler needs the file and none is given) both score through here.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use longrl_core::api::GenerationParams;

use crate::{Generator, RewardSet, RolloutPrompt, RolloutSpec, roll_out};

/// One example's scores.
#[derive(Debug, Clone, PartialEq)]
pub struct DifficultyRow {
    pub id: String,
    /// Mean reward of the scored rollouts; `None` when none could be scored (never a made-up 0).
    pub mean_reward: Option<f64>,
    /// Rollouts the rewards could not decide (left out of the mean).
    pub unscored: usize,
}

impl DifficultyRow {
    /// Eq. 10 with smoothing: 1 / (max(mean, 0) + smoothing); `None` without a mean.
    pub fn difficulty(&self, smoothing: f64) -> Option<f64> {
        self.mean_reward.map(|mean| 1.0 / (mean.max(0.0) + smoothing))
    }
}

/// Roll out `params.rollouts` responses for each of `prompts` (ids in `ids`), `batch_prompts` prompts
/// per call with the seed `seed_of_batch(b)` for the `b`-th call, and return each prompt's mean reward.
/// `on_done` hears how many prompts each call finished (progress bars).
pub fn score_difficulty(
    generator: &mut dyn Generator,
    rewards: &RewardSet,
    prompts: &[RolloutPrompt<'_>],
    ids: &[&str],
    params: &GenerationParams,
    batch_prompts: usize,
    seed_of_batch: &dyn Fn(u64) -> u64,
    on_done: &mut dyn FnMut(usize),
) -> anyhow::Result<Vec<DifficultyRow>> {
    if ids.len() != prompts.len() {
        anyhow::bail!("{} ids for {} prompts", ids.len(), prompts.len());
    }
    let mut rows = Vec::with_capacity(prompts.len());
    for (b, (part, part_ids)) in prompts.chunks(batch_prompts.max(1)).zip(ids.chunks(batch_prompts.max(1))).enumerate()
    {
        let seed = seed_of_batch(b as u64);
        let spec =
            RolloutSpec { params: params.clone(), batch_prompts: 0, seed_of_call: &|_| seed, strip_responses: false };
        let rolled = roll_out(generator, rewards, part, &spec, &mut |_| {})?;
        for (id, group) in part_ids.iter().zip(&rolled.groups) {
            let scored: Vec<f64> =
                group.rollouts.iter().map(|r| r.score.score as f64).filter(|s| s.is_finite()).collect();
            let mean_reward = (!scored.is_empty()).then(|| scored.iter().sum::<f64>() / scored.len() as f64);
            rows.push(DifficultyRow { id: id.to_string(), mean_reward, unscored: group.rollouts.len() - scored.len() });
        }
        on_done(part.len());
    }
    Ok(rows)
}

/// Write `rows` as the sampler's JSONL (rows without a mean are left out: the sampler reports
/// examples missing from the file by id), atomically (a temporary file renamed into place), so a run
/// killed while writing never leaves a half file that a resumed run would take as complete.
pub fn write_difficulty(path: &Path, rows: &[DifficultyRow], smoothing: f64) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let temp = path.with_extension("jsonl.partial");
    let file = std::fs::File::create(&temp).with_context(|| format!("creating {}", temp.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for row in rows.iter().filter(|row| row.mean_reward.is_some()) {
        let line = serde_json::json!({
            "id": row.id,
            "difficulty": row.difficulty(smoothing),
            "mean_reward": row.mean_reward,
            "unscored": row.unscored,
        });
        writeln!(out, "{line}").with_context(|| format!("writing {}", temp.display()))?;
    }
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("renaming {} to {}", temp.display(), path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn difficulty_follows_eq_10_and_leaves_unscored_examples_without_one() {
        let row = |mean: Option<f64>| DifficultyRow { id: "a".into(), mean_reward: mean, unscored: 0 };
        assert_eq!(row(Some(0.25)).difficulty(0.0), Some(4.0));
        assert_eq!(row(Some(-1.0)).difficulty(0.1), Some(10.0));
        assert_eq!(row(None).difficulty(0.1), None);
    }

    #[test]
    fn written_file_is_whole_and_leaves_out_unscored_examples() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/difficulty.jsonl");
        let rows = vec![
            DifficultyRow { id: "a".into(), mean_reward: Some(0.5), unscored: 1 },
            DifficultyRow { id: "b".into(), mean_reward: None, unscored: 8 },
        ];
        write_difficulty(&path, &rows, 0.0).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["difficulty"], 2.0);
        assert_eq!(lines[0]["unscored"], 1);
        assert_eq!(lines.len(), 1, "{text}");
        assert!(!path.with_extension("jsonl.partial").exists());
    }
}
