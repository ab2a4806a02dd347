//! Sampler `retrospective`: QwenLong-L1's difficulty-aware retrospective sampling.
//!
//! By default it runs the paper's way: the difficulty of an example is Eq. 10, 1 / the mean reward
//! of the **base model's** G rollouts, read from an offline difficulty file (`longrl difficulty`);
//! an example the base model never solved (mean 0, Eq. 10's infinity) gets `max_difficulty`
//! (default 10: above every finite 1/mean with G <= 10 rollouts). When a phase begins, examples of
//! earlier phases whose base mean reward is at or below `retain_threshold` (0: never solved, as
//! the authors kept them) **join the new phase's pool**; the pool is a dataset drawn without
//! replacement in passes (epochs), each draw picking among the examples not yet drawn in the pass
//! with probability proportional to difficulty. Phase lengths in epochs count passes over that
//! pool (retained examples included).
//!
//! Options: `difficulty = "online"` learns difficulty from the current policy's observed groups
//! instead (seeded by the file when one is given); `mixing = "fixed_share"` draws exactly
//! `round(n * retained_share)` prompts of each batch from the retained examples, with replacement
//! and proportional to difficulty, and the rest from the phase's own examples by shuffled epochs;
//! `measure` weighs examples by another column of the file (the policy's loss on the reference
//! answer, the reasoning steps the reference needs, or the file's own `difficulty`).
//!
//! DAPO's dynamic sampling and retained examples: retained examples are those the base model never
//! solved, so their groups mostly score all 0; dynamic sampling drops every group whose rewards
//! are all equal and generates more prompts in its place. Such retained draws then cost generation
//! and give no gradient until the policy solves them at least once in G tries. At each phase change
//! the sampler estimates the share of retained groups that would be dropped (from their mean
//! reward and the G it has seen, assuming 0/1 rewards) and warns when it is above one half.

mod difficulty;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use longrl_core::abi::Component;
use longrl_core::api::{ComponentContext, ComponentInfo, ComponentKind, PoolItem, Sampler};
use longrl_core::sdk::{config_keys, parse_config};
use longrl_core::{Error, Result};
use longrl_sampler_common::{EpochShuffler, RngState, SamplerRng, derive_seed, weighted_index};
use rand::seq::SliceRandom;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use difficulty::{Entry, Measure, Stats, difficulty, read_file};

const COMPONENT: &str = "sampler/retrospective";

/// Where difficulty comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The base model's offline scores in `difficulty_file` (the paper).
    BaseModel,
    /// The current policy's observed groups, seeded by `difficulty_file` when given.
    Online,
}

/// How retained examples enter later phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mixing {
    /// They join the phase's pool, drawn without replacement by difficulty (the paper).
    Pool,
    /// A fixed share of each batch, drawn with replacement by difficulty.
    FixedShare,
}

/// The sampler's config table. Each field's doc comment is its documentation in `longrl plugins inspect`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetrospectiveConfig {
    /// `base_model`: Eq. 10 from the base model's G rollouts in `difficulty_file` (the paper; required,
    /// the host writes it at RL start when none is given); `online`: learned from the current policy's
    /// observed groups.
    pub difficulty: Source,
    /// The sampling weight: `inverse_mean_reward` (Eq. 10, column `mean_reward`), `reference_loss` (the
    /// policy's loss on the reference answer), `reasoning_steps` (steps the reference needs) or `file`
    /// (the file's `difficulty`); all but the first read that column of `difficulty_file` (base_model only).
    pub measure: Measure,
    /// `pool`: retained examples join the next phase's pool, drawn without replacement per epoch with
    /// probability proportional to difficulty (the paper); `fixed_share`: `retained_share` of each batch
    /// from them.
    pub mixing: Mixing,
    /// Eq. 10's 1 / mean reward is capped here; a never-solved example (mean 0) gets it. Default 10:
    /// above every finite 1/mean with G <= 10 rollouts.
    pub max_difficulty: f64,
    /// Added to the mean reward before inverting (0: Eq. 10 exactly; 0.1 was the old online default).
    pub smoothing: f64,
    /// At a phase change, earlier examples with mean reward <= this stay in the pool (authors: 0, never
    /// solved); the base model's mean with difficulty = base_model, the observed one with online.
    pub retain_threshold: f64,
    /// mixing = fixed_share: fraction of each batch drawn from retained examples: exactly round(n * share)
    /// prompts, with replacement, proportional to difficulty (all of it when the new phase has no examples).
    pub retained_share: f64,
    /// mixing = fixed_share: draw the new phase's examples by difficulty too (with replacement) instead of
    /// shuffled epochs.
    pub weight_new_by_difficulty: bool,
    /// JSONL from `longrl difficulty`: {"id", "mean_reward"} per line, optionally "difficulty",
    /// "reference_loss", "reasoning_steps"; ids are the examples' ids. With online difficulty it seeds
    /// mean rewards (one observed group).
    pub difficulty_file: Option<PathBuf>,
    /// Mixed into the run's seed to pick this sampler's stream (null: the run's seed alone).
    pub seed: Option<u64>,
}

impl Default for RetrospectiveConfig {
    fn default() -> Self {
        RetrospectiveConfig {
            difficulty: Source::BaseModel,
            measure: Measure::InverseMeanReward,
            mixing: Mixing::Pool,
            max_difficulty: 10.0,
            smoothing: 0.0,
            retain_threshold: 0.0,
            retained_share: 0.25,
            weight_new_by_difficulty: false,
            difficulty_file: None,
            seed: None,
        }
    }
}

/// The complete checkpoint state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RetrospectiveState {
    phase: Option<usize>,
    /// The current phase's own examples.
    pool: Vec<u32>,
    /// Hard examples of earlier phases kept in the pool.
    retained: Vec<u32>,
    /// Example -> (mean reward as f64 bits, groups): bits, because a JSON float need not parse back
    /// to the same f64, and one ULP could change a draw after a resume.
    stats: BTreeMap<u32, (u64, u64)>,
    /// Ids of the examples with a line in the difficulty file, by index (their entries are read
    /// from the file again on restore: exact, where JSON floats may not round-trip).
    #[serde(default)]
    offline_ids: BTreeMap<u32, String>,
    shuffler: EpochShuffler,
    /// Draws from the new pool (counts epochs when those are weighted draws with replacement).
    new_draws: u64,
    /// The most rollouts seen in one observed group (G).
    #[serde(default)]
    rollouts: usize,
    rng: RngState,
}

pub struct RetrospectiveSampler {
    config: RetrospectiveConfig,
    /// The difficulty file by example id; `None` until read (see [`Self::file`]).
    file: Option<BTreeMap<String, Entry>>,
    phase: Option<usize>,
    pool: Vec<u32>,
    retained: Vec<u32>,
    stats: BTreeMap<u32, Stats>,
    /// File entries of the examples seen so far, by index, and their ids.
    offline: BTreeMap<u32, Entry>,
    offline_ids: BTreeMap<u32, String>,
    shuffler: EpochShuffler,
    new_draws: u64,
    rollouts: usize,
    rng: SamplerRng,
}

impl Component for RetrospectiveSampler {
    fn info() -> ComponentInfo {
        ComponentInfo {
            kind: ComponentKind::Sampler,
            name: "retrospective".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "QwenLong-L1's difficulty-aware retrospective sampling: difficulty = 1 / the base model's \
                          mean reward (Eq. 10, from an offline difficulty file); examples of earlier phases the base \
                          model never solved join later phases' pools, drawn without replacement with probability \
                          proportional to difficulty. Options: online difficulty, a fixed retained share per batch, \
                          other difficulty measures (reference loss, reasoning steps)."
                .into(),
            config: config_keys::<RetrospectiveConfig>(),
        }
    }

    fn create(config: &serde_json::Value, context: &ComponentContext) -> Result<Self> {
        let config: RetrospectiveConfig = parse_config(COMPONENT, config)?;
        let bad = |key: &str, msg: String| Err(Error::config(key, format!("{COMPONENT}: {msg}")));
        if !(config.smoothing.is_finite() && config.smoothing >= 0.0) {
            return bad("smoothing", format!("must be a number >= 0, got {}", config.smoothing));
        }
        if !(config.max_difficulty.is_finite() && config.max_difficulty > 0.0) {
            return bad("max_difficulty", format!("must be a number > 0, got {}", config.max_difficulty));
        }
        if !config.retain_threshold.is_finite() {
            return bad("retain_threshold", format!("must be a finite number, got {}", config.retain_threshold));
        }
        if !(0.0..=1.0).contains(&config.retained_share) {
            return bad("retained_share", format!("must be in [0, 1], got {}", config.retained_share));
        }
        if config.difficulty == Source::Online && config.measure != Measure::InverseMeanReward {
            return bad(
                "measure",
                format!(
                    "`{}` is read from the difficulty file; online difficulty learns only inverse_mean_reward",
                    config.measure.column()
                ),
            );
        }
        let file = match &config.difficulty_file {
            // The trainer writes the base model's scores at RL start when the run gives none: a
            // file that does not exist yet is read when the first phase begins.
            Some(path) if !path.exists() => {
                tracing::info!(file = %path.display(), "retrospective sampler: difficulty file read when RL begins");
                None
            }
            Some(path) => Some(read_difficulty(path)?),
            None if config.difficulty == Source::BaseModel => {
                return bad(
                    "difficulty_file",
                    "difficulty = \"base_model\" (the paper's Eq. 10) needs the base model's scores: give a file \
                     written by `longrl difficulty` (the trainer writes one at RL start when none is given), or set \
                     difficulty = \"online\""
                        .into(),
                );
            }
            None => Some(BTreeMap::new()),
        };
        let seed = derive_seed(context.seed, config.seed, "sampler/retrospective");
        Ok(RetrospectiveSampler {
            config,
            file,
            phase: None,
            pool: Vec::new(),
            retained: Vec::new(),
            stats: BTreeMap::new(),
            offline: BTreeMap::new(),
            offline_ids: BTreeMap::new(),
            shuffler: EpochShuffler::default(),
            new_draws: 0,
            rollouts: 0,
            rng: SamplerRng::from_seed(seed),
        })
    }
}

fn read_difficulty(path: &std::path::Path) -> Result<BTreeMap<String, Entry>> {
    let file = read_file(path)?;
    tracing::info!(file = %path.display(), examples = file.len(), "retrospective sampler: difficulty file read");
    Ok(file)
}

impl RetrospectiveSampler {
    /// The difficulty file, read now if its reading was deferred.
    fn file(&mut self) -> Result<&BTreeMap<String, Entry>> {
        if self.file.is_none() {
            let path = self.config.difficulty_file.clone().expect("deferred only with a path");
            self.file = Some(read_difficulty(&path)?);
        }
        Ok(self.file.as_ref().expect("read above"))
    }

    fn eq10(&self, mean_reward: f64) -> f64 {
        difficulty(mean_reward, self.config.smoothing, self.config.max_difficulty)
    }

    /// The mean reward retention looks at: the base model's, or the observed one.
    fn retention_mean(&self, index: u32) -> Option<f64> {
        match self.config.difficulty {
            Source::BaseModel => self.offline.get(&index).and_then(|e| e.mean_reward),
            Source::Online => self.stats.get(&index).map(|s| s.mean_reward),
        }
    }

    /// Difficulties of `indices`. Offline: the file's measure (checked present at begin_phase).
    /// Online: examples never observed get the mean of the observed ones (1 when none is), so they
    /// are neither favoured nor starved.
    fn weights(&self, indices: &[u32]) -> Vec<f64> {
        match self.config.difficulty {
            Source::BaseModel => indices
                .iter()
                .map(|i| {
                    let entry = self.offline.get(i).copied().unwrap_or_default();
                    let weight = entry.weight(self.config.measure, self.config.smoothing, self.config.max_difficulty);
                    weight.unwrap_or(self.config.max_difficulty)
                })
                .collect(),
            Source::Online => {
                let known: Vec<Option<f64>> =
                    indices.iter().map(|i| self.stats.get(i).map(|s| self.eq10(s.mean_reward))).collect();
                let observed: Vec<f64> = known.iter().flatten().copied().collect();
                let fallback =
                    if observed.is_empty() { 1.0 } else { observed.iter().sum::<f64>() / observed.len() as f64 };
                known.into_iter().map(|d| d.unwrap_or(fallback)).collect()
            }
        }
    }

    fn draw_weighted(&mut self, indices: &[u32], count: usize) -> Result<Vec<u32>> {
        let weights = self.weights(indices);
        (0..count).map(|_| Ok(indices[weighted_index(&weights, &mut self.rng)?])).collect()
    }

    /// The examples an ending phase hands on: its own and those it retained, if still hard enough.
    fn retain_from_previous(&self, new_pool: &BTreeSet<u32>) -> Result<Vec<u32>> {
        let candidates: BTreeSet<u32> = self.pool.iter().chain(&self.retained).copied().collect();
        let mut kept = Vec::new();
        let mut unknown = Vec::new();
        for i in candidates.into_iter().filter(|i| !new_pool.contains(i)) {
            match self.retention_mean(i) {
                Some(mean) if mean <= self.config.retain_threshold => kept.push(i),
                Some(_) => {}
                // Online: never observed, so there is no evidence it is hard.
                None if self.config.difficulty == Source::Online => {}
                None => unknown.push(i),
            }
        }
        if !unknown.is_empty() {
            return Err(Error::msg(format!(
                "{COMPONENT}: the difficulty file has no `mean_reward` for {} example(s) of earlier phases (indices {}); \
                 retention needs the base model's mean reward",
                unknown.len(),
                first_few(&unknown)
            )));
        }
        Ok(kept)
    }

    /// Offline: every example of a new phase needs its weight in the file.
    fn check_offline(&self, phase: usize, pool: &[PoolItem]) -> Result<()> {
        if self.config.difficulty != Source::BaseModel {
            return Ok(());
        }
        let (measure, smoothing, cap) = (self.config.measure, self.config.smoothing, self.config.max_difficulty);
        let missing: Vec<&str> = pool
            .iter()
            .filter(|item| self.offline.get(&item.index).and_then(|e| e.weight(measure, smoothing, cap)).is_none())
            .map(|item| item.id.as_str())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let file = self.config.difficulty_file.as_ref().map_or(String::new(), |p| p.display().to_string());
        Err(Error::msg(format!(
            "{COMPONENT}: difficulty file {file} has no `{}` for {} of phase {phase}'s {} examples (ids {}); \
             score them with `longrl difficulty` or choose another `measure`",
            measure.column(),
            missing.len(),
            pool.len(),
            first_few(&missing)
        )))
    }

    /// The expected share of retained groups whose G rewards are all equal (0/1 rewards: m^G +
    /// (1-m)^G for mean reward m; a mean of 0 or 1 gives 1 whatever G).
    fn retained_zero_variance_share(&self) -> f64 {
        if self.retained.is_empty() {
            return 0.0;
        }
        let g = self.rollouts.max(1) as i32;
        let total: f64 = self
            .retained
            .iter()
            .map(|&i| {
                let m = self.retention_mean(i).unwrap_or(0.0).clamp(0.0, 1.0);
                if self.rollouts == 0 && m > 0.0 && m < 1.0 { 0.0 } else { m.powi(g) + (1.0 - m).powi(g) }
            })
            .sum();
        total / self.retained.len() as f64
    }

    fn warn_about_dynamic_sampling(&self, phase: usize) {
        let share = self.retained_zero_variance_share();
        if share > 0.5 {
            tracing::warn!(
                phase,
                retained = self.retained.len(),
                expected_dropped_share = share,
                "retrospective sampler: about {:.0}% of the retained examples' groups are expected to score all the \
                 same (the base model never solved them); with DAPO's dynamic sampling those groups are dropped and \
                 regenerated, so retained draws mostly cost generation without a gradient until the policy solves \
                 them (see the sampler's docs)",
                share * 100.0
            );
        }
    }
}

fn first_few<T: std::fmt::Display>(items: &[T]) -> String {
    let mut shown: Vec<String> = items.iter().take(5).map(|x| format!("`{x}`")).collect();
    if items.len() > 5 {
        shown.push(format!("and {} more", items.len() - 5));
    }
    shown.join(", ")
}

impl Sampler for RetrospectiveSampler {
    fn begin_phase(&mut self, phase: usize, pool: &[PoolItem]) -> Result<()> {
        let indices: Vec<u32> = pool.iter().map(|p| p.index).collect();
        // After a restore the trainer may announce the phase it is already in: keep the position.
        if self.phase == Some(phase) && self.pool == indices {
            tracing::debug!(phase, "retrospective sampler: phase already begun, keeping its position");
            return Ok(());
        }
        let mut from_file = 0usize;
        self.file()?;
        for item in pool {
            if let Some(entry) = self.file.as_ref().expect("read above").get(&item.id) {
                self.offline.insert(item.index, *entry);
                self.offline_ids.insert(item.index, item.id.clone());
                from_file += 1;
                if self.config.difficulty == Source::Online
                    && let Some(mean) = entry.mean_reward
                    && !self.stats.contains_key(&item.index)
                {
                    self.stats.insert(item.index, Stats::seeded(mean));
                }
            }
        }
        self.check_offline(phase, pool)?;
        let new_set: BTreeSet<u32> = indices.iter().copied().collect();
        let retained = if phase > 0 && self.phase.is_some() {
            self.retain_from_previous(&new_set)?
        } else {
            if phase > 0 {
                tracing::warn!(phase, "retrospective sampler: no earlier phase was seen, so nothing is retained");
            }
            Vec::new()
        };
        if indices.is_empty() && retained.is_empty() {
            return Err(Error::msg(format!(
                "{COMPONENT}: phase {phase} admits no examples and none are retained; nothing to sample"
            )));
        }
        tracing::info!(
            phase,
            pool = indices.len(),
            retained = retained.len(),
            from_file,
            mixing = ?self.config.mixing,
            "retrospective sampler: new phase"
        );
        self.phase = Some(phase);
        self.retained = retained;
        let drawn = match self.config.mixing {
            Mixing::Pool => indices.iter().chain(&self.retained).copied().collect(),
            Mixing::FixedShare => indices.clone(),
        };
        self.shuffler = EpochShuffler::new(drawn);
        self.pool = indices;
        self.new_draws = 0;
        self.warn_about_dynamic_sampling(phase);
        Ok(())
    }

    fn next_batch(&mut self, n: usize) -> Result<Vec<u32>> {
        if self.phase.is_none() {
            return Err(Error::msg(format!("{COMPONENT}: next_batch called before begin_phase")));
        }
        if self.config.mixing == Mixing::Pool {
            let drawn = self.shuffler.pool().to_vec();
            let weights: BTreeMap<u32, f64> = drawn.iter().copied().zip(self.weights(&drawn)).collect();
            let mut batch = Vec::with_capacity(n);
            for _ in 0..n {
                let index = self.shuffler.next_weighted(&mut self.rng, |i| weights.get(&i).copied().unwrap_or(0.0));
                batch.push(index.map_err(|e| e.context(COMPONENT))?);
            }
            self.new_draws += n as u64;
            return Ok(batch);
        }
        let from_retained = if self.retained.is_empty() {
            0
        } else if self.pool.is_empty() {
            n
        } else {
            ((n as f64 * self.config.retained_share).round() as usize).min(n)
        };
        let retained = self.retained.clone();
        let mut batch = self.draw_weighted(&retained, from_retained)?;
        let from_new = n - from_retained;
        if self.config.weight_new_by_difficulty {
            let pool = self.pool.clone();
            batch.extend(self.draw_weighted(&pool, from_new)?);
        } else {
            for _ in 0..from_new {
                batch.push(self.shuffler.next(&mut self.rng)?);
            }
        }
        self.new_draws += from_new as u64;
        // Mix retained and new prompts so neither sits at a fixed position in the batch.
        batch.shuffle(&mut self.rng.0);
        Ok(batch)
    }

    fn observe(&mut self, index: u32, rewards: &[f32]) -> Result<()> {
        if rewards.is_empty() {
            return Err(Error::msg(format!("{COMPONENT}: observe({index}) got no rewards")));
        }
        if let Some(r) = rewards.iter().find(|r| !r.is_finite()) {
            return Err(Error::msg(format!("{COMPONENT}: observe({index}) got a non-finite reward {r}")));
        }
        self.rollouts = self.rollouts.max(rewards.len());
        let group_mean = rewards.iter().map(|&r| f64::from(r)).sum::<f64>() / rewards.len() as f64;
        match self.stats.get_mut(&index) {
            Some(stats) => stats.observe(group_mean),
            None => {
                self.stats.insert(index, Stats::seeded(group_mean));
            }
        }
        Ok(())
    }

    fn epochs_completed(&self) -> Result<u64> {
        Ok(match self.config.mixing {
            Mixing::FixedShare if self.config.weight_new_by_difficulty => {
                if self.pool.is_empty() {
                    0
                } else {
                    self.new_draws / self.pool.len() as u64
                }
            }
            _ => self.shuffler.epochs_completed(),
        })
    }

    fn metrics(&self) -> Result<BTreeMap<String, f64>> {
        let active: Vec<u32> = self.pool.iter().chain(&self.retained).copied().collect();
        let weights = self.weights(&active);
        let mean = |xs: &[f64]| {
            if xs.is_empty() { 0.0 } else { xs.iter().sum::<f64>() / xs.len() as f64 }
        };
        Ok(BTreeMap::from([
            ("pool_size".to_string(), self.pool.len() as f64),
            ("retained_count".to_string(), self.retained.len() as f64),
            ("mean_difficulty".to_string(), mean(&weights)),
            ("retained_mean_difficulty".to_string(), mean(&weights[self.pool.len()..])),
            ("retained_zero_variance_share".to_string(), self.retained_zero_variance_share()),
            ("observed_examples".to_string(), active.iter().filter(|i| self.stats.contains_key(i)).count() as f64),
            ("epochs_completed".to_string(), self.epochs_completed()? as f64),
        ]))
    }

    fn save_state(&self) -> Result<Vec<u8>> {
        let state = RetrospectiveState {
            phase: self.phase,
            pool: self.pool.clone(),
            retained: self.retained.clone(),
            stats: self.stats.iter().map(|(&i, s)| (i, (s.mean_reward.to_bits(), s.groups))).collect(),
            offline_ids: self.offline_ids.clone(),
            shuffler: self.shuffler.clone(),
            new_draws: self.new_draws,
            rollouts: self.rollouts,
            rng: self.rng.state(),
        };
        Ok(serde_json::to_vec(&state)?)
    }

    fn load_state(&mut self, state: &[u8]) -> Result<()> {
        let s: RetrospectiveState = serde_json::from_slice(state)
            .map_err(|e| Error::msg(format!("{COMPONENT}: malformed saved state: {e}")))?;
        self.rng = SamplerRng::from_state(&s.rng).map_err(|e| e.context(COMPONENT))?;
        self.phase = s.phase;
        self.pool = s.pool;
        self.retained = s.retained;
        self.stats = s
            .stats
            .into_iter()
            .map(|(i, (bits, groups))| (i, Stats { mean_reward: f64::from_bits(bits), groups }))
            .collect();
        let mut offline = BTreeMap::new();
        let file = if s.offline_ids.is_empty() { &BTreeMap::new() } else { self.file()? };
        for (&index, id) in &s.offline_ids {
            let Some(entry) = file.get(id) else {
                return Err(Error::msg(format!(
                    "{COMPONENT}: the saved state uses example `{id}` of the difficulty file, which no longer has it"
                )));
            };
            offline.insert(index, *entry);
        }
        self.offline = offline;
        self.offline_ids = s.offline_ids;
        self.shuffler = s.shuffler;
        self.new_draws = s.new_draws;
        self.rollouts = s.rollouts;
        Ok(())
    }
}

longrl_core::export_plugin!(sampler: [RetrospectiveSampler]);

#[cfg(test)]
mod tests;
