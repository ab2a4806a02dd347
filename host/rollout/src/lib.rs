//! From prompts to rewarded groups: the configured rewards as one [`RewardSet`].

mod reward_set;

pub use reward_set::{FAILED_CALLS_METRIC, FALLBACK_METRIC, RewardSet};
