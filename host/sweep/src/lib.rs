//! `longrl sweep`: one training config over several seeds and named variants.
//!
//! Every (variant, seed) cell is one `longrl train` child process with its own run directory,
//! `OUT/runs/VARIANT/seed-S`. A cell that finished is skipped by the next invocation (its
//! `sweep-run.json` says so); an interrupted one resumes from its latest checkpoint; a failed one
//! is reported and left out of every mean. After the runs, the sweep reads what the trainer wrote
//! (`eval/stages.jsonl`, `metrics.jsonl`) and writes:
//!
//! - `OUT/results.md` and `OUT/results.json`: per variant, the accuracy of every stage and slice
//!   (length bucket, question kind, all) as the mean over seeds with its 95% Student-t interval and
//!   the per-seed values; the last RL stage against SFT per seed; and each variant against the
//!   first one, paired on the seeds both finished.
//! - `OUT/plots/*.png`: the training curves, one line per variant (mean over its seeds).
//!
//! The crate drives the `longrl` binary and parses its files; it does not link the trainer, so it
//! builds without libtorch.

pub mod args;
pub mod plan;
pub mod plot;
pub mod results;
pub mod runner;
pub mod stats;
pub mod summary;

use std::path::{Path, PathBuf};

pub use args::{SweepArgs, Variant};

/// What the sweep needs beyond its own arguments: the binary to run and the global options of the
/// `longrl` invocation (`--config`, `--set`), which every run receives.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub longrl: PathBuf,
    pub config: Option<PathBuf>,
    pub overrides: Vec<String>,
}

/// What a sweep ended with.
#[derive(Debug)]
pub struct Outcome {
    pub summary: summary::Summary,
    pub results_md: PathBuf,
    pub results_json: PathBuf,
    pub plots: Vec<PathBuf>,
    /// Cells that failed in this invocation or earlier ones and did not finish since.
    pub failed: Vec<plan::Cell>,
}

/// Run the sweep (unless `--report-only`), then write its tables and plots.
pub fn run(args: &SweepArgs, inputs: &Inputs) -> anyhow::Result<Outcome> {
    let plan = plan::Plan::new(args, inputs)?;
    if !args.report_only {
        runner::run_all(&plan, args.jobs.max(1))?;
    }
    report(&plan)
}

/// `longrl sweep`: run with this very binary, print where the results are, and fail (after writing
/// the tables) when any run failed. `config` and `overrides` are the global `--config` and `--set`.
pub fn run_cli(args: &SweepArgs, config: Option<PathBuf>, overrides: Vec<String>) -> anyhow::Result<()> {
    let longrl = std::env::current_exe().map_err(|e| anyhow::anyhow!("cannot find the running longrl binary: {e}"))?;
    let outcome = run(args, &Inputs { longrl, config, overrides })?;
    println!("tables: {} (and {})", outcome.results_md.display(), outcome.results_json.display());
    println!("curves: {} file(s) in {}", outcome.plots.len(), args.out.join("plots").display());
    if !outcome.failed.is_empty() {
        let which: Vec<String> =
            outcome.failed.iter().map(|c| format!("{} (log {})", c.label(), c.log.display())).collect();
        anyhow::bail!("{} run(s) failed and are left out of the tables: {}", which.len(), which.join("; "));
    }
    Ok(())
}

/// Read every cell's run directory and write `results.md`, `results.json` and the plots.
pub fn report(plan: &plan::Plan) -> anyhow::Result<Outcome> {
    let collected = results::collect(plan)?;
    let summary = summary::Summary::build(plan, &collected);
    let out = &plan.out;
    let results_md = out.join("results.md");
    let results_json = out.join("results.json");
    write(&results_md, &summary.to_markdown())?;
    write(&results_json, &(serde_json::to_string_pretty(&summary)? + "\n"))?;
    let plots = plot::plot_curves(plan, &collected, &out.join("plots"))?;
    let failed = collected.failed.iter().map(|f| f.cell.clone()).collect();
    Ok(Outcome { summary, results_md, results_json, plots, failed })
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}
