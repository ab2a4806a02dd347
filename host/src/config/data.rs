//! `[data]`: the training data and how prompts are built from it (owned by the data loader).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// RL training files: verl-style parquet or JSONL.
    pub train_files: Vec<PathBuf>,
    /// SFT traces (JSONL or parquet) for the warm-up stage.
    pub sft_files: Vec<PathBuf>,
    /// What to do with prompts over a phase's input limit: `truncate-middle` or `skip`.
    pub overlong_prompts: String,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig { train_files: Vec::new(), sft_files: Vec::new(), overlong_prompts: "truncate-middle".into() }
    }
}
