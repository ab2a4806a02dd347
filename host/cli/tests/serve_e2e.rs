//! End to end on 127.0.0.1: the real `longrl serve` binary over the `qwen` policy plugin with a tiny
//! random model, asked by the `judge` reward plugin and by the official `openai` Python client.
//!
//! Needs the plugin libraries in target/<profile>/ (`cargo xtask test`, or `cargo build -p
//! longrl-policy-qwen -p longrl-reward-judge` first) and the venv (`cargo xtask setup`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use longrl_core::api::{ComponentContext, Reward, RewardInput};
use longrl_plugins::PluginSet;
use serde_json::{Value, json};

const SERVED_NAME: &str = "tiny-judge";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn python() -> PathBuf {
    repo_root().join(".venv/bin/python")
}

/// A tiny Qwen2 (hidden 32, 2 layers) with a BPE tokenizer and the ChatML template, saved by
/// transformers. Made once per test binary.
fn tiny_model() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("serve-tiny-{}", std::process::id()));
        let output = Command::new(python()).arg("-c").arg(MAKE_MODEL).arg(&dir).output().expect("run the venv python");
        assert!(output.status.success(), "making the tiny model failed: {}", String::from_utf8_lossy(&output.stderr));
        dir
    })
}

const MAKE_MODEL: &str = r#"
import json, os, sys
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import Qwen2Config, Qwen2ForCausalLM
torch.set_num_threads(1)
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tok.train_from_iterator(["Problem: what is the capital? Answer 1: Paris. Answer 2: London. [[YES]] [[NO]]"] * 20, trainer)
tok.save(os.path.join(out, "tokenizer.json"))
chatml = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'"
          " + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "chat_template": chatml, "eos_token": "<|im_end|>",
           "pad_token": "<|endoftext|>", "bos_token": None, "model_max_length": 2048},
          open(os.path.join(out, "tokenizer_config.json"), "w"))
eos = tok.token_to_id("<|im_end|>")
torch.manual_seed(0)
config = Qwen2Config(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, rope_theta=10000.0,
                     eos_token_id=eos, bos_token_id=None, pad_token_id=None, tie_word_embeddings=True)
Qwen2ForCausalLM(config).float().save_pretrained(out)
"#;

/// A `longrl serve` child process; killed when dropped.
struct Served {
    child: Child,
    base: String,
}

impl Served {
    fn start() -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_longrl"))
            .args(["serve", "--port", "0", "--served-model-name", SERVED_NAME, "--set", "device=cpu", "--model"])
            .arg(tiny_model())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start longrl serve");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = sender.send(addr.trim().to_string());
                }
            }
        });
        match receiver.recv_timeout(Duration::from_secs(120)) {
            Ok(base) => Served { child, base },
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!("longrl serve printed no `listening on` line (exit: {status:?}); are the plugins built?");
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill();
    }
}

fn judge(base: &str, run_dir: &Path) -> (PluginSet, Box<dyn Reward>) {
    // The libraries beside the binary (target/<profile>/), not the copies in deps/ as well.
    let dir = Path::new(env!("CARGO_BIN_EXE_longrl")).parent().unwrap().to_path_buf();
    let plugins = PluginSet::load(&[dir]).unwrap();
    let config = json!({
        "url": format!("{base}/v1"), "model": SERVED_NAME, "max_in_flight": 4, "max_tokens": 8, "seed": 42,
        "timeout_secs": 60.0, "max_retries": 1, "backoff_initial_ms": 20, "backoff_max_ms": 100,
        "circuit_breaker_failures": 2,
    });
    let ctx = ComponentContext { run_dir: Some(run_dir.to_path_buf()), seed: 0, device: "cpu".into() };
    let reward = plugins.reward("judge", &config, &ctx).expect("the judge plugin (cargo build -p longrl-reward-judge)");
    (plugins, reward)
}

fn items(range: std::ops::Range<usize>) -> Vec<RewardInput> {
    range
        .map(|i| RewardInput {
            response: format!("<think>hmm</think>Therefore, the answer is Paris {i}."),
            ground_truth: "London".into(),
            data_source: "musique_v1".into(),
            prompt: format!("<text>\ndoc\n</text>\n\nWhat is the capital {i}?\n\nFormat your response as follows: x"),
            question: String::new(),
        })
        .collect()
}

#[test]
fn the_judge_plugin_asks_a_real_longrl_serve_and_leaves_items_unscored_when_it_dies() {
    let mut served = Served::start();
    let run_dir = tempfile::tempdir().unwrap();
    let (_plugins, judge) = judge(&served.base, run_dir.path());

    let scores = judge.score(&items(0..6)).unwrap();
    for score in &scores {
        // A random model rarely says [[YES]]/[[NO]], but every item got a verdict from the server.
        assert!(["judge.yes", "judge.no", "judge.unparsed"].contains(&score.decided_by.as_str()), "{score:?}");
        assert_eq!(score.details["prediction"].as_str().unwrap().split(' ').next(), Some("Paris"));
    }
    let metrics = judge.take_metrics().unwrap();
    assert_eq!(metrics["judge_calls"], 6.0);
    assert_eq!(metrics["judge_unscored"], 0.0);
    assert_eq!(metrics["judge_yes"] + metrics["judge_no"] + metrics["judge_unparsed"], 6.0);
    let audit = std::fs::read_to_string(run_dir.path().join("judge_audit.jsonl")).unwrap();
    let lines: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 6);
    assert!(lines.iter().all(|l| l["rationale"].is_string() && l["model"] == SERVED_NAME));
    assert_eq!(lines[0]["problem"], "What is the capital 0?");

    // The server dies: new questions are unscored (NaN, never a made-up 0), counted, and the call
    // returns promptly.
    served.kill();
    let started = Instant::now();
    let scores = judge.score(&items(6..16)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(scores.iter().all(|s| s.decided_by == "judge.unscored" && s.score.is_nan()), "{scores:?}");
    let metrics = judge.take_metrics().unwrap();
    assert_eq!(metrics["judge_unscored"], 10.0);
    assert!(metrics["judge_circuit_open"] > 0.0, "{metrics:?}");
    // Cached verdicts still answer without the server.
    let cached = judge.score(&items(0..2)).unwrap();
    assert!(cached.iter().all(|s| s.decided_by != "judge.unscored" && s.details["cached"] == true));
}

const OPENAI_CLIENT: &str = r#"
import json, sys
import openai
client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused", max_retries=0, timeout=120)
name = sys.argv[2]
models = client.models.list()
assert [m.id for m in models.data] == [name], models
chat = client.chat.completions.create(model=name, messages=[{"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the capital?"}], temperature=0, max_tokens=6, seed=1, n=2)
assert chat.object == "chat.completion" and len(chat.choices) == 2, chat
assert chat.choices[0].message.role == "assistant"
assert chat.choices[0].finish_reason in ("stop", "length")
assert chat.choices[0].message.content == chat.choices[1].message.content, "greedy samples agree"
assert chat.usage.prompt_tokens > 0 and chat.usage.completion_tokens > 0
again = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}], temperature=0.8,
    top_p=0.9, max_tokens=5, seed=7, stop=["\n"])
comp = client.completions.create(model=name, prompt=["Answer 1:", "Problem:"], max_tokens=4, temperature=0.7, seed=3)
assert comp.object == "text_completion" and [c.index for c in comp.choices] == [0, 1], comp
assert comp.usage.completion_tokens <= 8
try:
    client.chat.completions.create(model=name, messages=[{"role": "user", "content": "x"}], temperature=5)
    raise SystemExit("temperature=5 was accepted")
except openai.BadRequestError as e:
    body = e.body.get("error", e.body) if isinstance(e.body, dict) else {}
    assert e.status_code == 400 and body["param"] == "temperature", e.body
try:
    client.completions.create(model="no-such-model", prompt="x")
    raise SystemExit("an unknown model was accepted")
except openai.NotFoundError as e:
    body = e.body.get("error", e.body) if isinstance(e.body, dict) else {}
    assert body["code"] == "model_not_found", e.body
print(json.dumps({"chat": chat.choices[0].message.content, "completion": comp.choices[0].text}))
"#;

#[test]
fn the_official_openai_client_talks_to_longrl_serve() {
    let served = Served::start();
    let output =
        Command::new(python()).arg("-c").arg(OPENAI_CLIENT).arg(&served.base).arg(SERVED_NAME).output().unwrap();
    assert!(
        output.status.success(),
        "openai client failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(output.stdout.trim_ascii()).unwrap();
    assert!(report["chat"].is_string() && report["completion"].is_string(), "{report}");
}
