//! Sampler `uniform`: each phase's pool in a fresh random order per pass (epoch), seeded from the
//! run's seed. Its state (pool, position, RNG) saves and restores exactly.

use std::collections::BTreeMap;

use longrl_core::abi::Component;
use longrl_core::api::{ComponentContext, ComponentInfo, ComponentKind, PoolItem, Sampler};
use longrl_core::sdk::{config_keys, parse_config};
use longrl_core::{Error, Result};
use longrl_sampler_common::{EpochShuffler, RngState, SamplerRng, derive_seed};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const COMPONENT: &str = "sampler/uniform";

/// The sampler's config table. Each field's doc comment is its documentation in `longrl plugins inspect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct UniformConfig {
    /// Mixed into the run's seed to pick this sampler's stream (null: the run's seed alone).
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UniformState {
    /// `None` before the first phase begins.
    phase: Option<usize>,
    shuffler: EpochShuffler,
    rng: RngState,
}

pub struct UniformSampler {
    phase: Option<usize>,
    shuffler: EpochShuffler,
    rng: SamplerRng,
}

impl Component for UniformSampler {
    fn info() -> ComponentInfo {
        ComponentInfo {
            kind: ComponentKind::Sampler,
            name: "uniform".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Shuffled epochs over the current phase's pool, seeded from the run's seed; \
                          checkpoints its complete state (RNG included) so a resumed run draws the same prompts."
                .into(),
            config: config_keys::<UniformConfig>(),
        }
    }

    fn create(config: &serde_json::Value, context: &ComponentContext) -> Result<Self> {
        let config: UniformConfig = parse_config(COMPONENT, config)?;
        let seed = derive_seed(context.seed, config.seed, "sampler/uniform");
        Ok(UniformSampler { phase: None, shuffler: EpochShuffler::default(), rng: SamplerRng::from_seed(seed) })
    }
}

impl Sampler for UniformSampler {
    fn begin_phase(&mut self, phase: usize, pool: &[PoolItem]) -> Result<()> {
        if pool.is_empty() {
            return Err(Error::msg(format!("{COMPONENT}: phase {phase} admits no examples; nothing to sample")));
        }
        let indices: Vec<u32> = pool.iter().map(|p| p.index).collect();
        // After a restore the trainer may announce the phase it is already in: keep the position
        // rather than restart the epoch, so resuming in either order draws the same prompts.
        if self.phase == Some(phase) && self.shuffler.pool() == indices.as_slice() {
            tracing::debug!(phase, "uniform sampler: phase already begun, keeping its position");
            return Ok(());
        }
        tracing::info!(phase, pool = indices.len(), "uniform sampler: new phase");
        self.phase = Some(phase);
        self.shuffler = EpochShuffler::new(indices);
        Ok(())
    }

    fn next_batch(&mut self, n: usize) -> Result<Vec<u32>> {
        if self.phase.is_none() {
            return Err(Error::msg(format!("{COMPONENT}: next_batch called before begin_phase")));
        }
        (0..n).map(|_| self.shuffler.next(&mut self.rng)).collect()
    }

    fn observe(&mut self, _index: u32, _rewards: &[f32]) -> Result<()> {
        Ok(()) // uniform sampling ignores rewards
    }

    fn epochs_completed(&self) -> Result<u64> {
        Ok(self.shuffler.epochs_completed())
    }

    fn metrics(&self) -> Result<BTreeMap<String, f64>> {
        Ok(BTreeMap::from([
            ("pool_size".to_string(), self.shuffler.pool().len() as f64),
            ("epochs_completed".to_string(), self.shuffler.epochs_completed() as f64),
            ("epoch_position".to_string(), self.shuffler.position() as f64),
        ]))
    }

    fn save_state(&self) -> Result<Vec<u8>> {
        let state = UniformState { phase: self.phase, shuffler: self.shuffler.clone(), rng: self.rng.state() };
        Ok(serde_json::to_vec(&state)?)
    }

    fn load_state(&mut self, state: &[u8]) -> Result<()> {
        let state: UniformState = serde_json::from_slice(state)
            .map_err(|e| Error::msg(format!("{COMPONENT}: malformed saved state: {e}")))?;
        self.rng = SamplerRng::from_state(&state.rng).map_err(|e| e.context(COMPONENT))?;
        self.phase = state.phase;
        self.shuffler = state.shuffler;
        Ok(())
    }
}

longrl_core::export_plugin!(sampler: [UniformSampler]);

#[cfg(test)]
mod tests {
    use super::*;
    use longrl_sampler_common::testing;
    use serde_json::json;

    fn pool(range: std::ops::Range<u32>) -> Vec<PoolItem> {
        range
            .map(|i| PoolItem { index: i, id: format!("ex{i}"), prompt_tokens: 100, data_source: "d".into() })
            .collect()
    }

    fn sampler(run_seed: u64, config: serde_json::Value) -> UniformSampler {
        let ctx = ComponentContext { seed: run_seed, ..Default::default() };
        UniformSampler::create(&config, &ctx).unwrap()
    }

    #[test]
    fn epochs_cover_the_pool_and_are_counted() {
        let mut s = sampler(1, json!({}));
        s.begin_phase(0, &pool(10..20)).unwrap();
        let mut first: Vec<u32> = s.next_batch(4).unwrap();
        assert_eq!(s.epochs_completed().unwrap(), 0);
        first.extend(s.next_batch(6).unwrap());
        assert_eq!(s.epochs_completed().unwrap(), 1);
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, (10..20).collect::<Vec<_>>());
        // A batch crossing an epoch boundary finishes one pass and starts the next.
        let crossing = s.next_batch(15).unwrap();
        assert_eq!(s.epochs_completed().unwrap(), 2);
        assert_eq!(s.metrics().unwrap()["epoch_position"], 5.0);
        let mut second_epoch = crossing[..10].to_vec();
        second_epoch.sort();
        assert_eq!(second_epoch, (10..20).collect::<Vec<_>>());
    }

    #[test]
    fn seeds_change_the_order_and_are_reproducible() {
        let draw = |run_seed, config| {
            let mut s = sampler(run_seed, config);
            s.begin_phase(0, &pool(0..50)).unwrap();
            s.next_batch(50).unwrap()
        };
        assert_eq!(draw(1, json!({})), draw(1, json!({})));
        assert_ne!(draw(1, json!({})), draw(2, json!({})));
        assert_ne!(draw(1, json!({})), draw(1, json!({"seed": 9})));
    }

    #[test]
    fn restore_continues_identically_across_epochs_and_phases() {
        let mut a = sampler(4, json!({}));
        a.begin_phase(0, &pool(0..7)).unwrap();
        a.next_batch(5).unwrap();
        let saved = a.save_state().unwrap();
        let mut b = sampler(999, json!({})); // a different seed: everything must come from the state
        b.load_state(&saved).unwrap();
        // The trainer may or may not re-announce the current phase on resume; both must work.
        b.begin_phase(0, &pool(0..7)).unwrap();
        let no_rewards = |_, _| Vec::new();
        testing::assert_continue_alike(&mut a, &mut b, 5, 3, no_rewards, 1, &pool(7..30));
    }

    #[test]
    fn misuse_is_an_error() {
        testing::assert_refuses_misuse(&mut sampler(1, json!({})), b"[]");
        let err = UniformSampler::create(&json!({"sed": 1}), &ComponentContext::default()).err().unwrap();
        assert!(err.to_string().contains("sed"));
    }
}
