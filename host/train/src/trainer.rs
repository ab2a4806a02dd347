//! The run: stages in order, checkpoints, resume, evaluation hooks, progress.

use longrl_report::rollout_log::RolloutLog;
use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use longrl_core::api::{Algorithm, AlgorithmSettings, Curriculum, PhaseLength, PhaseSpec, Policy, Sampler, Sequence};

use longrl_config::{SftConfig, TrainConfig};
use longrl_data::{Example, OverlongPolicy, SftExample};
use longrl_metrics::{MetricsLog, Record};
use longrl_rollout::RewardSet;

use crate::checkpoint;
use crate::optim::{self, AdamW};
use crate::prompts::{RlPrompts, prepare_sft};
use crate::servers::RolloutServers;
use crate::state::Counters;

/// The components of a run. `reference` is needed (and only kept) when the algorithm asks for
/// reference log-probs: a second policy made from the same config; the trainer copies the trained
/// policy's weights into it when RL starts.
pub struct Components {
    pub policy: Box<dyn Policy>,
    pub reference: Option<Box<dyn Policy>>,
    pub algorithm: Box<dyn Algorithm>,
    pub curriculum: Box<dyn Curriculum>,
    pub sampler: Box<dyn Sampler>,
    pub rewards: RewardSet,
    pub names: ComponentNames,
}

/// The components' names (the config's `name` keys), so that an error names the plugin at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentNames {
    pub policy: String,
    pub algorithm: String,
    pub curriculum: String,
    pub sampler: String,
}

impl Default for ComponentNames {
    /// For components made in-process (tests), which have no plugin name.
    fn default() -> Self {
        let unnamed = || "in-process".to_string();
        ComponentNames { policy: unnamed(), algorithm: unnamed(), curriculum: unnamed(), sampler: unnamed() }
    }
}

pub struct TrainOptions {
    pub run_dir: PathBuf,
    pub seed: u64,
    pub sft: SftConfig,
    pub train: TrainConfig,
    pub overlong: OverlongPolicy,
    /// Where prompt lengths are cached (`RUN_DIR/cache` under `data.cache_lengths`); `None`
    /// measures them every run.
    pub length_cache: Option<PathBuf>,
    /// A rollout whose raw reward is at least this counts as correct (the `accuracy` metric).
    pub accuracy_threshold: f32,
    /// A step with a larger share of unscored rollouts stops the run (`reward.max_unscored_fraction`).
    pub max_unscored_fraction: f64,
    /// Tests: stop as if killed after this many steps of this process (no checkpoint is written).
    pub stop_after_steps: Option<u64>,
    /// Where the sampler reads the base model's difficulty (QwenLong-L1 Eq. 10) that the trainer
    /// scores as RL starts when the file does not exist yet; `None`: the sampler needs none, or the
    /// run gave its own file.
    pub base_difficulty: Option<PathBuf>,
}

/// Called after each stage (`sft`, then each phase's name) with the trained policy and the global
/// step the stage ended at.
pub type EvalHook<'a> = Box<dyn FnMut(&mut dyn Policy, &str, u64) -> anyhow::Result<()> + 'a>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    /// `stop_after_steps` was reached.
    Stopped,
}

const REFERENCE_DIR: &str = "reference";

pub struct Trainer<'a> {
    pub(super) opts: TrainOptions,
    pub(super) c: Components,
    pub(super) rl_data: Option<RlPrompts>,
    pub(super) sft_data: Vec<Sequence>,
    pub(super) phases: Vec<PhaseSpec>,
    pub(super) settings: AlgorithmSettings,
    pub(super) counters: Counters,
    pub(super) optimizer: Option<AdamW>,
    pub(super) metrics: MetricsLog,
    eval: Option<EvalHook<'a>>,
    pub(super) progress: ProgressBar,
    steps_this_process: u64,
    /// `[rollout]` servers, when RL rollouts are drawn from them.
    pub(crate) servers: Option<RolloutServers>,
    /// `RUN_DIR/rollouts.jsonl`, when RL logs rollouts (`train.log_rollouts_every`).
    pub(crate) rollout_log: Option<RolloutLog>,
}

impl<'a> Trainer<'a> {
    /// Prepare a run; with `resume`, restore everything from that checkpoint directory.
    pub fn new(
        opts: TrainOptions,
        mut c: Components,
        rl_examples: Vec<Example>,
        sft_examples: Vec<SftExample>,
        resume: Option<&Path>,
        eval: Option<EvalHook<'a>>,
    ) -> anyhow::Result<Self> {
        opts.train.validate(&opts.sft)?;
        let settings = c.algorithm.settings()?;
        if settings.needs_reference != c.reference.is_some() {
            anyhow::bail!(
                "the algorithm {} reference log-probs but the trainer was {} a reference policy",
                if settings.needs_reference { "needs" } else { "does not need" },
                if c.reference.is_some() { "given" } else { "not given" }
            );
        }
        let phases = c.curriculum.phases()?;
        if opts.train.enabled && phases.is_empty() {
            anyhow::bail!("the curriculum has no phases");
        }
        let rl_data = if opts.train.enabled {
            if rl_examples.is_empty() {
                anyhow::bail!(
                    "RL is enabled (`train.enabled`) but there are no training examples (`data.train_files`)"
                );
            }
            let sources: Vec<String> = {
                let mut s: Vec<String> = rl_examples.iter().map(|e| e.data_source.clone()).collect();
                s.sort();
                s.dedup();
                s
            };
            c.rewards.check_sources(&sources)?;
            let limit = phases.iter().map(|p| p.max_input_tokens).max().unwrap_or(u64::MAX);
            let prepared =
                RlPrompts::prepare(c.policy.as_ref(), rl_examples, limit, opts.overlong, opts.length_cache.as_deref())?;
            for (k, spec) in phases.iter().enumerate() {
                let pool = prepared.pool(spec).len();
                tracing::info!(phase = k, name = %spec.name, pool, "phase pool");
                // Found now rather than when the phase begins, hours into the run.
                if pool == 0 {
                    anyhow::bail!(
                        "phase {k} (`{}`) admits no examples: no prompt has {} < tokens <= {}",
                        spec.name,
                        spec.min_input_tokens_exclusive,
                        spec.max_input_tokens
                    );
                }
            }
            Some(prepared)
        } else {
            None
        };
        let sft_data = if opts.sft.enabled {
            if sft_examples.is_empty() {
                anyhow::bail!("SFT is enabled (`sft.enabled`) but there are no SFT traces (`data.sft_files`)");
            }
            prepare_sft(c.policy.as_ref(), &sft_examples, opts.sft.max_tokens as usize)?
        } else {
            Vec::new()
        };

        let mut counters = Counters { seed: opts.seed, ..Counters::default() };
        let mut optimizer = None;
        if let Some(dir) = resume {
            counters = restore(dir, &mut c, &opts)?;
            if let Some(stage) = &counters.optimizer_stage {
                let config = if stage == "sft" { &opts.sft.optim } else { &opts.train.optim };
                let mut opt = optim::adamw(c.policy.parameters()?, config)?;
                opt.load(&dir.join("optimizer.safetensors"), counters.optimizer_steps)?;
                optimizer = Some(opt);
            }
            if counters.rl_started
                && let Some(reference) = &mut c.reference
            {
                reference.load_weights(&opts.run_dir.join(REFERENCE_DIR))?;
            }
            tracing::info!(checkpoint = %dir.display(), step = counters.global_step, "resumed");
        }
        let metrics = MetricsLog::open(&opts.run_dir, opts.train.tensorboard, resume.map(|_| counters.global_step))?;
        let rollout_log = if opts.train.enabled && opts.train.log_rollouts_every > 0 {
            Some(RolloutLog::open(&opts.run_dir, resume.map(|_| counters.global_step))?)
        } else {
            None
        };
        let mut trainer = Trainer {
            opts,
            c,
            rl_data,
            sft_data,
            phases,
            settings,
            counters,
            optimizer,
            metrics,
            eval,
            progress: ProgressBar::hidden(),
            steps_this_process: 0,
            servers: None,
            rollout_log,
        };
        trainer.progress = trainer.make_progress();
        Ok(trainer)
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn policy(&mut self) -> &mut dyn Policy {
        self.c.policy.as_mut()
    }

    /// Optimizer steps the SFT stage takes in all.
    pub fn sft_total_steps(&self) -> u64 {
        self.sft_batches().len() as u64 * self.opts.sft.epochs as u64
    }

    /// RL steps planned: each phase's steps, or its epochs over its pool; capped by `train.max_steps`.
    pub fn rl_planned_steps(&self) -> u64 {
        let Some(data) = &self.rl_data else { return 0 };
        let batch = self.opts.train.batch_prompts.max(1) as u64;
        let total: u64 = self
            .phases
            .iter()
            .map(|spec| match spec.length {
                PhaseLength::Steps(n) => n,
                PhaseLength::Epochs(e) => (data.pool(spec).len() as u64 * e).div_ceil(batch),
            })
            .sum();
        if self.opts.train.max_steps > 0 { total.min(self.opts.train.max_steps) } else { total }
    }

    fn make_progress(&self) -> ProgressBar {
        if !self.opts.train.progress_bar {
            return ProgressBar::hidden();
        }
        let total = if self.opts.sft.enabled { self.sft_total_steps() } else { 0 }
            + if self.opts.train.enabled { self.rl_planned_steps() } else { 0 };
        let bar = ProgressBar::new(total);
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} ETA {eta} {msg}")
        {
            bar.set_style(style);
        }
        bar.set_position(self.counters.global_step);
        bar
    }

    /// Train to the end (or to `stop_after_steps`).
    pub fn run(&mut self) -> anyhow::Result<Outcome> {
        if let Some(stage) = self.counters.pending_eval.clone() {
            self.evaluate(&stage)?;
        }
        if self.opts.sft.enabled && !self.counters.sft_done && self.run_sft()? == Outcome::Stopped {
            return Ok(Outcome::Stopped);
        }
        if self.opts.train.enabled && !self.counters.rl_done && self.run_rl()? == Outcome::Stopped {
            return Ok(Outcome::Stopped);
        }
        self.progress.finish_with_message("done");
        Ok(Outcome::Finished)
    }

    /// Log a step's record, checkpoint when due, and tell whether the test stop point is reached.
    pub(super) fn after_step(&mut self, record: Record) -> anyhow::Result<bool> {
        self.metrics.write(&record)?;
        self.progress.set_position(self.counters.global_step);
        let every = self.opts.train.checkpoint_every;
        if every > 0 && self.counters.global_step % every == 0 {
            self.save_checkpoint()?;
        }
        self.bump_steps()
    }

    /// Count a step of this process; true when the test stop point is reached.
    pub(super) fn bump_steps(&mut self) -> anyhow::Result<bool> {
        self.steps_this_process += 1;
        Ok(self.opts.stop_after_steps == Some(self.steps_this_process))
    }

    /// A stage ended: checkpoint (noting the pending evaluation), evaluate, clear the note.
    pub(super) fn end_stage(&mut self, stage: &str) -> anyhow::Result<()> {
        tracing::info!(stage, step = self.counters.global_step, "stage finished");
        self.counters.pending_eval = Some(stage.to_string());
        self.save_checkpoint()?;
        self.evaluate(stage)
    }

    fn evaluate(&mut self, stage: &str) -> anyhow::Result<()> {
        if let Some(hook) = &mut self.eval {
            self.progress.set_message(format!("evaluating after {stage}"));
            hook(self.c.policy.as_mut(), stage, self.counters.global_step)
                .with_context(|| format!("evaluation after {stage}"))?;
            self.progress.set_message("");
        }
        self.counters.pending_eval = None;
        Ok(())
    }

    /// Start RL: a fresh optimizer, the reference copy, the first phase's pool.
    pub(super) fn start_rl(&mut self) -> anyhow::Result<()> {
        if let Some(reference) = &mut self.c.reference {
            copy_weights(self.c.policy.as_ref(), reference.as_mut())?;
            // Saved once, so a resumed run's reference is the policy at the start of RL.
            let dir = self.opts.run_dir.join(REFERENCE_DIR);
            let temp = self.opts.run_dir.join(".tmp-reference");
            let _ = std::fs::remove_dir_all(&temp);
            std::fs::create_dir_all(&temp)?;
            reference.save(&temp)?;
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&temp, &dir)?;
        }
        self.optimizer = Some(optim::adamw(self.c.policy.parameters()?, &self.opts.train.optim)?);
        self.counters.optimizer_stage = Some("rl".into());
        self.counters.optimizer_steps = 0;
        if let Some(path) = self.opts.base_difficulty.clone()
            && !path.exists()
        {
            self.write_base_difficulty(&path)?;
        }
        let phase = self.c.curriculum.current_phase()?;
        self.begin_phase(phase)?;
        self.counters.rl_started = true;
        Ok(())
    }

    pub(super) fn begin_phase(&mut self, phase: usize) -> anyhow::Result<()> {
        let spec = self
            .phases
            .get(phase)
            .with_context(|| format!("the curriculum entered phase {phase}, which it does not declare"))?;
        let pool = self.rl_data.as_ref().expect("RL data is prepared when RL is enabled").pool(spec);
        if pool.is_empty() {
            anyhow::bail!(
                "phase {phase} (`{}`) admits no examples: no prompt has {} < tokens <= {}",
                spec.name,
                spec.min_input_tokens_exclusive,
                spec.max_input_tokens
            );
        }
        tracing::info!(phase, name = %spec.name, pool = pool.len(), "phase begins");
        self.c.sampler.begin_phase(phase, &pool)?;
        self.counters.phase = phase;
        self.counters.phase_steps = 0;
        Ok(())
    }

    /// The sampler's draw, checked: as many indices as asked for, each an example of the current
    /// phase's pool or of an earlier phase's (samplers may carry examples over, never forward).
    pub(super) fn check_drawn(&self, indices: &[u32], wanted: usize) -> anyhow::Result<()> {
        let sampler = &self.c.names.sampler;
        if indices.len() != wanted {
            anyhow::bail!("sampler `{sampler}` returned {} indices for a batch of {wanted} prompts", indices.len());
        }
        let data = self.rl_data.as_ref().expect("RL data is prepared when RL is enabled");
        let phase = self.counters.phase;
        for &index in indices {
            let Some(tokens) = data.admitted_tokens(index) else {
                anyhow::bail!(
                    "sampler `{sampler}` returned index {index}, which is no example of any phase's pool \
                     (the data set has {} examples, {} left out as over-long)",
                    data.examples.len(),
                    data.skipped_count
                );
            };
            if !self.phases[..=phase].iter().any(|spec| spec.admits(tokens)) {
                anyhow::bail!(
                    "sampler `{sampler}` returned index {index} (example `{}`, {tokens} prompt tokens), which is in \
                     the pool of neither phase {phase} (`{}`) nor an earlier phase",
                    data.examples[index as usize].id,
                    self.phases[phase].name
                );
            }
        }
        Ok(())
    }

    pub fn save_checkpoint(&mut self) -> anyhow::Result<PathBuf> {
        if let Some(opt) = &self.optimizer {
            self.counters.optimizer_steps = opt.steps_taken();
        }
        let c = &self.c;
        let optimizer = &self.optimizer;
        let counters = &self.counters;
        let dir = checkpoint::write_atomic(
            &self.opts.run_dir,
            counters.global_step,
            self.opts.train.keep_checkpoints as usize,
            |dir| {
                c.policy.save(&dir.join("policy"))?;
                if let Some(opt) = optimizer {
                    opt.save(&dir.join("optimizer.safetensors"))?;
                }
                std::fs::write(dir.join("algorithm.state"), c.algorithm.save_state()?)?;
                std::fs::write(dir.join("curriculum.state"), c.curriculum.save_state()?)?;
                std::fs::write(dir.join("sampler.state"), c.sampler.save_state()?)?;
                // Last: its presence marks the checkpoint complete.
                std::fs::write(dir.join(checkpoint::COMPLETE_MARKER), serde_json::to_vec_pretty(counters)?)?;
                Ok(())
            },
        )?;
        tracing::info!(checkpoint = %dir.display(), "checkpoint saved");
        Ok(dir)
    }
}

fn restore(dir: &Path, c: &mut Components, opts: &TrainOptions) -> anyhow::Result<Counters> {
    let read =
        |name: &str| std::fs::read(dir.join(name)).with_context(|| format!("reading {}", dir.join(name).display()));
    let counters: Counters = serde_json::from_slice(&read(checkpoint::COMPLETE_MARKER)?)
        .with_context(|| format!("parsing {}", dir.join(checkpoint::COMPLETE_MARKER).display()))?;
    if counters.seed != opts.seed {
        anyhow::bail!(
            "checkpoint {} was made with seed {}, the config says {}: resume with the same seed",
            dir.display(),
            counters.seed,
            opts.seed
        );
    }
    c.policy.load_weights(&dir.join("policy"))?;
    c.algorithm.load_state(&read("algorithm.state")?)?;
    c.curriculum.load_state(&read("curriculum.state")?)?;
    c.sampler.load_state(&read("sampler.state")?)?;
    Ok(counters)
}

/// Copy `from`'s weights into `to` (same architecture), parameter by parameter.
pub fn copy_weights(from: &dyn Policy, to: &mut dyn Policy) -> anyhow::Result<()> {
    let source: std::collections::BTreeMap<String, tch::Tensor> = from.parameters()?.into_iter().collect();
    let _guard = tch::no_grad_guard();
    for (name, mut target) in to.parameters()? {
        let src =
            source.get(&name).with_context(|| format!("reference policy has parameter `{name}` the policy lacks"))?;
        target.f_copy_(src).with_context(|| format!("copying parameter `{name}` to the reference policy"))?;
    }
    Ok(())
}
