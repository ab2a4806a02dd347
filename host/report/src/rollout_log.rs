//! `RUN_DIR/rollouts.jsonl`: sampled groups of rollouts, the way verl's `rollout_data_dir` and TRL's
//! `log_completions` let people read what the policy writes (reward hacking, format drift and collapse
//! show there first).
//!
//! One JSON object per line, tagged by `type`:
//! - `prompt`: an example's prompt text and ground truth, written the first time the example is
//!   logged (a 60K-token document is stored once, not once per rollout or per step);
//! - `group`: one example's rollouts at one step: each response's text, token count, finish reason,
//!   raw and shaped reward, who decided the reward and why, and the advantage.
//!
//! Evaluation stages log their per-question outputs as groups too, with `stage` = `eval:<stage>`.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub const ROLLOUTS_FILE: &str = "rollouts.jsonl";

/// An example's prompt, logged once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptEntry {
    /// The example's stable id (the key groups refer to).
    pub example: String,
    pub data_source: String,
    /// The prompt as the policy saw it (after templating and truncation).
    pub text: String,
    pub ground_truth: String,
}

/// One response of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutEntry {
    pub text: String,
    /// Response tokens (the EOS token included).
    pub tokens: u32,
    /// `stop` or `length`.
    pub finish: String,
    /// The reward before shaping; `None` when it could not be decided (unscored).
    pub reward: Option<f64>,
    /// The reward after the algorithm's length shaping; `None` for unscored or evaluation rollouts.
    #[serde(default)]
    pub shaped_reward: Option<f64>,
    /// The advantage used in the update; `None` for groups left out of the update (dynamic
    /// sampling) and for evaluation rollouts.
    #[serde(default)]
    pub advantage: Option<f64>,
    /// Who decided the reward: a rule (`docqa.sub_em`, ...), the judge (`judge.yes`), or an error.
    pub decided_by: String,
    /// The reward's breakdown (extracted answer, normalised forms, judge verdict, ...).
    #[serde(default)]
    pub reward_details: serde_json::Value,
    /// Whether the response counts as correct (reward at or above the run's accuracy threshold).
    #[serde(default)]
    pub correct: Option<bool>,
}

/// One example's rollouts at one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupEntry {
    /// Optimizer step the rollouts were drawn before (the step they trained), or the step an
    /// evaluation stage ended at.
    pub step: u64,
    /// `rl`, or `eval:<stage>` for an evaluation stage's outputs.
    pub stage: String,
    #[serde(default)]
    pub phase: Option<usize>,
    #[serde(default)]
    pub phase_name: Option<String>,
    pub example: String,
    pub data_source: String,
    pub rollouts: Vec<RolloutEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogLine {
    Prompt(PromptEntry),
    Group(GroupEntry),
}

/// Appends groups to `RUN_DIR/rollouts.jsonl`, each example's prompt before its first group.
pub struct RolloutLog {
    path: PathBuf,
    out: BufWriter<File>,
    /// Examples whose prompt is in the file.
    logged: BTreeSet<String>,
}

impl RolloutLog {
    /// Open the log of `run_dir`. A fresh run (`resume_step` = `None`) starts an empty log; a resumed
    /// run drops the groups of steps after its checkpoint (the interrupted run logged them; the resumed
    /// run draws them again) and keeps every prompt line.
    pub fn open(run_dir: &Path, resume_step: Option<u64>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(run_dir).with_context(|| format!("creating run directory {}", run_dir.display()))?;
        let path = run_dir.join(ROLLOUTS_FILE);
        let mut logged = BTreeSet::new();
        match resume_step {
            Some(step) if path.exists() => {
                let mut kept = String::new();
                for (line, text) in read_lines(&path)? {
                    match line {
                        LogLine::Prompt(p) => {
                            logged.insert(p.example);
                        }
                        LogLine::Group(g) if g.step > step => continue,
                        LogLine::Group(_) => {}
                    }
                    kept.push_str(&text);
                    kept.push('\n');
                }
                std::fs::write(&path, kept).with_context(|| format!("rewriting {}", path.display()))?;
            }
            Some(_) => {}
            None => {
                File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            }
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(RolloutLog { path, out: BufWriter::new(file), logged })
    }

    /// Append to the log of `run_dir` as it is (created when missing): the evaluation after a stage
    /// adds its groups to what training wrote.
    pub fn append_to(run_dir: &Path) -> anyhow::Result<Self> {
        let path = run_dir.join(ROLLOUTS_FILE);
        let mut logged = BTreeSet::new();
        if path.exists() {
            for (line, _) in read_lines(&path)? {
                if let LogLine::Prompt(p) = line {
                    logged.insert(p.example);
                }
            }
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(RolloutLog { path, out: BufWriter::new(file), logged })
    }

    /// Log one group; `prompt` is written first when its example has not been logged before.
    pub fn append(&mut self, prompt: &PromptEntry, group: &GroupEntry) -> anyhow::Result<()> {
        if prompt.example != group.example {
            anyhow::bail!("rollout log: group of example `{}` given the prompt of `{}`", group.example, prompt.example);
        }
        if !self.logged.contains(&prompt.example) {
            self.write(&LogLine::Prompt(prompt.clone()))?;
            self.logged.insert(prompt.example.clone());
        }
        self.write(&LogLine::Group(group.clone()))
    }

    /// Push what was appended to the file (once per step: a killed run loses at most that step).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush().with_context(|| format!("writing {}", self.path.display()))
    }

    fn write(&mut self, line: &LogLine) -> anyhow::Result<()> {
        let text = serde_json::to_string(line)?;
        writeln!(self.out, "{text}").with_context(|| format!("writing {}", self.path.display()))
    }
}

/// Everything in a rollout log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RolloutLogData {
    /// Prompts by example id.
    pub prompts: std::collections::BTreeMap<String, PromptEntry>,
    /// Groups in file order.
    pub groups: Vec<GroupEntry>,
}

impl RolloutLogData {
    /// The prompt a group was drawn for.
    pub fn prompt_of(&self, group: &GroupEntry) -> Option<&PromptEntry> {
        self.prompts.get(&group.example)
    }
}

/// Read `path` (a `rollouts.jsonl`); a malformed line, a repeated prompt or a group whose prompt was
/// never logged is an error naming the file and line.
pub fn read(path: &Path) -> anyhow::Result<RolloutLogData> {
    let mut data = RolloutLogData::default();
    for (number, (line, _)) in read_lines(path)?.into_iter().enumerate() {
        let at = || format!("{}:{}", path.display(), number + 1);
        match line {
            LogLine::Prompt(p) => {
                if data.prompts.contains_key(&p.example) {
                    anyhow::bail!("{}: the prompt of example `{}` is logged twice", at(), p.example);
                }
                data.prompts.insert(p.example.clone(), p);
            }
            LogLine::Group(g) => {
                if !data.prompts.contains_key(&g.example) {
                    anyhow::bail!("{}: a group of example `{}` comes before (or without) its prompt", at(), g.example);
                }
                data.groups.push(g);
            }
        }
    }
    Ok(data)
}

fn read_lines(path: &Path) -> anyhow::Result<Vec<(LogLine, String)>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (number, text) in BufReader::new(file).lines().enumerate() {
        let text = text.with_context(|| format!("reading {}:{}", path.display(), number + 1))?;
        if text.trim().is_empty() {
            continue;
        }
        let line: LogLine = serde_json::from_str(&text)
            .with_context(|| format!("{}:{}: not a rollout log line", path.display(), number + 1))?;
        out.push((line, text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(id: &str) -> PromptEntry {
        PromptEntry {
            example: id.into(),
            data_source: "docqa".into(),
            text: format!("document of {id}"),
            ground_truth: "x".into(),
        }
    }

    fn group(step: u64, id: &str, rewards: &[f64]) -> GroupEntry {
        GroupEntry {
            step,
            stage: "rl".into(),
            phase: Some(0),
            phase_name: Some("short".into()),
            example: id.into(),
            data_source: "docqa".into(),
            rollouts: rewards
                .iter()
                .map(|&r| RolloutEntry {
                    text: format!("<think>r={r}</think> Therefore, the answer is x"),
                    tokens: 7,
                    finish: "stop".into(),
                    reward: Some(r),
                    shaped_reward: Some(r),
                    advantage: Some(r - 0.5),
                    decided_by: "docqa.sub_em".into(),
                    reward_details: serde_json::json!({"answer": "x"}),
                    correct: Some(r >= 1.0),
                })
                .collect(),
        }
    }

    #[test]
    fn prompts_are_written_once_and_groups_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RolloutLog::open(dir.path(), None).unwrap();
        log.append(&prompt("a"), &group(1, "a", &[1.0, 0.0])).unwrap();
        log.append(&prompt("b"), &group(1, "b", &[0.0, 0.0])).unwrap();
        log.append(&prompt("a"), &group(2, "a", &[1.0, 1.0])).unwrap();
        log.flush().unwrap();
        let text = std::fs::read_to_string(dir.path().join(ROLLOUTS_FILE)).unwrap();
        assert_eq!(text.matches("\"type\":\"prompt\"").count(), 2);
        let data = read(&dir.path().join(ROLLOUTS_FILE)).unwrap();
        assert_eq!(data.prompts.len(), 2);
        assert_eq!(
            data.groups,
            vec![group(1, "a", &[1.0, 0.0]), group(1, "b", &[0.0, 0.0]), group(2, "a", &[1.0, 1.0])]
        );
        assert_eq!(data.prompt_of(&data.groups[2]).unwrap().text, "document of a");
    }

    #[test]
    fn resume_drops_later_groups_and_keeps_prompts() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RolloutLog::open(dir.path(), None).unwrap();
        log.append(&prompt("a"), &group(1, "a", &[1.0])).unwrap();
        log.append(&prompt("b"), &group(2, "b", &[0.0])).unwrap();
        log.flush().unwrap();
        drop(log);
        let mut log = RolloutLog::open(dir.path(), Some(1)).unwrap();
        // `b`'s prompt is already in the file: not written again.
        log.append(&prompt("b"), &group(2, "b", &[1.0])).unwrap();
        log.flush().unwrap();
        let data = read(&dir.path().join(ROLLOUTS_FILE)).unwrap();
        assert_eq!(data.prompts.len(), 2);
        assert_eq!(data.groups, vec![group(1, "a", &[1.0]), group(2, "b", &[1.0])]);
    }

    #[test]
    fn bad_logs_are_named_by_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ROLLOUTS_FILE);
        let orphan = serde_json::to_string(&LogLine::Group(group(1, "a", &[1.0]))).unwrap();
        std::fs::write(&path, format!("{orphan}\n")).unwrap();
        let err = format!("{:#}", read(&path).unwrap_err());
        assert!(err.contains("rollouts.jsonl:1") && err.contains("before (or without) its prompt"), "{err}");
        std::fs::write(&path, "{\"type\":\"nonsense\"}\n").unwrap();
        let err = format!("{:#}", read(&path).unwrap_err());
        assert!(err.contains("rollouts.jsonl:1") && err.contains("not a rollout log line"), "{err}");
    }

    #[test]
    fn a_group_with_another_examples_prompt_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RolloutLog::open(dir.path(), None).unwrap();
        let err = log.append(&prompt("a"), &group(1, "b", &[1.0])).unwrap_err().to_string();
        assert!(err.contains("given the prompt of `a`"), "{err}");
    }
}
