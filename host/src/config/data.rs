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
            default_data_source: crate::data::DEFAULT_DATA_SOURCE.into(),
            cache_lengths: true,
        }
    }
}

impl DataConfig {
    /// `overlong_prompts` parsed (the error names the key).
    pub fn overlong_policy(&self) -> anyhow::Result<crate::data::OverlongPolicy> {
        self.overlong_prompts.parse()
    }

    /// How training rows become examples.
    pub fn train_options(&self) -> crate::data::LoadOptions {
        crate::data::LoadOptions {
            default_data_source: self.default_data_source.clone(),
            max_examples: self.max_examples,
        }
    }

    /// How evaluation rows become examples.
    pub fn eval_options(&self) -> crate::data::LoadOptions {
        crate::data::LoadOptions {
            default_data_source: self.default_data_source.clone(),
            max_examples: self.max_eval_examples,
        }
    }
}
