//! `longrl model init`: a randomly initialised model in HF layout, made by the `qwen` policy plugin.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use longrl_core::api::{ComponentContext, LogprobOptions, Policy, Sequence};
use tch::Kind;

use crate::cli::GlobalArgs;
use crate::commands::generate::peak_rss_bytes;

#[derive(clap::Subcommand, Debug)]
pub enum ModelCommand {
    /// Create a randomly initialised model in HF layout.
    Init(InitArgs),
    /// Benchmarks: time forward+backward of per-token log-probs over one sequence.
    #[command(hide = true)]
    BenchLogprobs(BenchLogprobsArgs),
}

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// qwen2 or qwen3.
    #[arg(long, default_value = "qwen2")]
    pub arch: String,
    #[arg(long)]
    pub hidden: i64,
    #[arg(long)]
    pub layers: i64,
    #[arg(long)]
    pub heads: i64,
    #[arg(long)]
    pub kv_heads: i64,
    #[arg(long)]
    pub intermediate: i64,
    /// A tokenizer.json (a tokenizer_config.json beside it is used when present).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: PathBuf,
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 32768)]
    pub max_position_embeddings: i64,
    #[arg(long, default_value_t = 1_000_000.0)]
    pub rope_theta: f64,
    #[arg(long)]
    pub tie_word_embeddings: bool,
}

#[derive(clap::Args, Debug)]
pub struct BenchLogprobsArgs {
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Sequence length (one prompt token, the rest scored).
    #[arg(long)]
    pub tokens: usize,
    /// Tokens per chunk of the vocabulary projection.
    #[arg(long, default_value_t = 1024)]
    pub chunk: u32,
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
}

fn context(global: &GlobalArgs) -> anyhow::Result<(longrl_config::Config, ComponentContext)> {
    let config = global.load_config()?;
    let device = longrl_core::device::device_name(config.device.resolve()?);
    let ctx = ComponentContext { run_dir: None, seed: config.seed, device };
    Ok((config, ctx))
}

pub fn run(command: ModelCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    match command {
        ModelCommand::Init(args) => init(args, global),
        ModelCommand::BenchLogprobs(args) => bench_logprobs(args, global),
    }
}

fn init(args: InitArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let (config, ctx) = context(global)?;
    let policy_config = serde_json::json!({
        "dtype": "float32",
        "init": {
            "arch": args.arch,
            "hidden": args.hidden,
            "layers": args.layers,
            "heads": args.heads,
            "kv_heads": args.kv_heads,
            "intermediate": args.intermediate,
            "tokenizer": args.tokenizer,
            "seed": args.seed,
            "max_position_embeddings": args.max_position_embeddings,
            "rope_theta": args.rope_theta,
            "tie_word_embeddings": args.tie_word_embeddings,
        }
    });
    let plugins = global.load_plugins(&config)?;
    let policy: Box<dyn Policy> = plugins.policy("qwen", &policy_config, &ctx)?;
    policy.save(&args.out).with_context(|| format!("saving to {}", args.out.display()))?;
    let d = policy.describe()?;
    println!(
        "{}: {} with {} parameters, vocab {}, written to {}",
        args.arch,
        d.architecture,
        d.num_parameters,
        d.vocab_size,
        args.out.display()
    );
    Ok(())
}

fn bench_logprobs(args: BenchLogprobsArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let (config, ctx) = context(global)?;
    let policy_config =
        serde_json::json!({"model": args.model, "dtype": args.dtype, "logprob_chunk_tokens": args.chunk});
    let plugins = global.load_plugins(&config)?;
    let mut policy: Box<dyn Policy> = plugins.policy("qwen", &policy_config, &ctx)?;
    let vocab = policy.describe()?.vocab_size as u32;
    // A fixed pseudo-random sequence (the figures do not depend on the ids).
    let ids: Vec<u32> = (0..args.tokens as u64).map(|i| ((i * 2_654_435_761) % vocab as u64) as u32).collect();
    let batch = [Sequence { prompt: ids[..1].to_vec(), response: ids[1..].to_vec() }];
    let options = LogprobOptions { with_grad: true, chunk_tokens: args.chunk, ..Default::default() };
    let params = policy.parameters()?;
    let mut seconds = Vec::new();
    for _ in 0..args.repeats.max(1) {
        let start = Instant::now();
        let out = policy.logprobs(&batch, &options)?;
        let loss = out.logprobs.f_mul(&out.mask)?.f_sum(Kind::Float)?;
        loss.f_backward()?;
        seconds.push(start.elapsed().as_secs_f64());
        for (_, p) in &params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.f_zero_()?;
            }
        }
    }
    let best = seconds.iter().copied().fold(f64::INFINITY, f64::min);
    let value = serde_json::json!({
        "tokens": args.tokens,
        "seconds": seconds,
        "tokens_per_second": args.tokens as f64 / best,
        "peak_rss_bytes": peak_rss_bytes(),
    });
    println!("{}", serde_json::to_string(&value)?);
    Ok(())
}
