//! The whole recipe end to end with the real plugins and the real `longrl` binary, cut down with
//! `--set` overrides so it runs in about a minute on two CPU cores: `longrl data synth` makes a
//! small corpus, then `longrl train --config configs/tiny.toml` runs the SFT warm-up, the stage
//! evaluation, both curriculum phases and their evaluations, and writes `report.md`, the PNG
//! curves, `metrics.jsonl`, TensorBoard events and checkpoints. A second run is killed (SIGKILL)
//! twice, after a checkpoint at an SFT epoch boundary and after the one at the end of the first
//! phase, and resumed with `--resume` each time: its metrics and stage evaluations equal the
//! uninterrupted run's, timing values aside.
//!
//! Needs the plugin libraries beside the binary in target/<profile>/ (`cargo xtask test` builds
//! them, or `cargo build -p longrl-policy-qwen -p longrl-algorithm-grpo -p longrl-curriculum-phased
//! -p longrl-sampler-retrospective -p longrl-reward-rule`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use longrl_eval::stages::read_stages;
use longrl_metrics::{Record, read_metrics, without_timing};
use longrl_train::checkpoint;

/// Plugins the tiny config names, by crate.
const PLUGINS: &[&str] = &[
    "longrl-policy-qwen",
    "longrl-algorithm-grpo",
    "longrl-curriculum-phased",
    "longrl-sampler-retrospective",
    "longrl-reward-rule",
];

/// SFT: 8 traces in batches of 4 for 2 epochs. RL: 2 steps in each of the two phases.
const SFT_STEPS: u64 = 4;
const PHASE_STEPS: u64 = 2;
const TOTAL_STEPS: u64 = SFT_STEPS + 2 * PHASE_STEPS;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_longrl"))
}

fn check_plugins_are_built() {
    let dir = binary().parent().unwrap().to_path_buf();
    for name in PLUGINS {
        let file = dir.join(format!("lib{}.{}", name.replace('-', "_"), std::env::consts::DLL_EXTENSION));
        assert!(
            file.exists(),
            "{} is missing: build the plugins beside the binary first (`cargo xtask test`, or `cargo build {}`)",
            file.display(),
            PLUGINS.iter().map(|p| format!("-p {p}")).collect::<Vec<_>>().join(" ")
        );
    }
}

/// `longrl ARGS` from the repository root (where `configs/tiny.toml` lives), logs into `log`.
fn longrl(args: &[String], log: &Path) -> Command {
    let mut command = Command::new(binary());
    command
        .current_dir(repo_root())
        .args(args)
        .env_remove("LONGRL_PLUGIN_PATH")
        .env("LONGRL_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    command
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn succeed(mut command: Command, log: &Path, what: &str) -> String {
    let Output { status, stdout, .. } = command.output().unwrap();
    assert!(status.success(), "{what} failed ({status}); log tail:\n{}", tail(log));
    String::from_utf8_lossy(&stdout).into_owned()
}

/// A TOML string literal.
fn quoted(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// `extra.prompt_tokens` of every row of a synth JSONL file, by `extra.bucket`.
fn tokens_by_bucket(file: &Path) -> Vec<(u64, u64)> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let extra = &row["extra_info"];
            (extra["bucket"].as_u64().unwrap(), extra["prompt_tokens"].as_u64().unwrap())
        })
        .collect()
}

/// A small corpus, once per test binary: 24 RL prompts and 12 evaluation prompts of about 128 and
/// 256 tokens, 8 SFT traces, a 512-token BPE vocabulary.
fn synth(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    let args: Vec<String> = [
        "data",
        "synth",
        "--seed",
        "0",
        "--train",
        "24",
        "--eval",
        "12",
        "--sft",
        "8",
        "--lengths",
        "128,256",
        "--vocab-size",
        "512",
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([data.display().to_string()])
    .collect();
    let log = dir.join("synth.log");
    succeed(longrl(&args, &log), &log, "longrl data synth");
    for file in ["train.parquet", "eval.parquet", "sft.jsonl", "tokenizer.json", "tokenizer_config.json"] {
        assert!(data.join(file).exists(), "synth wrote no {file}");
    }
    data
}

/// `longrl train --config configs/tiny.toml` with every stage cut to a few steps.
fn train_args(data: &Path, run_dir: &Path, resume: bool) -> Vec<String> {
    // Phase 0 takes the ~128-token prompts, phase 1 the ~256-token ones (the split is read from the data).
    let lengths = tokens_by_bucket(&data.join("train.jsonl"));
    let short_max = lengths.iter().filter(|(b, _)| *b == 128).map(|(_, t)| *t).max().unwrap();
    let long_min = lengths.iter().filter(|(b, _)| *b == 256).map(|(_, t)| *t).min().unwrap();
    let long_max = lengths.iter().map(|(_, t)| *t).max().unwrap();
    assert!(short_max < long_min, "the two buckets overlap: {lengths:?}");
    let mut sets = vec![
        format!("run_dir={}", quoted(run_dir)),
        "device=\"cpu\"".into(),
        format!("policy.config.init.tokenizer={}", quoted(&data.join("tokenizer.json"))),
        // A model this small whatever size the demo trains.
        "policy.config.init.hidden=64".into(),
        "policy.config.init.layers=2".into(),
        "policy.config.init.heads=4".into(),
        "policy.config.init.kv_heads=2".into(),
        "policy.config.init.intermediate=128".into(),
        format!("data.train_files=[{}]", quoted(&data.join("train.parquet"))),
        format!("data.sft_files=[{}]", quoted(&data.join("sft.jsonl"))),
        format!("data.eval_files=[{}]", quoted(&data.join("eval.parquet"))),
        "sft.enabled=true".into(),
        "sft.epochs=2".into(),
        "sft.batch_size=4".into(),
        "sft.micro_batch_size=4".into(),
        "sft.warmup_steps=1".into(),
        "train.mini_batch_prompts=2".into(),
        "algorithm.config.overlong_buffer=4".into(),
        // An untrained model scores 0 on every rollout: dynamic sampling would find no group to keep.
        "train.dynamic_sampling=false".into(),
        "sampler.name=\"retrospective\"".into(),
        "train.enabled=true".into(),
        "train.batch_prompts=2".into(),
        "train.gen_batch_prompts=0".into(),
        "train.rollouts=2".into(),
        "train.micro_batch_size=4".into(),
        "train.max_steps=0".into(),
        "train.checkpoint_every=1".into(),
        "train.keep_checkpoints=2".into(),
        "train.tensorboard=true".into(),
        "train.progress_bar=false".into(),
        "eval.enabled=true".into(),
        "eval.benchmarks=[]".into(),
        "eval.samples=1".into(),
        "eval.temperature=0.0".into(),
        "eval.max_output_tokens=16".into(),
        "eval.batch_prompts=12".into(),
        "data.cache_lengths=true".into(),
    ];
    for (k, max_input) in [(0, (short_max + long_min) / 2), (1, long_max + 64)] {
        sets.push(format!("curriculum.config.phases.{k}.max_input_tokens={max_input}"));
        sets.push(format!("curriculum.config.phases.{k}.max_output_tokens=16"));
        sets.push(format!("curriculum.config.phases.{k}.steps={PHASE_STEPS}"));
    }
    let mut args: Vec<String> = vec!["train".into(), "--config".into(), "configs/tiny.toml".into()];
    for s in sets {
        args.extend(["--set".into(), s]);
    }
    if resume {
        args.push("--resume".into());
    }
    args
}

/// Start a run and SIGKILL it as soon as the checkpoint of `step` is complete on disk.
fn kill_after_checkpoint(mut child: Child, run_dir: &Path, step: u64, log: &Path) {
    let marker =
        checkpoint::checkpoints_dir(run_dir).join(checkpoint::name_for(step)).join(checkpoint::COMPLETE_MARKER);
    let started = Instant::now();
    while !marker.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before checkpoint {step}; log tail:\n{}", tail(log));
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no checkpoint {step} after 10 minutes; log tail:\n{}",
            tail(log)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run was killed, not finished");
}

#[test]
fn tiny_recipe_runs_end_to_end_and_a_killed_run_resumes_to_the_same_metrics() {
    check_plugins_are_built();
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(tmp.path());

    // The uninterrupted run.
    let straight = tmp.path().join("straight");
    let log = tmp.path().join("straight.log");
    let started = Instant::now();
    let stdout = succeed(longrl(&train_args(&data, &straight, false), &log), &log, "longrl train");
    eprintln!("uninterrupted run: {:.1} s", started.elapsed().as_secs_f64());
    assert!(stdout.contains("training finished"), "{stdout}");

    // Metrics: every SFT step and both phases' steps, with finite losses.
    let records = read_metrics(&straight).unwrap();
    let steps: Vec<u64> = records.iter().map(|r| r.step).collect();
    assert_eq!(steps, (1..=TOTAL_STEPS).collect::<Vec<_>>(), "one line per step");
    let sft: Vec<&Record> = records.iter().filter(|r| r.stage == "sft").collect();
    assert_eq!(sft.len() as u64, SFT_STEPS);
    for r in &sft {
        assert!(r.values.get("loss").is_some_and(|l| l.is_finite() && *l > 0.0), "SFT step {}: {:?}", r.step, r.values);
    }
    for (phase, name) in [(0, "short"), (1, "long")] {
        let rl: Vec<&Record> = records.iter().filter(|r| r.stage == "rl" && r.phase == Some(phase)).collect();
        assert_eq!(rl.len() as u64, PHASE_STEPS, "phase {phase}");
        for r in rl {
            assert_eq!(r.phase_name.as_deref(), Some(name));
            for key in ["actor/loss", "actor/grad_norm", "reward/mean", "response/length_mean", "lr"] {
                assert!(
                    r.values.get(key).is_some_and(|v| v.is_finite()),
                    "step {}: no finite {key} in {:?}",
                    r.step,
                    r.values
                );
            }
        }
    }

    // Evaluation after each stage, by length bucket and by question kind, in the report.
    let stages = read_stages(&straight).unwrap();
    assert_eq!(stages.iter().map(|s| s.stage.as_str()).collect::<Vec<_>>(), ["sft", "short", "long"]);
    for s in &stages {
        assert_eq!(s.overall.n, 12, "{s:?}");
        assert_eq!(s.by_bucket.keys().collect::<Vec<_>>(), ["128", "256"], "{s:?}");
        assert_eq!(s.by_kind.values().map(|c| c.n).sum::<usize>(), 12, "{s:?}");
        assert_eq!(s.questions.len(), 12, "per-question scores, for paired comparisons: {s:?}");
    }
    let report = std::fs::read_to_string(straight.join("report.md")).unwrap();
    for needle in ["### By length bucket", "### By question kind", "| after | 128 | 256 | all |", "## Training curves"]
    {
        assert!(report.contains(needle), "report.md lacks `{needle}`:\n{report}");
    }
    // The longest bucket after the last phase against after SFT, paired over the same questions, and
    // how many seeds stand behind the figures.
    for needle in [
        "### Longest bucket (256 tokens): after `long` against after `sft`",
        "paired over the same 4 questions",
        "Seeds: these figures are one run (seed 0), so one seed.",
    ] {
        assert!(report.contains(needle), "report.md lacks `{needle}`:\n{report}");
    }
    for table in report.split("### ").skip(1).take(2) {
        for stage in ["sft", "short", "long"] {
            assert!(table.contains(&format!("\n| {stage} | ")), "a row for {stage} in:\n{table}");
        }
    }
    let plots: Vec<String> = std::fs::read_dir(straight.join("plots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(plots.iter().any(|p| p.ends_with(".png")), "{plots:?}");
    for png in plots.iter().filter(|p| p.ends_with(".png")) {
        assert!(report.contains(&format!("(plots/{png})")), "report.md links {png}");
        assert!(std::fs::read(straight.join("plots").join(png)).unwrap().starts_with(b"\x89PNG"), "{png}");
    }
    let events: Vec<PathBuf> =
        std::fs::read_dir(straight.join("tensorboard")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(
        events.iter().any(|p| p.file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents")),
        "{events:?}"
    );

    // Checkpoints: the last two, each an HF-layout policy plus the trainer's state.
    let kept: Vec<u64> = checkpoint::list(&straight).unwrap().into_iter().map(|(s, _)| s).collect();
    assert_eq!(kept, [TOTAL_STEPS - 1, TOTAL_STEPS]);
    let last = checkpoint::latest(&straight).unwrap().unwrap();
    for file in [
        "policy/config.json",
        "policy/tokenizer.json",
        "policy/tokenizer_config.json",
        "policy/generation_config.json",
        "trainer.json",
        "optimizer.safetensors",
        "algorithm.state",
        "curriculum.state",
        "sampler.state",
    ] {
        assert!(last.join(file).exists(), "{} lacks {file}", last.display());
    }
    let weights = std::fs::read_dir(last.join("policy"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".safetensors"))
        .count();
    assert!(weights >= 1, "no safetensors in {}", last.join("policy").display());
    let counters: serde_json::Value =
        serde_json::from_slice(&std::fs::read(last.join("trainer.json")).unwrap()).unwrap();
    assert_eq!(
        (counters["global_step"].as_u64(), counters["rl_done"].as_bool()),
        (Some(TOTAL_STEPS), Some(true)),
        "{counters}"
    );
    // Prompt lengths were measured once and cached in the run directory.
    let cached = std::fs::read_dir(straight.join("cache"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("lengths-"))
        .count();
    assert_eq!(cached, 1);

    // The same run, killed twice and resumed: after the checkpoint that ends SFT's first epoch, and
    // after the one at the end of phase 0 (its evaluation pending or under way).
    let resumed = tmp.path().join("resumed");
    for (k, kill_at) in [SFT_STEPS / 2, SFT_STEPS + PHASE_STEPS].into_iter().enumerate() {
        let log = tmp.path().join(format!("killed-{k}.log"));
        let child = longrl(&train_args(&data, &resumed, k > 0), &log).spawn().unwrap();
        kill_after_checkpoint(child, &resumed, kill_at, &log);
    }
    let log = tmp.path().join("resumed.log");
    let stdout = succeed(longrl(&train_args(&data, &resumed, true), &log), &log, "longrl train --resume");
    assert!(stdout.contains("training finished"), "{stdout}");
    let resumed_log = std::fs::read_to_string(&log).unwrap();
    assert!(resumed_log.contains("resumed") && resumed_log.contains("prompt lengths from cache"), "{}", tail(&log));

    let expected = without_timing(records);
    let got = without_timing(read_metrics(&resumed).unwrap());
    assert_eq!(got.len(), expected.len(), "steps logged");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e, "step {}", e.step);
    }
    assert_eq!(read_stages(&resumed).unwrap(), stages, "stage evaluations");
}
