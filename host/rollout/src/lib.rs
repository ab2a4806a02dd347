//! From prompts to rewarded groups: the one rollout -> reward -> group pipeline ([`roll_out`]) that
//! training, stage evaluation, the benchmarks and `longrl difficulty` share, the [`Generator`] it
//! draws responses from, and the configured rewards as one [`RewardSet`].

mod difficulty;
mod generator;
mod pipeline;
mod reward_set;

pub use difficulty::{DifficultyRow, score_difficulty, write_difficulty};
pub use generator::{Generator, LocalPolicy};
pub use pipeline::{Group, Response, Rollout, RolloutPrompt, RolloutSpec, Rollouts, roll_out, score_groups};
pub use reward_set::{FAILED_CALLS_METRIC, FALLBACK_METRIC, RewardSet, is_unscored};
