//! The trainer: the SFT warm-up, then the RL phases of the curriculum, with AdamW, checkpoints
//! that resume exactly, and metrics (JSONL + TensorBoard).
//!
//! It drives every component only through the `longrl_core::api` traits, so tests run it with
//! in-process components and `longrl train` with plugins. RL rollouts come from the policy, or from
//! vLLM / SGLang servers the trainer pushes its weights to after every step (`[rollout]`).

mod base_difficulty;
pub mod checkpoint;
pub mod checks;
mod optim;
pub mod plan;
mod prompts;
mod rl;
mod rollout_log;
mod schedule;
pub mod seeds;
mod servers;
mod sft;
mod state;
mod trainer;

pub use state::Counters;
pub use trainer::{ComponentNames, Components, EvalHook, Outcome, TrainOptions, Trainer};
