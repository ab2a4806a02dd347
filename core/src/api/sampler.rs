//! The sampler: picks the next prompts of a phase and learns from the rewards they earned.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Result;

/// An example a phase may draw, as the sampler sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolItem {
    /// Index into the run's dataset; what `next_batch` returns.
    pub index: u32,
    /// Stable id of the example (for offline difficulty files).
    pub id: String,
    pub prompt_tokens: u64,
    pub data_source: String,
}

pub trait Sampler: Send {
    /// A phase starts with the examples it admits. Samplers may keep examples of earlier phases.
    fn begin_phase(&mut self, phase: usize, pool: &[PoolItem]) -> Result<()>;
    /// The next `n` dataset indices to roll out.
    fn next_batch(&mut self, n: usize) -> Result<Vec<u32>>;
    /// Rewards of the rollouts of one example (a group).
    fn observe(&mut self, index: u32, rewards: &[f32]) -> Result<()>;
    /// Full passes over the phase's pool completed so far.
    fn epochs_completed(&self) -> Result<u64>;
    /// Diagnostics for the metrics log (pool size, retained hard examples, ...).
    fn metrics(&self) -> Result<BTreeMap<String, f64>> {
        Ok(BTreeMap::new())
    }
    /// Complete state, RNG included.
    fn save_state(&self) -> Result<Vec<u8>>;
    fn load_state(&mut self, state: &[u8]) -> Result<()>;
}
