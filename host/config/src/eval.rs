//! `[eval]`: the long-context DocQA benchmarks, run by `longrl eval` and by the trainer after each
//! stage (owned by the evaluation harness). Defaults are the paper's protocol.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Evaluate after each training stage.
    pub enabled: bool,
    /// Benchmarks to run: docmath, frames, 2wikimqa, hotpotqa, musique, narrativeqa, qasper.
    pub benchmarks: Vec<String>,
    /// Directory holding `<bench>.jsonl` (or `.json`) files, or one file when one benchmark is named.
    pub data: PathBuf,
    /// Per-benchmark data files, overriding `data` for the benchmarks they name.
    pub files: BTreeMap<String, PathBuf>,
    /// Evaluate only the first this many rows of each benchmark (0: all).
    pub limit: usize,
    /// Responses sampled per question (K): accuracy is their mean, pass@k is reported for k <= K.
    pub samples: u32,
    /// Prompts longer than this (tokens of the user message) are truncated in the middle.
    pub max_input_tokens: u32,
    /// Cap on response tokens.
    pub max_output_tokens: u32,
    pub temperature: f32,
    /// Nucleus sampling mass (1.0 disables it).
    pub top_p: f32,
    /// Prompts per `generate` call (bounds the KV cache).
    pub batch_prompts: u32,
    /// Prefill long prompts this many tokens at a time (0: all at once).
    pub prefill_chunk: u32,
    /// Seed of the first generation call; later calls use the following seeds.
    pub seed: u64,
    /// Config table of the `rule` reward (e.g. `{ require_think = false }` for non-thinking models).
    pub rule: serde_json::Value,
    /// OpenAI-compatible base URL of the LLM judge (empty: rule only).
    pub judge_url: String,
    /// Model name sent to the judge.
    pub judge_model: String,
}

impl Default for EvalConfig {
    /// The paper: every benchmark, 120K input, 10K output, temperature 0.7, top-p 0.95, one sample.
    fn default() -> Self {
        EvalConfig {
            enabled: false,
            benchmarks: ["docmath", "frames", "2wikimqa", "hotpotqa", "musique", "narrativeqa", "qasper"]
                .map(String::from)
                .to_vec(),
            data: PathBuf::from("data/eval"),
            files: BTreeMap::new(),
            limit: 0,
            samples: 1,
            max_input_tokens: 120_000,
            max_output_tokens: 10_000,
            temperature: 0.7,
            top_p: 0.95,
            batch_prompts: 8,
            prefill_chunk: 0,
            seed: 0,
            rule: serde_json::Value::Object(Default::default()),
            judge_url: String::new(),
            judge_model: String::new(),
        }
    }
}
