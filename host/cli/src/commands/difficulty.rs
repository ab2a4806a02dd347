//! `longrl difficulty`: score a dataset offline, as the QwenLong-L1 authors did before phase II:
//! G rollouts per example with the configured policy and rewards, then one JSONL line per example
//! `{"id", "difficulty", "mean_reward"}` with difficulty = 1 / (max(mean reward, 0) + smoothing),
//! the convention of the `retrospective` sampler (which can start from this file).

use std::path::PathBuf;

use anyhow::Context;
use longrl_core::api::{ComponentContext, GenerationParams};

use longrl_data::prompt;
use longrl_rollout::{LocalPolicy, RewardSet, RolloutPrompt, score_difficulty, write_difficulty};
use longrl_train::seeds;

use crate::cli::GlobalArgs;

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
    /// User messages longer than this many tokens keep their first and last halves (0: no limit).
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

    let bar = indicatif::ProgressBar::new(examples.len() as u64);
    let budget = (args.max_input_tokens > 0).then_some(args.max_input_tokens);
    let params = GenerationParams {
        max_new_tokens,
        temperature: config.train.temperature,
        top_p: config.train.top_p,
        top_k: config.train.top_k,
        seed: 0,
        stop: config.train.stop.clone(),
        rollouts,
        prefill_chunk: 0,
    };
    let built = examples
        .iter()
        .map(|ex| prompt::build(policy.as_ref(), &ex.prompt, budget).with_context(|| format!("example `{}`", ex.id)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let prompts: Vec<RolloutPrompt<'_>> =
        examples.iter().zip(&built).map(|(ex, b)| RolloutPrompt::new(ex, b)).collect();
    let ids: Vec<&str> = examples.iter().map(|ex| ex.id.as_str()).collect();
    let seed_of_batch = |b: u64| seeds::derive(config.seed, "difficulty", b, 0);
    let mut generator = LocalPolicy::new(policy.as_mut(), &config.policy.name);
    let rows = score_difficulty(
        &mut generator,
        &rewards,
        &prompts,
        &ids,
        &params,
        args.batch_prompts.max(1),
        &seed_of_batch,
        &mut |done| bar.inc(done as u64),
    )?;
    bar.finish_and_clear();
    write_difficulty(&args.out, &rows, args.smoothing)?;
    let total = rows.len();
    let unsolved = rows.iter().filter(|r| r.mean_reward.is_some_and(|m| m <= 0.0)).count();
    let unscored = rows.iter().filter(|r| r.mean_reward.is_none()).count();
    if unscored > 0 {
        eprintln!(
            "warning: {unscored} example(s) have no scored rollout (the rewards could not decide) and are left out of the file"
        );
    }
    println!(
        "{total} examples scored with {rollouts} rollouts each; {unsolved} never solved; written to {}",
        args.out.display()
    );
    Ok(())
}
