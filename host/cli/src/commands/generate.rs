//! `longrl generate`: sample from a model directory (HF layout) with the `qwen` policy plugin.

use std::path::PathBuf;

use anyhow::Context;
use longrl_core::api::{ChatMessage, ComponentContext, GenerationParams, Policy};

use crate::cli::GlobalArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model directory (config.json, safetensors, tokenizer.json).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// The prompt text.
    #[arg(long, conflicts_with_all = ["prompt_file", "prompt_ids"])]
    pub prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(long, value_name = "FILE", conflicts_with = "prompt_ids")]
    pub prompt_file: Option<PathBuf>,
    /// Wrap the prompt as a user message in the model's chat template (with the generation prompt).
    #[arg(long)]
    pub chat: bool,
    /// A system message (with --chat).
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: u32,
    /// 0 means greedy.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// 0 disables top-k.
    #[arg(long, default_value_t = 0)]
    pub top_k: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop strings (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Samples to draw for the prompt.
    #[arg(long, default_value_t = 1)]
    pub n: u32,
    /// Compute dtype: auto, float32, bfloat16, float16.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// Prefill the prompt this many tokens at a time (0: at once).
    #[arg(long, default_value_t = 0)]
    pub prefill_chunk: u32,
    /// Print text, token ids, log-probs, finish reasons and timings as JSON.
    #[arg(long)]
    pub json: bool,
    /// Benchmarks: the prompt as a JSON list of token ids.
    #[arg(long, value_name = "FILE", hide = true)]
    pub prompt_ids: Option<PathBuf>,
    /// Benchmarks: run the same prompt this many times as one batch.
    #[arg(long, default_value_t = 1, hide = true)]
    pub batch: usize,
    /// Benchmarks: untimed generations before the timed one.
    #[arg(long, default_value_t = 0, hide = true)]
    pub warmup: usize,
}

/// Peak resident memory of this process, in bytes (Linux `VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let config = global.load_config()?;
    let device = longrl_core::device::device_name(config.device.resolve()?);
    let ctx = ComponentContext { run_dir: None, seed: config.seed, device };
    // The config's `[policy.config]` table applies (e.g. `pack_decode_weights`) when it is the
    // qwen policy's; the flags set the model, dtype and prefill chunk over it.
    let mut policy_config = match (&config.policy.name[..], &config.policy.config) {
        ("qwen", serde_json::Value::Object(table)) => table.clone(),
        _ => serde_json::Map::new(),
    };
    policy_config.remove("init");
    policy_config.insert("model".into(), serde_json::json!(args.model));
    policy_config.insert("dtype".into(), serde_json::json!(args.dtype));
    policy_config.insert("prefill_chunk_tokens".into(), serde_json::json!(args.prefill_chunk));
    let policy_config = serde_json::Value::Object(policy_config);
    let plugins = global.load_plugins(&config)?;
    let mut policy: Box<dyn Policy> =
        plugins.policy("qwen", &policy_config, &ctx).with_context(|| format!("loading {}", args.model.display()))?;

    let prompt_ids: Vec<u32> = if let Some(file) = &args.prompt_ids {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: expected a JSON list of token ids", file.display()))?
    } else {
        let text = match (&args.prompt, &args.prompt_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
            (None, None) => anyhow::bail!("give --prompt TEXT or --prompt-file FILE"),
        };
        let text = if args.chat {
            let mut messages = Vec::new();
            if let Some(system) = &args.system {
                messages.push(ChatMessage::new("system", system.clone()));
            }
            messages.push(ChatMessage::new("user", text));
            policy.apply_chat_template(&messages, true)?
        } else {
            text
        };
        // A chat-rendered prompt carries its special tokens already.
        policy.tokenize(&text, !args.chat)?
    };
    let params = GenerationParams {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        seed: args.seed,
        stop: args.stop.clone(),
        rollouts: args.n,
        prefill_chunk: args.prefill_chunk,
    };
    let prompts = vec![prompt_ids.clone(); args.batch.max(1)];
    for _ in 0..args.warmup {
        policy.generate(&prompts, &params)?;
    }
    let out = policy.generate(&prompts, &params)?;
    let rate = |tokens: u64, seconds: f64| if seconds > 0.0 { tokens as f64 / seconds } else { 0.0 };
    let prefill_tps = rate(out.prefill_tokens, out.prefill_seconds);
    let decode_tps = rate(out.decode_tokens, out.decode_seconds);
    if args.json {
        let value = serde_json::json!({
            "prompt_tokens": prompt_ids.len(),
            "generations": out.generations,
            "prefill_tokens": out.prefill_tokens,
            "prefill_seconds": out.prefill_seconds,
            "prefill_tokens_per_second": prefill_tps,
            "decode_tokens": out.decode_tokens,
            "decode_seconds": out.decode_seconds,
            "decode_tokens_per_second": decode_tps,
            "peak_rss_bytes": peak_rss_bytes(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for (i, g) in out.generations.iter().enumerate() {
            if out.generations.len() > 1 {
                println!("--- sample {i} ({:?}, {} tokens)", g.finish, g.tokens.len());
            }
            println!("{}", g.text);
        }
        eprintln!(
            "prefill {} tokens at {prefill_tps:.1} tok/s, decode {} tokens at {decode_tps:.1} tok/s",
            out.prefill_tokens, out.decode_tokens
        );
    }
    Ok(())
}
