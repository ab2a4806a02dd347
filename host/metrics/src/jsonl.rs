//! Per-step metrics: one JSON object per line in `RUN_DIR/metrics.jsonl`, and the same scalars in
//! TensorBoard event files under `RUN_DIR/tensorboard/`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::tfevents::EventWriter;

pub const METRICS_FILE: &str = "metrics.jsonl";

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Optimizer-step counter across stages (SFT steps, then RL steps).
    pub step: u64,
    /// `sft` or `rl`.
    pub stage: String,
    /// Curriculum phase index (RL only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_name: Option<String>,
    #[serde(flatten)]
    pub values: BTreeMap<String, f64>,
}

impl Record {
    /// Values that depend on the machine's speed rather than on the run (excluded when comparing runs).
    pub fn is_timing_key(key: &str) -> bool {
        key.starts_with("time/") || key.ends_with("tokens_per_s")
    }
}

/// The records with their timing values dropped: what two runs of one config must agree on.
pub fn without_timing(records: Vec<Record>) -> Vec<Record> {
    records
        .into_iter()
        .map(|mut r| {
            r.values.retain(|k, _| !Record::is_timing_key(k));
            r
        })
        .collect()
}

pub struct MetricsLog {
    path: PathBuf,
    file: File,
    events: Option<EventWriter>,
}

impl MetricsLog {
    /// Open the log of `run_dir`. When resuming from `resume_step`, lines of later steps (logged
    /// after that checkpoint by the interrupted run) are dropped so the log reads as one run.
    pub fn open(run_dir: &Path, tensorboard: bool, resume_step: Option<u64>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(run_dir).with_context(|| format!("creating run directory {}", run_dir.display()))?;
        let path = run_dir.join(METRICS_FILE);
        match resume_step {
            Some(step) if path.exists() => {
                let kept: Vec<String> = read_lines(&path)?
                    .into_iter()
                    .filter(|(record, _)| record.step <= step)
                    .map(|(_, line)| line)
                    .collect();
                let mut text = kept.join("\n");
                if !text.is_empty() {
                    text.push('\n');
                }
                std::fs::write(&path, text)?;
            }
            Some(_) => {}
            None => {
                // A fresh run starts a fresh log.
                File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            }
        }
        let file = OpenOptions::new().append(true).create(true).open(&path)?;
        let events = if tensorboard { Some(EventWriter::create(&run_dir.join("tensorboard"))?) } else { None };
        Ok(MetricsLog { path, file, events })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, record: &Record) -> anyhow::Result<()> {
        // serde_json writes non-finite floats as null, which would break readers: record them as absent.
        let mut clean = record.clone();
        clean.values.retain(|_, v| v.is_finite());
        let line = serde_json::to_string(&clean)?;
        writeln!(self.file, "{line}")?;
        self.file.flush()?;
        if let Some(events) = &mut self.events {
            let mut scalars: Vec<(String, f32)> =
                clean.values.iter().map(|(k, v)| (format!("{}/{k}", record.stage), *v as f32)).collect();
            if let Some(phase) = record.phase {
                scalars.push(("rl/phase".into(), phase as f32));
            }
            let borrowed: Vec<(&str, f32)> = scalars.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            events.scalars(record.step as i64, &borrowed)?;
        }
        Ok(())
    }
}

fn read_lines(path: &Path) -> anyhow::Result<Vec<(Record, String)>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(&line) {
            Ok(record) => out.push((record, line)),
            // A run killed mid-write leaves a partial last line; anything else is corruption.
            Err(e) => tracing::warn!("{}:{}: skipping unreadable metrics line: {e}", path.display(), n + 1),
        }
    }
    Ok(out)
}

/// Every record of a run's `metrics.jsonl`.
pub fn read_metrics(run_dir: &Path) -> anyhow::Result<Vec<Record>> {
    Ok(read_lines(&run_dir.join(METRICS_FILE))?.into_iter().map(|(r, _)| r).collect())
}

/// Mean and (population) standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: u64, v: f64) -> Record {
        Record {
            step,
            stage: "rl".into(),
            phase: Some(0),
            phase_name: Some("p".into()),
            values: [("reward/mean".to_string(), v)].into(),
        }
    }

    #[test]
    fn resume_drops_steps_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(dir.path(), true, None).unwrap();
        for s in 1..=5 {
            log.write(&record(s, s as f64)).unwrap();
        }
        drop(log);
        let mut log = MetricsLog::open(dir.path(), false, Some(3)).unwrap();
        log.write(&record(4, 40.0)).unwrap();
        let steps: Vec<(u64, f64)> =
            read_metrics(dir.path()).unwrap().iter().map(|r| (r.step, r.values["reward/mean"])).collect();
        assert_eq!(steps, vec![(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]);
        let tb = std::fs::read_dir(dir.path().join("tensorboard")).unwrap().next().unwrap().unwrap().path();
        let events = crate::tfevents::read_events(&tb).unwrap();
        assert_eq!(events.len(), 6);
        assert!(events[1].scalars.contains(&("rl/reward/mean".to_string(), 1.0)));
    }

    #[test]
    fn non_finite_values_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(dir.path(), false, None).unwrap();
        let mut r = record(1, 0.5);
        r.values.insert("kl".into(), f64::NAN);
        log.write(&r).unwrap();
        let back = read_metrics(dir.path()).unwrap();
        assert_eq!(back[0].values.len(), 1);
    }
}
