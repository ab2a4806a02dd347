//! Behaviour counts of logged rollouts, and their means per step and phase, split by correct and
//! wrong responses (`behaviour/<name>/{all,correct,wrong}`: mean count per scored response of that
//! subset; a subset with no scored response has no key rather than a made-up 0).
//!
//! `longrl behaviours RUN_DIR` writes `behaviours.jsonl` (one line per response) and
//! `behaviours_summary.jsonl` (one line per stage and step); the trainer adds the cue analyser's means
//! of each step's logged groups to that step's metrics.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{Analyser, Behaviour, Counts, Item};
use crate::rollout_log::{GroupEntry, RolloutLogData};

pub const RESPONSES_FILE: &str = "behaviours.jsonl";
pub const SUMMARY_FILE: &str = "behaviours_summary.jsonl";

/// One analysed response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseBehaviour {
    pub step: u64,
    pub stage: String,
    pub phase: Option<usize>,
    pub example: String,
    /// Position of the response in its group.
    pub rollout: usize,
    pub correct: Option<bool>,
    pub analyser: String,
    /// `None` when the analyser could not score the response (`error` says why).
    pub counts: Option<Counts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Means of one stage and step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    pub step: u64,
    pub stage: String,
    pub phase: Option<usize>,
    pub phase_name: Option<String>,
    pub responses: usize,
    pub unscored: usize,
    pub means: BTreeMap<String, f64>,
}

/// Analyse every response of `groups` (each with its prompt text).
pub fn analyse_groups(groups: &[(&str, &GroupEntry)], analyser: &dyn Analyser) -> Vec<ResponseBehaviour> {
    let items: Vec<Item<'_>> = groups
        .iter()
        .flat_map(|(prompt, g)| g.rollouts.iter().map(move |r| Item { response: &r.text, prompt }))
        .collect();
    let mut results = analyser.analyse(&items).into_iter();
    let mut out = Vec::with_capacity(items.len());
    for (_, g) in groups {
        for (i, r) in g.rollouts.iter().enumerate() {
            let result = results.next().unwrap_or_else(|| Err("the analyser returned too few results".into()));
            let (counts, error) = match result {
                Ok(a) => (Some(a.counts), None),
                Err(e) => (None, Some(e)),
            };
            out.push(ResponseBehaviour {
                step: g.step,
                stage: g.stage.clone(),
                phase: g.phase,
                example: g.example.clone(),
                rollout: i,
                correct: r.correct,
                analyser: analyser.name().to_string(),
                counts,
                error,
            });
        }
    }
    out
}

/// Analyse every logged group of a run.
pub fn analyse_log(data: &RolloutLogData, analyser: &dyn Analyser) -> anyhow::Result<Vec<ResponseBehaviour>> {
    let mut groups = Vec::with_capacity(data.groups.len());
    for g in &data.groups {
        let prompt = data.prompt_of(g).with_context(|| format!("no prompt is logged for example `{}`", g.example))?;
        groups.push((prompt.text.as_str(), g));
    }
    Ok(analyse_groups(&groups, analyser))
}

/// Mean count of each behaviour over the scored responses, split by correct and wrong.
pub fn means(responses: &[&ResponseBehaviour]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let subsets: [(&str, fn(&ResponseBehaviour) -> bool); 3] =
        [("all", |_| true), ("correct", |r| r.correct == Some(true)), ("wrong", |r| r.correct == Some(false))];
    for (subset, keep) in subsets {
        let scored: Vec<&Counts> = responses.iter().filter(|r| keep(r)).filter_map(|r| r.counts.as_ref()).collect();
        if scored.is_empty() {
            continue;
        }
        for behaviour in Behaviour::ALL {
            let total: u64 = scored.iter().map(|c| c.get(behaviour) as u64).sum();
            out.insert(format!("behaviour/{}/{subset}", behaviour.as_str()), total as f64 / scored.len() as f64);
        }
    }
    out
}

/// One summary per (stage, step), in step order.
pub fn summarise(responses: &[ResponseBehaviour], phase_names: &BTreeMap<usize, String>) -> Vec<StepSummary> {
    let mut by_step: BTreeMap<(u64, String), Vec<&ResponseBehaviour>> = BTreeMap::new();
    for r in responses {
        by_step.entry((r.step, r.stage.clone())).or_default().push(r);
    }
    by_step
        .into_iter()
        .map(|((step, stage), rs)| {
            let phase = rs.iter().find_map(|r| r.phase);
            StepSummary {
                step,
                stage,
                phase,
                phase_name: phase.and_then(|p| phase_names.get(&p).cloned()),
                responses: rs.len(),
                unscored: rs.iter().filter(|r| r.counts.is_none()).count(),
                means: means(&rs),
            }
        })
        .collect()
}

/// Write both files into `run_dir`; returns their paths.
pub fn write(
    run_dir: &Path,
    responses: &[ResponseBehaviour],
    summaries: &[StepSummary],
) -> anyhow::Result<(PathBuf, PathBuf)> {
    fn jsonl<T: Serialize>(path: &Path, rows: &[T]) -> anyhow::Result<()> {
        let mut text = Vec::new();
        for row in rows {
            serde_json::to_writer(&mut text, row)?;
            text.write_all(b"\n")?;
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
    let responses_path = run_dir.join(RESPONSES_FILE);
    let summary_path = run_dir.join(SUMMARY_FILE);
    jsonl(&responses_path, responses)?;
    jsonl(&summary_path, summaries)?;
    Ok((responses_path, summary_path))
}

/// Read `behaviours_summary.jsonl` when a run has one.
pub fn read_summaries(run_dir: &Path) -> anyhow::Result<Vec<StepSummary>> {
    let path = run_dir.join(SUMMARY_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::behaviours::cues::CueAnalyser;
    use crate::behaviours::{Analysis, Item};
    use crate::rollout_log::RolloutEntry;

    fn rollout(text: &str, correct: bool) -> RolloutEntry {
        RolloutEntry {
            text: text.into(),
            tokens: 5,
            finish: "stop".into(),
            reward: Some(correct as u8 as f64),
            shaped_reward: None,
            advantage: None,
            decided_by: "docqa.sub_em".into(),
            reward_details: serde_json::Value::Null,
            correct: Some(correct),
        }
    }

    fn group(step: u64, rollouts: Vec<RolloutEntry>) -> GroupEntry {
        GroupEntry {
            step,
            stage: "rl".into(),
            phase: Some(1),
            phase_name: Some("long".into()),
            example: "e".into(),
            data_source: "docqa".into(),
            rollouts,
        }
    }

    #[test]
    fn means_split_by_correct_and_wrong() {
        let g = group(
            3,
            vec![
                rollout("<think>Wait. Wait.</think>", true),
                rollout("<think>Let me verify.</think>", true),
                rollout("<think>Hmm.</think>", false),
            ],
        );
        let responses = analyse_groups(&[("doc", &g)], &CueAnalyser);
        let names = BTreeMap::from([(1, "long".to_string())]);
        let summary = summarise(&responses, &names);
        assert_eq!(summary.len(), 1);
        let s = &summary[0];
        assert_eq!((s.step, s.phase_name.as_deref(), s.responses, s.unscored), (3, Some("long"), 3, 0));
        assert_eq!(s.means["behaviour/backtracking/all"], 1.0);
        assert_eq!(s.means["behaviour/backtracking/correct"], 1.0);
        assert_eq!(s.means["behaviour/verification/correct"], 0.5);
        assert_eq!(s.means["behaviour/backtracking/wrong"], 1.0);
        assert_eq!(s.means["behaviour/verification/wrong"], 0.0);
    }

    struct Failing;
    impl Analyser for Failing {
        fn name(&self) -> &str {
            "failing"
        }
        fn analyse(&self, items: &[Item<'_>]) -> Vec<Result<Analysis, String>> {
            items.iter().map(|_| Err("no reply".to_string())).collect()
        }
    }

    #[test]
    fn unscored_responses_are_counted_and_left_out_of_means() {
        let g = group(1, vec![rollout("<think>Wait.</think>", false)]);
        let responses = analyse_groups(&[("doc", &g)], &Failing);
        assert_eq!(responses[0].counts, None);
        assert_eq!(responses[0].error.as_deref(), Some("no reply"));
        let summary = summarise(&responses, &BTreeMap::new());
        assert_eq!(summary[0].unscored, 1);
        assert!(summary[0].means.is_empty(), "no made-up zeros: {:?}", summary[0].means);
    }

    #[test]
    fn files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let g = group(2, vec![rollout("<think>Wait.</think>", true)]);
        let responses = analyse_groups(&[("doc", &g)], &CueAnalyser);
        let summary = summarise(&responses, &BTreeMap::new());
        write(dir.path(), &responses, &summary).unwrap();
        assert_eq!(read_summaries(dir.path()).unwrap(), summary);
    }
}
