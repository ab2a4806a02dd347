//! `longrl difficulty`: score a dataset offline, as the QwenLong-L1 authors did before phase II:
//! G rollouts per example with the configured policy and rewards, then one JSONL line per example
//! `{"id", "difficulty", "mean_reward"}` with difficulty = 1 / (max(mean reward, 0) + smoothing),
//! the convention of the `retrospective` sampler (which can start from this file).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use longrl_core::api::{ComponentContext, GenerationParams, RewardInput};

use crate::cli::GlobalArgs;
use longrl_data::prompt::prompt_text;
use longrl_data::truncate::truncate_middle;
use longrl_rollout::RewardSet;
use longrl_train::seeds;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Data files to score (parquet or JSONL; default: `data.train_files`).
    #[arg(long, value_name = "FILE")]
    pub data: Vec<PathBuf>,
    /// Rollouts per example (G; default: `train.rollouts`).
    #[arg(long)]
    pub rollouts: Option<u32>,
    /// Output JSONL file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Smoothing of 1 / (mean + smoothing); the retrospective sampler's default.
    #[arg(long, default_value_t = 0.1)]
    pub smoothing: f64,
    /// Response token limit (default: `train.max_response_tokens`, else 1024).
    #[arg(long)]
    pub max_new_tokens: Option<u32>,
    /// Prompts longer than this are truncated in the middle (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub max_input_tokens: usize,
    /// Prompts per `generate` call.
    #[arg(long, default_value_t = 8)]
    pub batch_prompts: usize,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let config = global.load_config()?;
    if !(args.smoothing > 0.0) {
        anyhow::bail!("--smoothing must be positive (it keeps the difficulty of never-solved examples finite)");
    }
    let files = if args.data.is_empty() { config.data.train_files.clone() } else { args.data.clone() };
    if files.is_empty() {
        anyhow::bail!("no data: pass --data FILE or set `data.train_files`");
    }
    let rollouts = args.rollouts.unwrap_or(config.train.rollouts);
    if rollouts == 0 {
        anyhow::bail!("--rollouts must be at least 1");
    }
    let plugins = global.load_plugins(&config)?;
    let device = longrl_core::device::device_name(config.device.resolve()?);
    let ctx = ComponentContext { run_dir: None, seed: config.seed, device };
    let examples = longrl_data::load_examples(&files, &longrl_data::LoadOptions::train(&config.data))?;
    let rewards = RewardSet::from_config(&config.reward, &plugins, &ctx)?;
    let mut sources: Vec<String> = examples.iter().map(|e| e.data_source.clone()).collect();
    sources.sort();
    sources.dedup();
    rewards.check_sources(&sources)?;
    let mut policy = plugins.policy(&config.policy.name, &config.policy.config, &ctx)?;
    let max_new_tokens = args.max_new_tokens.unwrap_or(if config.train.max_response_tokens > 0 {
        config.train.max_response_tokens
    } else {
        1024
    });

    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?,
    );
    let bar = indicatif::ProgressBar::new(examples.len() as u64);
    let (mut total, mut unsolved) = (0usize, 0usize);
    for (c, chunk) in examples.chunks(args.batch_prompts.max(1)).enumerate() {
        let mut texts = Vec::new();
        let mut prompts = Vec::new();
        for ex in chunk {
            let text = prompt_text(policy.as_ref(), &ex.prompt).with_context(|| format!("example `{}`", ex.id))?;
            let ids = policy.tokenize(&text, false)?;
            prompts.push(if args.max_input_tokens > 0 { truncate_middle(&ids, args.max_input_tokens) } else { ids });
            texts.push(text);
        }
        let params = GenerationParams {
            max_new_tokens,
            temperature: config.train.temperature,
            top_p: config.train.top_p,
            top_k: config.train.top_k,
            seed: seeds::derive(config.seed, "difficulty", c as u64, 0),
            stop: config.train.stop.clone(),
            n: rollouts,
            prefill_chunk: 0,
        };
        let generated = policy.generate(&prompts, &params)?;
        let inputs: Vec<RewardInput> = generated
            .generations
            .iter()
            .enumerate()
            .map(|(k, g)| {
                let ex = &chunk[k / rollouts as usize];
                RewardInput {
                    response: g.text.clone(),
                    ground_truth: ex.ground_truth.clone(),
                    data_source: ex.data_source.clone(),
                    prompt: texts[k / rollouts as usize].clone(),
                    question: ex.question.clone(),
                }
            })
            .collect();
        let scores = rewards.score(&inputs)?;
        for (i, ex) in chunk.iter().enumerate() {
            let group = &scores[i * rollouts as usize..(i + 1) * rollouts as usize];
            let mean = group.iter().map(|s| s.score as f64).sum::<f64>() / rollouts as f64;
            let difficulty = 1.0 / (mean.max(0.0) + args.smoothing);
            unsolved += (mean <= 0.0) as usize;
            total += 1;
            writeln!(out, "{}", serde_json::json!({"id": ex.id, "difficulty": difficulty, "mean_reward": mean}))?;
        }
        bar.inc(chunk.len() as u64);
    }
    out.flush()?;
    bar.finish_and_clear();
    println!(
        "{total} examples scored with {rollouts} rollouts each; {unsolved} never solved; written to {}",
        args.out.display()
    );
    Ok(())
}
