//! The trainer: the SFT warm-up, then the RL phases of the curriculum, with AdamW, checkpoints
//! that resume exactly, and metrics (JSONL + TensorBoard).
//!
//! It drives every component only through the `longrl_core::api` traits, so tests run it with
//! in-process components and `longrl train` with plugins.

pub mod checkpoint;
mod optim;
pub mod plan;
mod prompts;
mod rl;
mod schedule;
pub mod seeds;
mod sft;
mod state;
mod trainer;

pub use state::Counters;
pub use trainer::{Components, EvalHook, Outcome, TrainOptions, Trainer};
