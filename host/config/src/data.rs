//! `[data]`: the training data and how prompts are built from it (owned by the data loader).

use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The data source of rows without one: free-form answers, scored like the recipe's DocQA sets.
pub const DEFAULT_DATA_SOURCE: &str = "docqa";

/// What happens to a prompt over the input limit (`data.overlong_prompts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverlongPolicy {
    /// Keep the head and the tail of the last user message (the host's one truncation rule, as the
    /// reference harness does).
    TruncateMiddle,
    Skip,
}

impl FromStr for OverlongPolicy {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "truncate-middle" => Ok(OverlongPolicy::TruncateMiddle),
            "skip" => Ok(OverlongPolicy::Skip),
            other => anyhow::bail!("config key `data.overlong_prompts`: `{other}` is not one of truncate-middle, skip"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// RL training files: verl-style parquet or JSONL.
    pub train_files: Vec<PathBuf>,
    /// SFT traces (JSONL or parquet) for the warm-up stage.
    pub sft_files: Vec<PathBuf>,
    /// Evaluation files (same formats as `train_files`), scored after each stage.
    pub eval_files: Vec<PathBuf>,
    /// What to do with prompts over a phase's input limit: `truncate-middle` or `skip`.
    pub overlong_prompts: String,
    /// Use only the first this many training examples (0: all).
    pub max_examples: usize,
    /// Use only the first this many SFT traces (0: all).
    pub max_sft_examples: usize,
    /// Use only the first this many evaluation examples (0: all).
    pub max_eval_examples: usize,
    /// `data_source` of rows that name none (routes the reward; `docqa` scores free-form answers).
    pub default_data_source: String,
    /// Cache prompt token lengths (which set the phase pools) under `RUN_DIR/cache`, so a resumed or
    /// later run skips measuring every prompt; a prompt is tokenized when it is first drawn.
    pub cache_lengths: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            train_files: Vec::new(),
            sft_files: Vec::new(),
            eval_files: Vec::new(),
            overlong_prompts: "truncate-middle".into(),
            max_examples: 0,
            max_sft_examples: 0,
            max_eval_examples: 0,
            default_data_source: DEFAULT_DATA_SOURCE.into(),
            cache_lengths: true,
        }
    }
}

impl DataConfig {
    /// `overlong_prompts` parsed (the error names the key).
    pub fn overlong_policy(&self) -> anyhow::Result<OverlongPolicy> {
        self.overlong_prompts.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlong_policy_parses_and_names_the_key() {
        assert_eq!("skip".parse::<OverlongPolicy>().unwrap(), OverlongPolicy::Skip);
        assert_eq!("truncate-middle".parse::<OverlongPolicy>().unwrap(), OverlongPolicy::TruncateMiddle);
        let err = "drop".parse::<OverlongPolicy>().unwrap_err().to_string();
        assert!(err.contains("data.overlong_prompts") && err.contains("drop"), "{err}");
    }
}
