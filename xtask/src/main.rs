//! `cargo xtask`: one entry for every chore. Built apart from the workspace (its own target dir),
//! so it runs before libtorch exists and never rebuilds the main workspace's artifacts.

mod browser;
mod setup;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "longrl project chores")]
struct Cli {
    #[command(subcommand)]
    command: Chore,
}

#[derive(Subcommand)]
enum Chore {
    /// Create .venv with torch 2.13.0 and the test oracles, link libtorch as .libtorch, and fetch
    /// the headers of the c10d shim (core/dist) into .deps.
    Setup {
        /// Also install the CUDA headers of the NCCL build (automatic where an NVIDIA driver is present).
        #[arg(long)]
        cuda: bool,
    },
    /// Build every plugin library, then run every test of the workspace on CPU.
    Test {
        /// Extra arguments passed to `cargo test` (after `--workspace`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The main job: the tiny recipe (SFT, two RL phases, evaluation) on synthetic long-document QA.
    Demo {
        /// Run directory (default: the config's, runs/tiny).
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Extra `--set key=value` overrides for the run.
        #[arg(long = "set")]
        overrides: Vec<String>,
    },
    /// Build the host and all plugin libraries.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Benchmarks printed side by side with their reference (`generate`, `logprobs`, `judge`).
    Bench {
        what: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Regenerate docs/cli.md from `longrl --help`.
    Docs,
    /// Validate and plan (`--dry-run`) or run a reproduction config from configs/.
    Repro {
        name: String,
        #[arg(long)]
        dry_run: bool,
    },
}

/// Where the demo's synthetic data lives (configs/tiny.toml reads it from here).
const DEMO_DATA_DIR: &str = "runs/tiny-data";
/// `longrl data synth` arguments of the demo data (see configs/tiny.toml for why these): SFT traces
/// on 128-token prompts, RL and evaluation prompts of 128, 256 and 512 tokens, lookup and choice.
const DEMO_SYNTH_ARGS: &[&str] = &[
    "--seed",
    "0",
    "--train",
    "600",
    "--eval",
    "240",
    "--sft",
    "10000",
    "--sft-lengths",
    "128",
    "--lengths",
    "128,256,512",
    "--kinds",
    "lookup,choice",
];

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = repo_root();
    match cli.command {
        Chore::Setup { cuda } => setup::run_with(&root, setup::Options { cuda }),
        Chore::Test { args } => {
            setup::run(&root)?;
            browser::ensure_chromium();
            build(&root, false)?;
            let mut cmd = cargo(&root);
            cmd.args(["test", "--workspace"]).args(args);
            run(cmd)
        }
        Chore::Demo { run_dir, overrides } => {
            setup::run(&root)?;
            // The debug profile (dependencies optimised) shares its build with `cargo xtask test`;
            // libtorch does the heavy lifting, so a second, release build would only cost time.
            build(&root, false)?;
            let longrl = root.join("target/debug/longrl");
            let data = root.join(DEMO_DATA_DIR);
            // The data is made once per set of generator arguments: a stamp records them, so a
            // change of DEMO_SYNTH_ARGS regenerates instead of training on stale data.
            let stamp = data.join(".synth-args");
            let wanted = DEMO_SYNTH_ARGS.join(" ");
            let current = std::fs::read_to_string(&stamp).unwrap_or_default();
            if current != wanted || !data.join("train.parquet").exists() {
                let mut synth = Command::new(&longrl);
                synth.current_dir(&root).args(["data", "synth", "--out"]).arg(&data).args(DEMO_SYNTH_ARGS);
                run(synth)?;
                std::fs::write(&stamp, &wanted).with_context(|| format!("writing {}", stamp.display()))?;
            }
            let mut train = Command::new(&longrl);
            train.current_dir(&root).args(["train", "--config", "configs/tiny.toml"]);
            if let Some(dir) = &run_dir {
                train.arg("--run-dir").arg(dir);
            }
            let run_dir = run_dir.unwrap_or_else(|| root.join("runs/tiny"));
            // A second `cargo xtask demo` continues an interrupted run, or only re-prints the
            // report of a finished one; delete the run directory to start over.
            if run_dir.join("checkpoints").is_dir() {
                println!("{} holds a run: resuming it (delete the directory to start over)", run_dir.display());
                train.arg("--resume");
            }
            for o in overrides {
                train.args(["--set", &o]);
            }
            run(train)?;
            match std::fs::read_to_string(run_dir.join("report.md")) {
                Ok(text) => println!("\n{text}"),
                Err(_) => println!("(no report.md was written)"),
            }
            println!("run directory: {}", run_dir.display());
            println!(
                "These figures are one run of one seed; on a model this small RL varies from seed to seed. \
                 docs/results.md has the recipe over several seeds (`longrl sweep`), with the command that makes them."
            );
            Ok(())
        }
        Chore::Build { release } => {
            setup::run(&root)?;
            build(&root, release)
        }
        Chore::Bench { what, args } => {
            setup::run(&root)?;
            build(&root, true)?;
            let mut cmd = Command::new(setup::venv_python(&root));
            cmd.current_dir(&root).arg(root.join("xtask/bench").join(format!("{what}.py"))).args(args);
            let script = root.join("xtask/bench").join(format!("{what}.py"));
            if !script.exists() {
                bail!("unknown benchmark `{what}` (no {})", script.display());
            }
            run(cmd)
        }
        Chore::Docs => {
            setup::run(&root)?;
            build(&root, false)?;
            let mut cmd = cargo(&root);
            cmd.env("UPDATE_DOCS", "1").args(["test", "-p", "longrl-tests", "--test", "tidy", "cli_reference"]);
            run(cmd)
        }
        Chore::Repro { name, dry_run } => {
            setup::run(&root)?;
            let config = root.join("configs").join(format!("{name}.toml"));
            if !config.exists() {
                bail!("no reproduction config {}", config.display());
            }
            // A plan needs no optimised build: the dry run shares the debug build of `test`.
            build(&root, !dry_run)?;
            let profile = if dry_run { "debug" } else { "release" };
            let mut cmd = Command::new(root.join("target").join(profile).join("longrl"));
            cmd.current_dir(&root).args(["train", "--config"]).arg(&config);
            if dry_run {
                cmd.arg("--dry-run");
            }
            run(cmd)
        }
    }
}

/// Host and every plugin cdylib (tests load the libraries from target/<profile>/).
fn build(root: &Path, release: bool) -> Result<()> {
    let mut cmd = cargo(root);
    cmd.args(["build", "--workspace", "--lib", "--bins"]);
    if release {
        cmd.arg("--release");
    }
    run(cmd)
}

fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

fn run(mut cmd: Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{:?} failed ({status})", cmd.get_program());
    }
    Ok(())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the repository").to_path_buf()
}
