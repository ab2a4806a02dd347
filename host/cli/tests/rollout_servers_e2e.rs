//! `longrl train` with `[rollout] backend = "vllm"` against `longrl serve --weight-transfer`, both
//! real binaries on CPU with a tiny model: the trainer draws every RL rollout from the server and
//! pushes its weights to it before the first step and after every step. Afterwards the server holds
//! exactly the final checkpoint's weights (same bytes, same greedy completion), the weight version
//! advanced once per step, and the server's log-probs match the trainer's (same weights, same
//! sampling distribution: the mismatch metrics are ~0).
//!
//! Needs the plugin libraries beside the binary (`cargo xtask test`, or `cargo build -p
//! longrl-policy-qwen -p longrl-algorithm-grpo -p longrl-curriculum-phased -p longrl-sampler-uniform
//! -p longrl-reward-rule`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use longrl_metrics::read_metrics;
use serde_json::{Value, json};

const PLUGINS: &[&str] = &[
    "longrl-policy-qwen",
    "longrl-algorithm-grpo",
    "longrl-curriculum-phased",
    "longrl-sampler-uniform",
    "longrl-reward-rule",
];
const STEPS: u64 = 3;

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_longrl"))
}

fn check_plugins_are_built() {
    let dir = binary().parent().unwrap().to_path_buf();
    for name in PLUGINS {
        let file = dir.join(format!("lib{}.{}", name.replace('-', "_"), std::env::consts::DLL_EXTENSION));
        assert!(file.exists(), "{} is missing: build the plugins beside the binary first", file.display());
    }
}

fn longrl(args: &[&str], log: &Path) -> Command {
    let mut command = Command::new(binary());
    command
        .args(args)
        .args(["--set", "device=\"cpu\"", "--set", "threads=1"])
        .env_remove("LONGRL_PLUGIN_PATH")
        .env("LONGRL_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    command
}

fn run(args: &[&str], log: &Path) -> String {
    let output = longrl(args, log).output().unwrap();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(40).collect();
    assert!(
        output.status.success(),
        "longrl {args:?} failed; log tail:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `longrl serve` in a child process, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(model: &Path, log: &Path) -> Server {
    let args = ["serve", "--port", "0", "--weight-transfer", "--set", "policy.config.dtype=\"float32\"", "--model"];
    let mut child = longrl(&[&args[..], &[model.to_str().unwrap()]].concat(), log).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|_| {
        panic!("longrl serve did not start; log:\n{}", std::fs::read_to_string(log).unwrap_or_default())
    });
    Server { child, url }
}

fn toml_str(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

fn post(url: &str, body: &Value) -> Value {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new().post(url).json(body).send().await.unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{url}: {status}: {answer}");
        answer
    })
}

fn get(url: &str) -> Value {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async { reqwest::get(url).await.unwrap().json().await.unwrap() })
}

#[test]
fn train_against_longrl_serve_with_weight_transfer() {
    check_plugins_are_built();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    let synth = [
        "data",
        "synth",
        "--seed",
        "0",
        "--train",
        "8",
        "--eval",
        "2",
        "--sft",
        "2",
        "--lengths",
        "128",
        "--vocab-size",
        "512",
        "--out",
        data.to_str().unwrap(),
    ];
    run(&synth, &dir.join("synth.log"));
    let model = dir.join("model");
    let tokenizer = data.join("tokenizer.json");
    let init = [
        "model",
        "init",
        "--arch",
        "qwen2",
        "--hidden",
        "32",
        "--layers",
        "2",
        "--heads",
        "4",
        "--kv-heads",
        "2",
        "--intermediate",
        "64",
        "--seed",
        "3",
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ];
    run(&init, &dir.join("init.log"));

    let server = serve(&model, &dir.join("serve.log"));
    let run_dir = dir.join("run");
    let config = format!(
        r#"
seed = 7
run_dir = {run_dir}
[policy]
name = "qwen"
[policy.config]
model = {model}
dtype = "float32"
[algorithm]
name = "grpo"
[curriculum]
name = "phased"
[[curriculum.config.phases]]
name = "only"
max_input_tokens = 1000
max_output_tokens = 12
steps = {STEPS}
[sampler]
name = "uniform"
[reward]
components = [{{ name = "rule", config = {{}} }}]
[data]
train_files = [{train}]
[train]
batch_prompts = 2
mini_batch_prompts = 2
dynamic_sampling = false
rollouts = 2
temperature = 1.0
top_p = 1.0
lr = 1e-2
micro_batch_size = 4
checkpoint_every = 1
keep_checkpoints = 1
tensorboard = false
progress_bar = false
[eval]
enabled = false
[rollout]
backend = "vllm"
url = "{url}"
timeout_secs = 300
[rollout.weight_sync]
dir = {weights}
"#,
        run_dir = toml_str(&run_dir),
        model = toml_str(&model),
        train = toml_str(&data.join("train.parquet")),
        url = server.url,
        weights = toml_str(&dir.join("weights")),
    );
    let config_file = dir.join("run.toml");
    std::fs::write(&config_file, config).unwrap();
    let started = Instant::now();
    run(&["--config", config_file.to_str().unwrap(), "train"], &dir.join("train.log"));
    eprintln!("training took {:.1} s", started.elapsed().as_secs_f64());

    // The weight version advanced once per step, and each step's rollouts came from the server with
    // the trainer's own weights: its log-probs equal the trainer's up to float rounding.
    let records = read_metrics(&run_dir).unwrap();
    let rl: Vec<_> = records.iter().filter(|r| r.stage == "rl").collect();
    assert_eq!(rl.len() as u64, STEPS);
    for (i, record) in rl.iter().enumerate() {
        let value = |key: &str| *record.values.get(key).unwrap_or_else(|| panic!("step {}: no {key}", record.step));
        assert_eq!(record.step, i as u64 + 1);
        assert_eq!(value("weights/version"), record.step as f64, "version of step {}", record.step);
        assert!(value("rollout_mismatch/tokens") > 0.0);
        assert!(value("rollout_mismatch/kl_k3") < 1e-4, "kl_k3 {}", value("rollout_mismatch/kl_k3"));
        assert!(value("rollout_mismatch/log_ratio_abs_max") < 1e-2, "{}", value("rollout_mismatch/log_ratio_abs_max"));
        assert!((value("rollout_mismatch/ratio_max") - 1.0).abs() < 1e-2);
    }
    assert_eq!(get(&format!("{}/weight_info", server.url))["weight_version"], json!(STEPS.to_string()));

    // The server holds the final checkpoint's weights: the published directory it loaded last has the
    // checkpoint's bytes, and its greedy completion is the checkpoint's.
    let checkpoint = run_dir.join(format!("checkpoints/step-{STEPS:06}/policy"));
    let published = dir.join(format!("weights/v{STEPS:06}"));
    let safetensors = |d: &Path| -> Vec<u8> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        files.iter().flat_map(|f| std::fs::read(f).unwrap()).collect()
    };
    assert!(!safetensors(&checkpoint).is_empty());
    assert!(
        safetensors(&checkpoint) == safetensors(&published),
        "the server loaded other weights than the checkpoint's"
    );
    let initial = safetensors(&model);
    assert!(initial != safetensors(&checkpoint), "training changed no weight");

    let prompt: Vec<u32> = (5..45).collect();
    let ids_file = dir.join("prompt.json");
    std::fs::write(&ids_file, serde_json::to_string(&prompt).unwrap()).unwrap();
    let local: Value = serde_json::from_str(&run(
        &[
            "generate",
            "--model",
            checkpoint.to_str().unwrap(),
            "--prompt-ids",
            ids_file.to_str().unwrap(),
            "--temperature",
            "0",
            "--max-new-tokens",
            "12",
            "--dtype",
            "float32",
            "--json",
        ],
        &dir.join("generate.log"),
    ))
    .unwrap();
    let served = post(
        &format!("{}/v1/completions", server.url),
        &json!({"prompt": prompt, "temperature": 0, "max_tokens": 12, "return_token_ids": true}),
    );
    assert_eq!(served["choices"][0]["token_ids"], local["generations"][0]["tokens"], "greedy completions differ");
}
