//! `longrl train`: the SFT warm-up, then the RL phases of the curriculum, evaluation after each
//! stage, `report.md` and curves at the end. `--dry-run` prints the plan without training.

use std::path::{Path, PathBuf};

use anyhow::Context;
use longrl_core::api::{ComponentContext, ComponentKind, GenerationParams, Policy};

use crate::cli::GlobalArgs;
use longrl_config::{ComponentConfig, Config, resolve};
use longrl_data::{self as data, Example, LoadOptions};
use longrl_eval::stages::{self, StageEvalSpec};
use longrl_eval::{self as eval, EvalSpec};
use longrl_metrics::plot;
use longrl_plugins::PluginSet;
use longrl_report::html::{PageOptions, write_report};
use longrl_report::rollout_log::{GroupEntry, PromptEntry, RolloutEntry, RolloutLog};
use longrl_rollout::RewardSet;
use longrl_train::{ComponentNames, Components, EvalHook, Outcome, TrainOptions, Trainer, checkpoint, checks, plan};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Continue from the latest checkpoint of the run directory, or from the checkpoint DIR.
    // `Option<Option<_>>`: absent, `--resume` alone, or `--resume DIR` (an empty default value
    // would be refused by clap's path parser).
    #[arg(long, value_name = "DIR", num_args = 0..=1)]
    pub resume: Option<Option<PathBuf>>,
    /// Run directory (overrides `run_dir` of the config).
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Validate the config, load the plugins and print the plan; train nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --resume: continue although the config changes keys that alter what is trained (the run's
    /// stored config.toml is compared); the changes are recorded in RUN_DIR/config-changes.jsonl.
    #[arg(long, requires = "resume")]
    pub allow_config_change: bool,
}

/// The run's config as it started (or last resumed), compared on `--resume`.
const CONFIG_FILE: &str = "config.toml";
/// Config changes accepted with `--allow-config-change`, one JSON line per resume.
const CONFIG_CHANGES_FILE: &str = "config-changes.jsonl";

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let mut config = global.load_config()?;
    if let Some(dir) = &args.run_dir {
        config.run_dir = dir.clone();
    }
    config.run_dir = resolve(&config.run_dir);
    config.train.validate(&config.sft)?;
    let overlong = config.data.overlong_policy()?;
    let plugins = global.load_plugins(&config)?;
    let device = longrl_core::device::device_name(config.device.resolve()?);
    let ctx = ComponentContext { run_dir: Some(config.run_dir.clone()), seed: config.seed, device: device.clone() };
    let (sampler_table, base_difficulty) = base_difficulty_file(&config, !args.dry_run)?;

    let algorithm = plugins.algorithm(&config.algorithm.name, &config.algorithm.config, &ctx)?;
    let curriculum = plugins.curriculum(&config.curriculum.name, &config.curriculum.config, &ctx)?;
    let sampler = plugins.sampler(&config.sampler.name, &sampler_table, &ctx)?;
    let rewards = RewardSet::from_config(&config.reward, &plugins, &ctx)?;
    let settings = algorithm.settings()?;
    let phases = curriculum.phases()?;
    let algorithm_table = with_defaults(&plugins, ComponentKind::Algorithm, &config.algorithm);
    let sampler_table = with_defaults(&plugins, ComponentKind::Sampler, &config.sampler);
    checks::refuse_impossible(
        &config,
        &phases,
        &checks::PluginTables { algorithm: &algorithm_table, sampler: &sampler_table },
    )?;
    let mut missing = Vec::new();
    for (key, files) in [
        ("data.train_files", &config.data.train_files),
        ("data.sft_files", &config.data.sft_files),
        ("data.eval_files", &config.data.eval_files),
    ] {
        for f in files.iter().filter(|f| !f.exists()) {
            // A dry run plans a reproduction before its data is downloaded: list, don't stop.
            if !args.dry_run {
                anyhow::bail!("config key `{key}`: {} does not exist", f.display());
            }
            missing.push(format!("  `{key}`: {}", f.display()));
        }
    }
    if args.dry_run {
        let mut used = vec![
            format!("policy/{}", config.policy.name),
            format!("algorithm/{}", config.algorithm.name),
            format!("curriculum/{}", config.curriculum.name),
            format!("sampler/{}", config.sampler.name),
        ];
        used.extend(config.reward.components.iter().map(|c| format!("reward/{}", c.name)));
        if plugins.info(ComponentKind::Policy, &config.policy.name).is_none() {
            anyhow::bail!("no policy plugin named `{}` was found", config.policy.name);
        }
        print!("{}", plan::render(&config, &phases, &settings, &device, &used)?);
        if !missing.is_empty() {
            println!("missing (needed before a real run):\n{}", missing.join("\n"));
        }
        return Ok(());
    }

    let resume = match &args.resume {
        None => {
            if let Some(existing) = checkpoint::latest(&config.run_dir)? {
                anyhow::bail!(
                    "{} already holds checkpoints (latest {}): pass --resume to continue that run, or choose another --run-dir",
                    config.run_dir.display(),
                    existing.display()
                );
            }
            None
        }
        Some(None) => Some(
            checkpoint::latest(&config.run_dir)?
                .with_context(|| format!("--resume: {} has no complete checkpoint", config.run_dir.display()))?,
        ),
        Some(Some(dir)) => Some(resolve(dir)),
    };
    if let Some(checkpoint) = &resume {
        compare_stored_config(&config, checkpoint, args.allow_config_change)?;
    }
    std::fs::create_dir_all(&config.run_dir).with_context(|| format!("creating {}", config.run_dir.display()))?;
    std::fs::write(config.run_dir.join(CONFIG_FILE), config.to_toml()?)?;

    let policy = plugins.policy(&config.policy.name, &config.policy.config, &ctx)?;
    let reference = if settings.needs_reference {
        Some(plugins.policy(&config.policy.name, &config.policy.config, &ctx)?)
    } else {
        None
    };
    let rl_examples = if config.train.enabled {
        data::load_examples(&config.data.train_files, &LoadOptions::train(&config.data))?
    } else {
        Vec::new()
    };
    let sft_examples = if config.sft.enabled {
        data::load_sft_examples(&config.data.sft_files, config.data.max_sft_examples)?
    } else {
        Vec::new()
    };
    let eval_examples = if config.eval.enabled {
        data::load_examples(&config.data.eval_files, &LoadOptions::eval(&config.data))?
    } else {
        Vec::new()
    };
    let hook = eval_hook(&config, &plugins, &ctx, eval_examples)?;

    let options = TrainOptions {
        run_dir: config.run_dir.clone(),
        seed: config.seed,
        sft: config.sft.clone(),
        train: config.train.clone(),
        overlong,
        length_cache: config.data.cache_lengths.then(|| config.run_dir.join("cache")),
        accuracy_threshold: config.reward.max_score,
        max_unscored_fraction: config.reward.max_unscored_fraction,
        stop_after_steps: None,
        base_difficulty,
    };
    let names = ComponentNames {
        policy: config.policy.name.clone(),
        algorithm: config.algorithm.name.clone(),
        curriculum: config.curriculum.name.clone(),
        sampler: config.sampler.name.clone(),
    };
    let components = Components { policy, reference, algorithm, curriculum, sampler, rewards, names };
    let mut trainer = Trainer::new(options, components, rl_examples, sft_examples, resume.as_deref(), hook)?;
    if config.rollout.is_remote() {
        trainer.use_rollout_servers(&config.rollout)?;
    }
    let outcome = trainer.run()?;
    drop(trainer);
    let plots = plot::plot_run(&config.run_dir, &config.run_dir.join("plots"))?;
    let report = stages::write_report(&config.run_dir, &benchmark_tables(&config.run_dir)?)?;
    let page = write_report(&config.run_dir, PageOptions::default())?;
    if outcome == Outcome::Finished {
        println!("training finished: {}", config.run_dir.display());
    }
    println!("metrics: {}", config.run_dir.join("metrics.jsonl").display());
    println!("curves: {} file(s) in {}", plots.len(), config.run_dir.join("plots").display());
    println!("report: {} (web page: {})", report.display(), page.display());
    Ok(())
}

/// The `retrospective` sampler weighs examples by the base model's difficulty (QwenLong-L1 Eq. 10)
/// read from its `difficulty_file`. When the run gives none (and the sampler is not set to learn
/// difficulty online), the trainer scores the policy as RL starts, after the SFT warm-up, into
/// `RUN_DIR/base_difficulty.jsonl`, and the sampler is pointed there. A file the run does give must
/// exist (checked here, before any training). Returns the sampler's table as the plugin gets it (the
/// run's config, and the `config.toml` it stores, keep the table as written) and the file to score.
fn base_difficulty_file(config: &Config, check_given: bool) -> anyhow::Result<(serde_json::Value, Option<PathBuf>)> {
    let mut sampler = config.sampler.config.clone();
    if config.sampler.name != "retrospective" || !config.train.enabled {
        return Ok((sampler, None));
    }
    if sampler.is_null() {
        sampler = serde_json::json!({});
    }
    // Anything but a table is the plugin's to refuse, with its own message.
    let Some(table) = sampler.as_object_mut() else { return Ok((sampler, None)) };
    let online = table.get("difficulty").and_then(|v| v.as_str()) == Some("online");
    match table.get("difficulty_file").filter(|v| !v.is_null()) {
        Some(given) => {
            if let Some(file) = given.as_str()
                && check_given
                && !Path::new(file).exists()
            {
                anyhow::bail!(
                    "config key `sampler.config.difficulty_file`: {file} does not exist (leave the key out and the \
                     trainer scores the base model's difficulty when RL starts)"
                );
            }
            Ok((sampler, None))
        }
        None if online => Ok((sampler, None)),
        None => {
            let path = config.run_dir.join("base_difficulty.jsonl");
            table.insert("difficulty_file".into(), serde_json::json!(path.display().to_string()));
            Ok((sampler, Some(path)))
        }
    }
}

/// The evaluation after each stage: the run's held-out examples (`data.eval_files`, scored with the
/// training rewards and broken down by bucket and kind) and the benchmarks of `[eval]` when any.
fn eval_hook<'a>(
    config: &'a Config,
    plugins: &'a PluginSet,
    ctx: &'a ComponentContext,
    examples: Vec<Example>,
) -> anyhow::Result<Option<EvalHook<'a>>> {
    if !config.eval.enabled {
        tracing::info!("evaluation after each stage is off (`eval.enabled = false`)");
        return Ok(None);
    }
    let e = &config.eval;
    let spec = StageEvalSpec {
        generation: GenerationParams {
            max_new_tokens: e.max_output_tokens,
            temperature: e.temperature,
            top_p: e.top_p,
            top_k: 0,
            seed: e.seed,
            stop: config.train.stop.clone(),
            rollouts: e.samples.max(1),
            prefill_chunk: e.prefill_chunk,
        },
        max_input_tokens: e.max_input_tokens as usize,
        batch_prompts: e.batch_prompts.max(1) as usize,
        correct_at: config.reward.max_score,
        policy: config.policy.name.clone(),
    };
    let rewards = RewardSet::from_config(&config.reward, plugins, ctx)?;
    let benchmarks = if e.benchmarks.is_empty() {
        None
    } else {
        Some((EvalSpec::from_config(e, "policy", &config.policy.name)?, eval::eval_rewards(plugins, e, ctx)?))
    };
    if examples.is_empty() && benchmarks.is_none() {
        anyhow::bail!(
            "`eval.enabled` is true but there is nothing to evaluate: set `data.eval_files` or `eval.benchmarks`"
        );
    }
    let run_dir = config.run_dir.clone();
    let correct_at = config.reward.max_score;
    Ok(Some(Box::new(move |policy: &mut dyn Policy, stage: &str, step: u64| {
        if !examples.is_empty() {
            // Every question's outputs go to the rollout log as `eval:<stage>` groups.
            let mut log = RolloutLog::append_to(&run_dir)?;
            let mut outputs = |example: &Example, user: &str, group: &longrl_rollout::Group| {
                let (prompt, entry) = eval_log_entry(example, user, group, stage, step, correct_at);
                log.append(&prompt, &entry)
            };
            let result = stages::evaluate_examples(policy, &rewards, &examples, &spec, stage, &mut outputs)?;
            log.flush()?;
            tracing::info!(stage, accuracy = result.overall.accuracy, n = result.overall.n, "stage evaluation");
            stages::record_stage(&run_dir, &result)?;
        }
        if let Some((spec, rewards)) = &benchmarks {
            let mut spec = spec.clone();
            spec.label = format!("after {stage}");
            let out = run_dir.join("eval").join(stage);
            eval::run_eval(policy, rewards, &spec, Some(&out))?;
        }
        stages::write_report(&run_dir, &benchmark_tables(&run_dir)?)?;
        Ok(())
    })))
}

/// A stage evaluation's question as a rollout-log group (no shaping or advantage: nothing trains on it).
fn eval_log_entry(
    example: &Example,
    user: &str,
    group: &longrl_rollout::Group,
    stage: &str,
    step: u64,
    correct_at: f32,
) -> (PromptEntry, GroupEntry) {
    let prompt = PromptEntry {
        example: example.id.clone(),
        data_source: example.data_source.clone(),
        text: user.to_string(),
        ground_truth: example.ground_truth.clone(),
    };
    let rollouts = group
        .rollouts
        .iter()
        .map(|r| {
            let scored = !longrl_rollout::is_unscored(&r.score);
            RolloutEntry {
                text: r.text.clone(),
                tokens: r.tokens.len() as u32,
                finish: match r.finish {
                    Some(longrl_core::api::FinishReason::Stop) => "stop",
                    Some(longrl_core::api::FinishReason::Length) => "length",
                    None => "none",
                }
                .to_string(),
                reward: scored.then_some(r.score.score as f64),
                shaped_reward: None,
                advantage: None,
                decided_by: r.score.decided_by.clone(),
                reward_details: r.score.details.clone(),
                correct: scored.then_some(r.score.score >= correct_at),
            }
        })
        .collect();
    let entry = GroupEntry {
        step,
        stage: format!("eval:{stage}"),
        phase: None,
        phase_name: None,
        example: example.id.clone(),
        data_source: example.data_source.clone(),
        rollouts,
    };
    (prompt, entry)
}

/// `summary.md` of each stage's benchmark evaluation, in stage order of completion.
fn benchmark_tables(run_dir: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    let dir = run_dir.join("eval");
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let summary = entry.path().join("summary.md");
        if summary.exists() {
            let modified = entry.metadata()?.modified()?;
            out.push((modified, entry.file_name().to_string_lossy().to_string(), std::fs::read_to_string(summary)?));
        }
    }
    out.sort();
    Ok(out.into_iter().map(|(_, stage, md)| (stage, md)).collect())
}

/// A component's config table with the plugin's defaults for the keys it leaves unset.
fn with_defaults(
    plugins: &PluginSet,
    kind: ComponentKind,
    component: &ComponentConfig,
) -> serde_json::Map<String, serde_json::Value> {
    let mut table: serde_json::Map<String, serde_json::Value> = plugins
        .info(kind, &component.name)
        .map(|info| info.config.iter().map(|key| (key.key.clone(), key.default.clone())).collect())
        .unwrap_or_default();
    if let Some(set) = component.config.as_object() {
        table.extend(set.clone());
    }
    table
}

/// `--resume`: this config against the one the run stored. A change that alters what is trained
/// (anything but where files go, progress display, checkpoint cadence, the step cap and evaluation)
/// would make the resumed run another run: refused, or with `allow` recorded and warned about.
fn compare_stored_config(config: &Config, checkpoint: &std::path::Path, allow: bool) -> anyhow::Result<()> {
    let path = config.run_dir.join(CONFIG_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        tracing::warn!("{} is missing: the resumed config cannot be compared with the run's", path.display());
        return Ok(());
    };
    let stored: toml::Table = text.parse().with_context(|| format!("reading {}", path.display()))?;
    let changes = longrl_config::changes_on_resume(&stored, config)?;
    if changes.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = changes.iter().map(|c| format!("`{}`: {} -> {}", c.key, c.stored, c.now)).collect();
    if !allow {
        anyhow::bail!(
            "--resume: this config changes what the run trains, against its stored {}: {}. Resume with the run's \
             config, or pass --allow-config-change to continue anyway (the changes are then recorded in {})",
            path.display(),
            listed.join("; "),
            config.run_dir.join(CONFIG_CHANGES_FILE).display()
        );
    }
    tracing::warn!("resuming with config changes: {}", listed.join("; "));
    let record = serde_json::json!({
        "resumed_from": checkpoint.display().to_string(),
        "changes": changes.iter().map(|c| serde_json::json!({"key": c.key, "stored": c.stored, "now": c.now})).collect::<Vec<_>>(),
    });
    let log = config.run_dir.join(CONFIG_CHANGES_FILE);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening {}", log.display()))?;
    std::io::Write::write_all(&mut file, format!("{record}\n").as_bytes())?;
    Ok(())
}
