//! `longrl train` refuses what cannot run before it trains: impossible configurations (also under
//! `--dry-run`), the batch keys in their old place, and a `--resume` whose config changes what the
//! run trains (unless `--allow-config-change`, which records the changes).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn longrl(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_longrl"))
        .current_dir(repo_root())
        .args(["--config", "configs/tiny.toml", "--log-level", "warn"])
        .args(args)
        .output()
        .unwrap()
}

fn set(items: &[&str]) -> Vec<String> {
    items.iter().flat_map(|s| ["--set".to_string(), s.to_string()]).collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[test]
fn dry_run_refuses_impossible_configurations_naming_the_keys() {
    let mut args = set(&["algorithm.config.overlong_buffer=64", "train.rollouts=1", "train.dynamic_sampling=true"]);
    args.extend(["train".into(), "--dry-run".into()]);
    let output = longrl(&args);
    let e = stderr(&output);
    assert!(!output.status.success(), "{e}");
    assert!(e.contains("this configuration cannot run"), "{e}");
    assert!(e.contains("`algorithm.config.overlong_buffer` (64)") && e.contains("phase 0 (`short`)"), "{e}");
    assert!(e.contains("`train.dynamic_sampling` with `train.rollouts` = 1"), "{e}");

    let mut args = set(&["algorithm.config.mini_batch_prompts=4"]);
    args.extend(["train".into(), "--dry-run".into()]);
    let e = stderr(&longrl(&args));
    assert!(e.contains("`algorithm.config.mini_batch_prompts`") && e.contains("`train.mini_batch_prompts`"), "{e}");

    // The shipped config itself plans.
    let output = longrl(&["train".into(), "--dry-run".into()]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn resume_refuses_a_config_that_changes_the_training() {
    let run = tempfile::tempdir().unwrap();
    let existing = repo_root().join("Cargo.toml").display().to_string();
    let base = [
        format!("run_dir=\"{}\"", run.path().display()),
        format!("data.train_files=[\"{existing}\"]"),
        format!("data.sft_files=[\"{existing}\"]"),
        format!("data.eval_files=[\"{existing}\"]"),
    ];
    let base: Vec<&str> = base.iter().map(String::as_str).collect();
    let mut show = set(&base);
    show.extend(["config".into(), "show".into()]);
    let shown = longrl(&show);
    assert!(shown.status.success(), "{}", stderr(&shown));
    std::fs::write(run.path().join("config.toml"), &shown.stdout).unwrap();
    let step = run.path().join("checkpoints/step-000001");
    std::fs::create_dir_all(&step).unwrap();
    std::fs::write(step.join("trainer.json"), "{}").unwrap();

    let resume = |extra: &[&str], flags: &[&str]| {
        let mut args = set(&[base.as_slice(), extra].concat());
        args.extend(["train", "--resume"].iter().chain(flags).map(|s| s.to_string()));
        stderr(&longrl(&args))
    };
    let e = resume(&["train.lr=1e-3", "train.max_steps=5"], &[]);
    assert!(e.contains("--resume: this config changes what the run trains"), "{e}");
    assert!(e.contains("`train.lr`: ") && !e.contains("max_steps"), "{e}");
    assert!(e.contains("--allow-config-change"), "{e}");

    // A step cap is no change to what is trained: the run gets past the comparison (and stops later,
    // at the tiny policy's missing tokenizer).
    let e = resume(&["train.max_steps=5"], &[]);
    assert!(!e.contains("changes what the run trains"), "{e}");
    assert!(!run.path().join("config-changes.jsonl").exists());

    let e = resume(&["train.lr=1e-3"], &["--allow-config-change"]);
    assert!(!e.contains("changes what the run trains"), "{e}");
    let record = std::fs::read_to_string(run.path().join("config-changes.jsonl")).unwrap();
    assert!(record.contains("\"key\":\"train.lr\"") && record.contains("step-000001"), "{record}");
}
