//! The trainer: the SFT warm-up, then the RL phases of the curriculum, with AdamW, checkpoints
//! that resume exactly, and metrics (JSONL + TensorBoard).
//!
//! It drives every component only through the `longrl_core::api` traits, so tests run it with
//! in-process components and `longrl train` with plugins.

pub mod checkpoint;
pub mod metrics;
pub mod optim;
pub mod plan;
pub mod plot;
pub mod prompts;
pub mod report;
mod rl;
pub mod schedule;
pub mod seeds;
mod sft;
pub mod state;
pub mod tfevents;
mod trainer;

pub use trainer::{Components, EvalHook, Outcome, TrainOptions, Trainer};
