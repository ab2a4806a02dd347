//! Sampler `retrospective`: QwenLong-L1's difficulty-aware retrospective sampling. Every observed
//! group updates its example's mean reward and so its difficulty, 1 / (mean reward + smoothing)
//! (Eq. 10). When a new phase begins, examples of earlier phases whose mean reward is at or below
//! `retain_threshold` (0: never solved, as the authors kept them) stay in the pool; each batch then
//! draws exactly `round(n * retained_share)` of its prompts from them, with replacement and with
//! probability proportional to difficulty, and the rest from the new phase by shuffled epochs (or by
//! difficulty with `weight_new_by_difficulty`). Difficulties can start from an offline file
//! (`longrl difficulty`), the way the authors ran it.

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

pub use difficulty::{Stats, difficulty, read_file};

const COMPONENT: &str = "sampler/retrospective";

/// The sampler's config table. Each field's doc comment is its documentation in `longrl plugins inspect`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetrospectiveConfig {
    /// Difficulty = 1 / (max(mean reward, 0) + smoothing): a never-solved example has difficulty
    /// 1/smoothing (10 at 0.1) instead of infinity; must be > 0.
    pub smoothing: f64,
    /// At a phase change, earlier examples with mean reward <= this stay in the pool (authors: 0).
    pub retain_threshold: f64,
    /// Fraction of each batch drawn from retained examples: exactly round(n * share) prompts, with
    /// replacement, proportional to difficulty (all of it when the new phase has no examples, none
    /// when nothing is retained).
    pub retained_share: f64,
    /// Draw the new phase's examples by difficulty too (with replacement) instead of shuffled epochs.
    pub weight_new_by_difficulty: bool,
    /// JSONL from `longrl difficulty` ({"id", "difficulty", "mean_reward"} per line) seeding examples'
    /// mean reward by id, counted as one observed group; null: start with no knowledge.
    pub difficulty_file: Option<PathBuf>,
    /// Mixed into the run's seed to pick this sampler's stream (null: the run's seed alone).
    pub seed: Option<u64>,
}

impl Default for RetrospectiveConfig {
    fn default() -> Self {
        RetrospectiveConfig {
            smoothing: 0.1,
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
    shuffler: EpochShuffler,
    /// Draws from the new pool (counts epochs when those are weighted draws).
    new_draws: u64,
    rng: RngState,
}

pub struct RetrospectiveSampler {
    config: RetrospectiveConfig,
    /// Offline mean rewards by example id, applied to examples as their phase begins.
    seeds: BTreeMap<String, f64>,
    phase: Option<usize>,
    pool: Vec<u32>,
    retained: Vec<u32>,
    stats: BTreeMap<u32, Stats>,
    shuffler: EpochShuffler,
    new_draws: u64,
    rng: SamplerRng,
}

impl Component for RetrospectiveSampler {
    fn info() -> ComponentInfo {
        ComponentInfo {
            kind: ComponentKind::Sampler,
            name: "retrospective".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "QwenLong-L1's difficulty-aware retrospective sampling: keeps unsolved examples of earlier \
                          phases and mixes them into later phases with probability proportional to difficulty \
                          (1 / mean reward, Eq. 10); learns difficulty online and/or from an offline difficulty file."
                .into(),
            config: config_keys::<RetrospectiveConfig>(),
        }
    }

    fn create(config: &serde_json::Value, context: &ComponentContext) -> Result<Self> {
        let config: RetrospectiveConfig = parse_config(COMPONENT, config)?;
        let bad = |key: &str, msg: String| Err(Error::config(key, format!("{COMPONENT}: {msg}")));
        if !(config.smoothing.is_finite() && config.smoothing > 0.0) {
            return bad("smoothing", format!("must be a number > 0, got {}", config.smoothing));
        }
        if !config.retain_threshold.is_finite() {
            return bad("retain_threshold", format!("must be a finite number, got {}", config.retain_threshold));
        }
        if !(0.0..=1.0).contains(&config.retained_share) {
            return bad("retained_share", format!("must be in [0, 1], got {}", config.retained_share));
        }
        let seeds = match &config.difficulty_file {
            Some(path) => {
                let seeds = read_file(path)?;
                tracing::info!(file = %path.display(), examples = seeds.len(), "retrospective sampler: difficulty file read");
                seeds
            }
            None => BTreeMap::new(),
        };
        let seed = derive_seed(context.seed, config.seed, "sampler/retrospective");
        Ok(RetrospectiveSampler {
            config,
            seeds,
            phase: None,
            pool: Vec::new(),
            retained: Vec::new(),
            stats: BTreeMap::new(),
            shuffler: EpochShuffler::default(),
            new_draws: 0,
            rng: SamplerRng::from_seed(seed),
        })
    }
}

impl RetrospectiveSampler {
    fn difficulty_of(&self, index: u32) -> Option<f64> {
        self.stats.get(&index).map(|s| difficulty(s.mean_reward, self.config.smoothing))
    }

    /// Difficulties of `indices`; examples never observed get the mean of the observed ones (1 when
    /// none is), so they are neither favoured nor starved.
    fn weights(&self, indices: &[u32]) -> Vec<f64> {
        let known: Vec<Option<f64>> = indices.iter().map(|&i| self.difficulty_of(i)).collect();
        let observed: Vec<f64> = known.iter().flatten().copied().collect();
        let fallback = if observed.is_empty() { 1.0 } else { observed.iter().sum::<f64>() / observed.len() as f64 };
        known.into_iter().map(|d| d.unwrap_or(fallback)).collect()
    }

    fn draw_weighted(&mut self, indices: &[u32], count: usize) -> Result<Vec<u32>> {
        let weights = self.weights(indices);
        (0..count).map(|_| Ok(indices[weighted_index(&weights, &mut self.rng)?])).collect()
    }

    /// The examples an ending phase hands on: its own and those it retained, if still hard enough.
    fn retain_from_previous(&self, new_pool: &BTreeSet<u32>) -> Vec<u32> {
        let candidates: BTreeSet<u32> = self.pool.iter().chain(&self.retained).copied().collect();
        candidates
            .into_iter()
            .filter(|i| !new_pool.contains(i))
            .filter(|i| self.stats.get(i).is_some_and(|s| s.mean_reward <= self.config.retain_threshold))
            .collect()
    }
}

impl Sampler for RetrospectiveSampler {
    fn begin_phase(&mut self, phase: usize, pool: &[PoolItem]) -> Result<()> {
        let indices: Vec<u32> = pool.iter().map(|p| p.index).collect();
        // After a restore the trainer may announce the phase it is already in: keep the position.
        if self.phase == Some(phase) && self.pool == indices {
            tracing::debug!(phase, "retrospective sampler: phase already begun, keeping its position");
            return Ok(());
        }
        let mut seeded = 0usize;
        for item in pool {
            if let Some(&mean) = self.seeds.get(&item.id)
                && !self.stats.contains_key(&item.index)
            {
                self.stats.insert(item.index, Stats::seeded(mean));
                seeded += 1;
            }
        }
        let new_set: BTreeSet<u32> = indices.iter().copied().collect();
        let retained = if phase > 0 && self.phase.is_some() {
            self.retain_from_previous(&new_set)
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
            seeded_from_file = seeded,
            "retrospective sampler: new phase"
        );
        self.phase = Some(phase);
        self.retained = retained;
        self.shuffler = EpochShuffler::new(indices.clone());
        self.pool = indices;
        self.new_draws = 0;
        Ok(())
    }

    fn next_batch(&mut self, n: usize) -> Result<Vec<u32>> {
        if self.phase.is_none() {
            return Err(Error::msg(format!("{COMPONENT}: next_batch called before begin_phase")));
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
        Ok(if self.config.weight_new_by_difficulty {
            if self.pool.is_empty() { 0 } else { self.new_draws / self.pool.len() as u64 }
        } else {
            self.shuffler.epochs_completed()
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
            shuffler: self.shuffler.clone(),
            new_draws: self.new_draws,
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
        self.shuffler = s.shuffler;
        self.new_draws = s.new_draws;
        Ok(())
    }
}

longrl_core::export_plugin!(sampler: [RetrospectiveSampler]);

#[cfg(test)]
mod tests;
