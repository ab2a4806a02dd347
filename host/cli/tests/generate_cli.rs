//! `longrl model init` and `longrl generate` as a user runs them: a random model in HF layout, then
//! generation from it with the JSON output, seeded sampling, greedy decoding, chat prompts, stop
//! conditions and the errors of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn qwen_plugin() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_BIN_EXE_longrl")).parent().unwrap().to_path_buf();
    let path = dir.join(format!("liblongrl_policy_qwen.{}", std::env::consts::DLL_EXTENSION));
    assert!(path.exists(), "{} is missing: run `cargo build -p longrl-policy-qwen` first", path.display());
    path
}

fn longrl(args: &[&str]) -> Output {
    let paths = format!("plugins.paths=[\"{}\"]", qwen_plugin().display());
    Command::new(env!("CARGO_BIN_EXE_longrl"))
        .args(args)
        .args(["--set", &paths, "--set", "device=\"cpu\"", "--log-level", "warn"])
        .env("LONGRL_PLUGIN_PATH", "")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A random Qwen2 (hidden 32, 2 layers) with a BPE tokenizer trained on a few sentences.
fn init_model(dir: &Path, seed: &str) -> PathBuf {
    use longrl_data::synth::tokenizer;
    let tok_dir = dir.join("tokenizer");
    std::fs::create_dir_all(&tok_dir).unwrap();
    let texts: Vec<String> = (0..50)
        .map(|i| format!("Document {i}: Rerik lives in Galmere and owns {i} lamps. Where does Rerik live?"))
        .collect();
    let trained = tokenizer::train(texts.iter().map(String::as_str), 300).unwrap();
    tokenizer::save(&trained, &tok_dir, 512).unwrap();
    let out = dir.join(format!("model-{seed}"));
    let tok = tok_dir.join("tokenizer.json");
    let o = longrl(&[
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
        seed,
        "--tokenizer",
        tok.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "model init: {}", stderr(&o));
    out
}

fn generate_json(model: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["generate", "--model", model.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let o = longrl(&args);
    assert!(o.status.success(), "generate: {}", stderr(&o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn model_init_writes_an_hf_directory() {
    let dir = tempfile::tempdir().unwrap();
    let model = init_model(dir.path(), "1");
    for file in
        ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"]
    {
        assert!(model.join(file).exists(), "{file} missing from {}", model.display());
    }
    let config: Value = serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "Qwen2ForCausalLM");
    assert_eq!(config["hidden_size"], 32);
    assert_eq!(config["num_hidden_layers"], 2);
    assert_eq!(config["num_attention_heads"], 4);
    assert_eq!(config["num_key_value_heads"], 2);
    assert_eq!(config["intermediate_size"], 64);
    // Seeded: the same seed gives the same weights, another seed other weights.
    let again = init_model(dir.path(), "1");
    let other = init_model(dir.path(), "2");
    let bytes = |m: &Path| std::fs::read(m.join("model.safetensors")).unwrap();
    assert_eq!(bytes(&model), bytes(&again));
    assert_ne!(bytes(&model), bytes(&other));
}

#[test]
fn generate_prints_tokens_logprobs_finish_and_timings() {
    let dir = tempfile::tempdir().unwrap();
    let model = init_model(dir.path(), "3");
    let sampled =
        ["--prompt", "Where does Rerik live?", "--max-new-tokens", "12", "--temperature", "1.0", "--seed", "7"];
    let out = generate_json(&model, &sampled);
    let g = &out["generations"][0];
    let tokens = g["tokens"].as_array().unwrap();
    let logprobs = g["logprobs"].as_array().unwrap();
    assert!(!tokens.is_empty() && tokens.len() <= 12, "{g}");
    assert_eq!(tokens.len(), logprobs.len(), "one log-prob per sampled token");
    assert!(logprobs.iter().all(|l| l.as_f64().unwrap() <= 0.0 && l.as_f64().unwrap().is_finite()), "{g}");
    let finish = g["finish"].as_str().unwrap();
    assert!(finish == "stop" || finish == "length", "{finish}");
    if finish == "length" {
        assert_eq!(tokens.len(), 12);
    }
    assert!(out["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(out["prefill_tokens_per_second"].as_f64().unwrap() > 0.0, "{out}");
    assert!(out["decode_tokens"].as_u64().unwrap() > 0);

    // Same seed, same sample; the sample is not the greedy answer for every seed.
    assert_eq!(generate_json(&model, &sampled)["generations"][0]["tokens"], g["tokens"]);
    let greedy = ["--prompt", "Where does Rerik live?", "--max-new-tokens", "12", "--temperature", "0"];
    let a = generate_json(&model, &greedy);
    let b = generate_json(&model, &[&greedy[..], &["--seed", "99"]].concat());
    assert_eq!(a["generations"][0]["tokens"], b["generations"][0]["tokens"], "greedy ignores the seed");
    let seeds_differ = (0..4).any(|s| {
        let s = s.to_string();
        let args =
            ["--prompt", "Where does Rerik live?", "--max-new-tokens", "12", "--temperature", "1.0", "--seed", &s];
        generate_json(&model, &args)["generations"][0]["tokens"] != g["tokens"]
    });
    assert!(seeds_differ, "four other seeds all reproduced seed 7's sample");
}

#[test]
fn chat_prompts_and_prompt_files_are_tokenized_through_the_template() {
    let dir = tempfile::tempdir().unwrap();
    let model = init_model(dir.path(), "4");
    let file = dir.path().join("prompt.txt");
    std::fs::write(&file, "Where does Rerik live?").unwrap();
    let plain = generate_json(
        &model,
        &["--prompt-file", file.to_str().unwrap(), "--max-new-tokens", "2", "--temperature", "0"],
    );
    let chat = generate_json(
        &model,
        &["--prompt-file", file.to_str().unwrap(), "--chat", "--max-new-tokens", "2", "--temperature", "0"],
    );
    let with_system = generate_json(
        &model,
        &[
            "--prompt-file",
            file.to_str().unwrap(),
            "--chat",
            "--system",
            "Be brief.",
            "--max-new-tokens",
            "2",
            "--temperature",
            "0",
        ],
    );
    let n = |v: &Value| v["prompt_tokens"].as_u64().unwrap();
    assert!(n(&chat) > n(&plain), "the chat template adds role markers: {} vs {}", n(&chat), n(&plain));
    assert!(n(&with_system) > n(&chat), "a system message adds tokens");
}

#[test]
fn bad_generate_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-model");
    let o = longrl(&["generate", "--model", missing.to_str().unwrap(), "--prompt", "hi"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no-such-model"), "{}", stderr(&o));

    let model = init_model(dir.path(), "5");
    let o = longrl(&["generate", "--model", model.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--prompt"), "{}", stderr(&o));

    let absent = dir.path().join("absent.txt");
    let o = longrl(&["generate", "--model", model.to_str().unwrap(), "--prompt-file", absent.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("absent.txt"), "{}", stderr(&o));

    let o = longrl(&["generate", "--model", model.to_str().unwrap(), "--system", "x", "--prompt", "hi"]);
    assert!(!o.status.success(), "--system needs --chat");
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

#[test]
fn the_policy_config_table_applies_to_generate() {
    let dir = tempfile::tempdir().unwrap();
    let model = init_model(dir.path(), "6");
    // Packed oneDNN weights (the default on CPU float32) and the plain BLAS path decode alike.
    let args = ["--prompt", "Where does Rerik live?", "--max-new-tokens", "16", "--temperature", "0", "--batch", "3"];
    let packed = generate_json(&model, &args);
    let plain = generate_json(&model, &[&args[..], &["--set", "policy.config.pack_decode_weights=false"]].concat());
    for (a, b) in packed["generations"].as_array().unwrap().iter().zip(plain["generations"].as_array().unwrap()) {
        assert_eq!(a["tokens"], b["tokens"], "packed and plain weights chose different tokens");
        for (x, y) in a["logprobs"].as_array().unwrap().iter().zip(b["logprobs"].as_array().unwrap()) {
            assert!((x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-4, "{x} vs {y}");
        }
    }
    // The table is really read: an unknown key in it is an error that names the key.
    let o = longrl(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "hi",
        "--set",
        "policy.config.pack_weights=true",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("pack_weights"), "{}", stderr(&o));
}
