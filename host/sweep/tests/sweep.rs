//! A real sweep, cut down: configs/tiny.toml with a 64-wide model, 2 SFT steps and two 1-step RL
//! phases on `longrl data synth` data made per seed, 2 seeds x 2 variants, through the real `longrl`
//! binary. Variant `flaky` points seed 1 at an evaluation file that does not exist, so that run
//! fails. Checks: the tables' numbers equal those computed here from the run directories; the
//! failed run is reported and left out; a second invocation runs nothing that finished.
//!
//! Needs `target/<profile>/longrl` and the plugin libraries beside it (`cargo xtask test` builds
//! them, or `cargo build -p longrl -p longrl-policy-qwen -p longrl-algorithm-grpo
//! -p longrl-curriculum-phased -p longrl-sampler-retrospective -p longrl-reward-rule`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use longrl_sweep::{Inputs, SweepArgs, Variant};
use serde_json::Value;

const PLUGINS: &[&str] = &[
    "longrl_policy_qwen",
    "longrl_algorithm_grpo",
    "longrl_curriculum_phased",
    "longrl_sampler_retrospective",
    "longrl_reward_rule",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// `target/<profile>/longrl`, beside this test's `deps/` directory.
fn longrl_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let binary = dir.join("longrl");
    let mut missing: Vec<String> = PLUGINS
        .iter()
        .map(|p| dir.join(format!("lib{p}.{}", std::env::consts::DLL_EXTENSION)))
        .chain([binary.clone()])
        .filter(|f| !f.exists())
        .map(|f| f.display().to_string())
        .collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "missing {missing:?}: build the binary and the plugins first (`cargo build -p longrl -p {}`)",
        PLUGINS.iter().map(|p| p.replace('_', "-")).collect::<Vec<_>>().join(" -p ")
    );
    binary
}

fn overrides() -> Vec<String> {
    [
        "device=\"cpu\"",
        "threads=1",
        "policy.config.init.seed={seed}",
        "policy.config.init.tokenizer=\"{data}/tokenizer.json\"",
        "policy.config.init.hidden=64",
        "policy.config.init.intermediate=128",
        "sft.epochs=1",
        "sft.batch_size=4",
        "sft.micro_batch_size=4",
        "sft.warmup_steps=1",
        "train.mini_batch_prompts=2",
        "algorithm.config.overlong_buffer=4",
        "train.batch_prompts=2",
        "train.rollouts=2",
        "train.micro_batch_size=4",
        "train.progress_bar=false",
        "eval.max_output_tokens=8",
        "eval.batch_prompts=8",
        "curriculum.config.phases=[{name=\"short\",max_input_tokens=190,max_output_tokens=8,steps=1},\
         {name=\"long\",max_input_tokens=400,max_output_tokens=8,steps=1}]",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn sweep_args(out: &Path, extra: &Path) -> SweepArgs {
    let flaky = format!("flaky:train.lr=1e-3,data.eval_files=[\"{}/eval-{{seed}}.parquet\"]", extra.display());
    SweepArgs {
        seeds: vec![0, 1],
        variants: vec!["base".parse().unwrap(), flaky.parse::<Variant>().unwrap()],
        out: out.to_path_buf(),
        jobs: 2,
        synth: Some("--train 16 --eval 8 --sft 8 --lengths 128,256 --kinds lookup,choice --vocab-size 512".into()),
        report_only: false,
    }
}

/// (stage, slice) -> accuracy in percent, read straight from a run's `eval/stages.jsonl`.
fn stage_values(run_dir: &Path) -> BTreeMap<(String, String), f64> {
    let text = std::fs::read_to_string(run_dir.join("eval/stages.jsonl")).unwrap();
    let mut out = BTreeMap::new();
    let mut last = None;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let stage = v["stage"].as_str().unwrap().to_string();
        let mut slices = vec![("all".to_string(), v["overall"]["accuracy"].as_f64().unwrap())];
        for (group, prefix) in [("by_bucket", "bucket"), ("by_kind", "kind")] {
            for (k, c) in v[group].as_object().unwrap() {
                slices.push((format!("{prefix}={k}"), c["accuracy"].as_f64().unwrap()));
            }
        }
        for (slice, acc) in &slices {
            out.insert((stage.clone(), slice.clone()), 100.0 * acc);
        }
        last = Some(slices);
    }
    for (slice, acc) in last.unwrap() {
        out.insert(("final".to_string(), slice), 100.0 * acc);
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn sweep_tables_resume_and_failures() {
    let longrl = longrl_binary();
    let dir = tempfile::tempdir().unwrap();
    let (out, extra) = (dir.path().join("sweep"), dir.path().join("extra"));
    let inputs = Inputs { longrl, config: Some(repo_root().join("configs/tiny.toml")), overrides: overrides() };
    // Seed 0's evaluation file is a link to the data the sweep makes for it; seed 1's does not exist.
    std::fs::create_dir_all(&extra).unwrap();
    std::os::unix::fs::symlink(out.join("data/seed-0/eval.parquet"), extra.join("eval-0.parquet")).unwrap();
    let args = sweep_args(&out, &extra);
    let first = longrl_sweep::run(&args, &inputs).unwrap();
    for t in &first.summary.wall_times {
        eprintln!("sweep cell: variant {} seed {}: {:.1} s", t.variant, t.seed, t.wall_s);
    }

    // The failed run: reported with its reason, counted nowhere.
    assert_eq!(first.failed.len(), 1, "{:?}", first.failed);
    assert_eq!((first.failed[0].variant.as_str(), first.failed[0].seed), ("flaky", 1));
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&first.results_json).unwrap()).unwrap();
    assert!(summary["failed"][0]["error"].as_str().unwrap().contains("eval-1.parquet"), "{}", summary["failed"]);
    let markdown = std::fs::read_to_string(&first.results_md).unwrap();
    eprintln!("{markdown}");
    assert!(markdown.contains("## Failed runs (left out of every number above)"), "{markdown}");
    assert!(markdown.contains("## Variant `flaky`: 1 of 2 seeds finished"), "{markdown}");
    // Each finished run's web page is linked, relative to the sweep's directory.
    assert!(
        markdown
            .contains("Run reports: [seed 0](runs/base/seed-0/report.html), [seed 1](runs/base/seed-1/report.html)."),
        "{markdown}"
    );
    assert!(out.join("runs/base/seed-1/report.html").exists());

    // Every number of the tables, from the run directories.
    let run = |variant: &str, seed: u64| stage_values(&out.join("runs").join(variant).join(format!("seed-{seed}")));
    let values: BTreeMap<(&str, u64), _> =
        [("base", 0), ("base", 1), ("flaky", 0)].into_iter().map(|(v, s)| ((v, s), run(v, s))).collect();
    let mut checked = 0;
    for variant in summary["variants"].as_array().unwrap() {
        let name = variant["name"].as_str().unwrap();
        let seeds: Vec<u64> =
            variant["seeds_finished"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).collect();
        assert_eq!(seeds, if name == "base" { vec![0, 1] } else { vec![0] }, "{name}");
        for row in variant["rows"].as_array().unwrap() {
            let key = (row["stage"].as_str().unwrap().to_string(), row["slice"].as_str().unwrap().to_string());
            let expected: Vec<f64> = seeds.iter().map(|s| values[&(name, *s)][&key]).collect();
            let mean = expected.iter().sum::<f64>() / expected.len() as f64;
            assert!(close(row["estimate"]["mean"].as_f64().unwrap(), mean), "{name} {key:?}: {row}");
            for (s, x) in seeds.iter().zip(&expected) {
                assert!(close(row["per_seed"][s.to_string()].as_f64().unwrap(), *x), "{name} {key:?} seed {s}");
            }
            assert_eq!(row["per_seed"].as_object().unwrap().len(), seeds.len(), "failed seeds are left out");
            checked += 1;
        }
        for row in variant["gain_over_sft"].as_array().unwrap() {
            let slice = row["slice"].as_str().unwrap().to_string();
            for s in &seeds {
                let v = &values[&(name, *s)];
                let gain = v[&("final".into(), slice.clone())] - v[&("sft".into(), slice.clone())];
                assert!(close(row["per_seed"][s.to_string()].as_f64().unwrap(), gain), "{name} gain {slice}");
            }
        }
    }
    assert!(checked >= 3 * 3 * 2, "stages x slices x variants: only {checked} rows");
    let paired = &summary["paired"][0];
    assert_eq!((paired["variant"].as_str(), paired["baseline"].as_str()), (Some("flaky"), Some("base")));
    assert_eq!(paired["seeds"], serde_json::json!([0]));
    for row in paired["rows"].as_array().unwrap() {
        let key = (row["stage"].as_str().unwrap().to_string(), row["slice"].as_str().unwrap().to_string());
        let d = values[&("flaky", 0)][&key] - values[&("base", 0)][&key];
        assert!(close(row["estimate"]["mean"].as_f64().unwrap(), d), "paired {key:?}");
    }
    for png in &first.plots {
        assert_eq!(&std::fs::read(png).unwrap()[1..4], b"PNG");
    }
    assert!(first.plots.iter().any(|p| p.ends_with("reward.png")), "{:?}", first.plots);

    // A second invocation: finished runs are skipped (their files untouched), the failed one is tried again.
    let finished = out.join("runs/base/seed-1");
    let before = (mtime(&finished.join("sweep-run.json")), mtime(&finished.join("metrics.jsonl")));
    let failed_status = out.join("runs/flaky/seed-1/sweep-run.json");
    let failed_before = mtime(&failed_status);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = longrl_sweep::run(&args, &inputs).unwrap();
    assert_eq!(before, (mtime(&finished.join("sweep-run.json")), mtime(&finished.join("metrics.jsonl"))));
    assert!(mtime(&failed_status) > failed_before, "the failed run is tried again");
    assert_eq!(second.failed.len(), 1);
    assert_eq!(second.summary.variants[0].rows, first.summary.variants[0].rows);
}
