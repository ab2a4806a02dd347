//! Running the cells: `longrl train` child processes, `--jobs` at a time, each cell's outcome in
//! `RUN_DIR/sweep-run.json`. Finished cells are skipped; a cell with checkpoints resumes from them;
//! a failed cell is recorded and run again by the next invocation.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::plan::{Cell, Plan, data_dir};

/// The sweep's record of a cell, written when its process ends.
pub const STATUS_FILE: &str = "sweep-run.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Finished,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    pub state: State,
    /// The process's exit code (None: killed by a signal, or it could not start).
    pub exit_code: Option<i32>,
    /// Wall time of this invocation's process, in seconds (a resumed run: the last part only).
    pub wall_s: f64,
    pub resumed: bool,
    pub args: Vec<String>,
    /// Why it failed, when it did: the error line or the log's last lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub fn read_status(run_dir: &Path) -> anyhow::Result<Option<RunStatus>> {
    let path = run_dir.join(STATUS_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?))
}

/// Run every cell that has not finished; `jobs` processes at a time.
pub fn run_all(plan: &Plan, jobs: usize) -> anyhow::Result<()> {
    let mut todo = Vec::new();
    for cell in &plan.cells {
        match read_status(&cell.run_dir)? {
            Some(status) if status.state == State::Finished => {
                if status.args != cell.args {
                    anyhow::bail!(
                        "{} finished with other arguments than this sweep gives it ({}): use another --out, or \
                         delete that run directory to run it again\n  then: {}\n  now:  {}",
                        cell.label(),
                        cell.run_dir.display(),
                        status.args.join(" "),
                        cell.args.join(" ")
                    );
                }
                eprintln!("sweep: {} finished earlier: skipped", cell.label());
            }
            _ => todo.push(cell),
        }
    }
    if let Some(synth) = &plan.synth {
        let mut seeds: Vec<u64> = todo.iter().map(|c| c.seed).collect();
        seeds.sort();
        seeds.dedup();
        for seed in seeds {
            make_data(plan, synth, seed)?;
        }
    }
    let total = todo.len();
    if total == 0 {
        return Ok(());
    }
    eprintln!("sweep: {total} run(s) to do, {} at a time", jobs.min(total));
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.min(total))
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(cell) = todo.get(i) else { return Ok(()) };
                        eprintln!("sweep: {} started (log {})", cell.label(), cell.log.display());
                        let status = run_cell(&plan.longrl, cell)?;
                        let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                        match status.state {
                            State::Finished => {
                                eprintln!("sweep: [{n}/{total}] {} finished in {:.0} s", cell.label(), status.wall_s)
                            }
                            State::Failed => eprintln!(
                                "sweep: [{n}/{total}] {} FAILED ({}); it is left out of the tables:\n{}",
                                cell.label(),
                                status.exit_code.map_or("killed by a signal".into(), |c| format!("exit code {c}")),
                                status.error.as_deref().unwrap_or("")
                            ),
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("a sweep worker panicked"))?)
    })
}

/// `longrl data synth` for one seed, unless its directory already holds data made with these arguments.
fn make_data(plan: &Plan, synth: &[String], seed: u64) -> anyhow::Result<()> {
    let dir = data_dir(&plan.out, seed);
    let stamp = dir.join(".synth-args");
    let wanted = synth.join(" ");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) && dir.join("train.parquet").exists() {
        return Ok(());
    }
    let log = plan.out.join("logs").join(format!("synth-seed-{seed}.log"));
    eprintln!("sweep: making the data of seed {seed} in {}", dir.display());
    let mut command = Command::new(&plan.longrl);
    command.args(["data", "synth", "--seed", &seed.to_string(), "--out"]).arg(&dir).args(synth);
    let (code, _) = run_logged(command, &log, false)?;
    if code != Some(0) {
        anyhow::bail!(
            "`longrl data synth` for seed {seed} failed ({code:?}); log {}:\n{}",
            log.display(),
            tail(&log, 20)
        );
    }
    std::fs::write(&stamp, wanted).with_context(|| format!("writing {}", stamp.display()))
}

/// A complete checkpoint in `run_dir` (the trainer's `checkpoints/step-N/trainer.json`).
fn has_checkpoint(run_dir: &Path) -> bool {
    std::fs::read_dir(run_dir.join("checkpoints"))
        .map(|entries| entries.flatten().any(|e| e.path().join("trainer.json").exists()))
        .unwrap_or(false)
}

fn run_cell(longrl: &Path, cell: &Cell) -> anyhow::Result<RunStatus> {
    let resumed = has_checkpoint(&cell.run_dir);
    if !resumed && cell.run_dir.exists() {
        // What a failed first attempt left (stage evaluations of stages it will run again).
        std::fs::remove_dir_all(&cell.run_dir).with_context(|| format!("clearing {}", cell.run_dir.display()))?;
    }
    let mut command = Command::new(longrl);
    command.args(&cell.args);
    if resumed {
        command.arg("--resume");
    }
    let started = Instant::now();
    let (exit_code, spawn_error) = run_logged(command, &cell.log, resumed)?;
    let wall_s = started.elapsed().as_secs_f64();
    let finished = exit_code == Some(0);
    let error = if finished {
        None
    } else {
        Some(spawn_error.unwrap_or_else(|| {
            let text = std::fs::read_to_string(&cell.log).unwrap_or_default();
            match text.lines().rev().find(|l| l.starts_with("error:")) {
                Some(line) => line.to_string(),
                None => tail(&cell.log, 10),
            }
        }))
    };
    let status = RunStatus {
        state: if finished { State::Finished } else { State::Failed },
        exit_code,
        wall_s,
        resumed,
        args: cell.args.clone(),
        error,
    };
    std::fs::create_dir_all(&cell.run_dir)?;
    let path = cell.run_dir.join(STATUS_FILE);
    std::fs::write(&path, serde_json::to_string_pretty(&status)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(status)
}

/// Run `command` with stdout and stderr into `log` (appended to when `append`); the exit code, or
/// the reason it could not start.
fn run_logged(mut command: Command, log: &Path, append: bool) -> anyhow::Result<(Option<i32>, Option<String>)> {
    std::fs::create_dir_all(log.parent().expect("logs have a directory"))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    command.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
    match command.status() {
        Ok(status) => Ok((status.code(), None)),
        Err(e) => Ok((None, Some(format!("could not start {}: {e}", PathBuf::from(command.get_program()).display())))),
    }
}

/// The last `n` lines of a log.
fn tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
