//! Shared pieces of the sampler plugins: a seeded RNG whose state saves and restores exactly,
//! shuffled passes over a pool, and draws proportional to weights.
//!
//! A plain rlib (no `export_plugin!`), so each sampler cdylib links it without exporting its symbols twice.

mod epochs;
mod rng;
mod weighted;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use epochs::EpochShuffler;
pub use rng::{RngState, SamplerRng, derive_seed};
pub use weighted::weighted_index;
