//! Training and evaluation data: examples, the recipe's prompt template, loaders.
//!
//! Files are verl-style parquet or JSONL (by extension); both are read row by row into JSON objects
//! and parsed by [`rows`], so every format accepts the same keys and every bad row is an error naming
//! the file, the row (1-based) and the key.

mod json_rows;
pub mod lengths;
pub mod parquet;
pub mod prompt;
mod rows;
pub mod synth;
pub mod template;
pub mod truncate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use json_rows::read_json_objects;
pub use lengths::{Admission, AdmittedExample, OverlongPolicy, admit, prompt_lengths};
pub use longrl_config::{DEFAULT_DATA_SOURCE, DataConfig};

/// One RL example, whatever file format it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Stable id (the row's own id, else `<file stem>:<row>`).
    pub id: String,
    /// Routes the reward (`docmath_v1`, `musique_v1`, `long_toc_choices_0_20000`, ...).
    pub data_source: String,
    /// The chat messages of the prompt (the user turn holds the templated document and question).
    pub prompt: Vec<longrl_core::api::ChatMessage>,
    /// The bare question when known (judges fall back to it).
    pub question: String,
    pub ground_truth: String,
    pub ability: String,
    /// Anything else the row carried.
    pub extra: serde_json::Value,
}

/// One SFT trace: the prompt messages and the target response (`<think>…</think>` + answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftExample {
    pub id: String,
    pub prompt: Vec<longrl_core::api::ChatMessage>,
    pub response: String,
}

/// How rows become examples.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// `data_source` of rows that name none.
    pub default_data_source: String,
    /// Keep only the first this many examples over all files (0: all).
    pub max_examples: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { default_data_source: DEFAULT_DATA_SOURCE.into(), max_examples: 0 }
    }
}

impl LoadOptions {
    /// How training rows become examples (`[data]`).
    pub fn train(config: &DataConfig) -> Self {
        LoadOptions { default_data_source: config.default_data_source.clone(), max_examples: config.max_examples }
    }

    /// How evaluation rows become examples (`[data]`).
    pub fn eval(config: &DataConfig) -> Self {
        LoadOptions { default_data_source: config.default_data_source.clone(), max_examples: config.max_eval_examples }
    }
}

/// RL examples from parquet / JSONL files, in file order. Ids must be unique across the files.
pub fn load_examples(files: &[PathBuf], options: &LoadOptions) -> anyhow::Result<Vec<Example>> {
    let mut examples = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for file in files {
        let stem = file_stem(file);
        for (row, object) in read_rows(file)? {
            let place = rows::RowPlace { file_stem: &stem, row };
            let example = rows::example(&object, &place, &options.default_data_source)
                .map_err(|e| anyhow::anyhow!("{}: row {row}: {e}", file.display()))?;
            let here = format!("{} row {row}", file.display());
            if let Some(first) = seen.insert(example.id.clone(), here.clone()) {
                anyhow::bail!("{here}: duplicate example id `{}` (first at {first})", example.id);
            }
            examples.push(example);
            if options.max_examples > 0 && examples.len() == options.max_examples {
                return Ok(examples);
            }
        }
    }
    Ok(examples)
}

/// SFT traces from parquet / JSONL files (`prompt`/`response` or `context`/`question`/`response`).
pub fn load_sft_examples(files: &[PathBuf], max_examples: usize) -> anyhow::Result<Vec<SftExample>> {
    let mut examples = Vec::new();
    for file in files {
        let stem = file_stem(file);
        for (row, object) in read_rows(file)? {
            let place = rows::RowPlace { file_stem: &stem, row };
            let example = rows::sft_example(&object, &place)
                .map_err(|e| anyhow::anyhow!("{}: row {row}: {e}", file.display()))?;
            examples.push(example);
            if max_examples > 0 && examples.len() == max_examples {
                return Ok(examples);
            }
        }
    }
    Ok(examples)
}

/// The rows of a `.parquet`, `.jsonl` or `.json` file (JSON lines or an array of objects) as JSON
/// objects, each with its 1-based row number (the line number in JSON lines, where blank lines are
/// skipped; the element number in an array).
pub fn read_rows(path: &Path) -> anyhow::Result<Vec<(usize, Map<String, Value>)>> {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match extension.as_str() {
        "parquet" => Ok(parquet::read_rows(path)?.into_iter().enumerate().map(|(i, r)| (i + 1, r)).collect()),
        "jsonl" | "json" => read_json_objects(path, "row"),
        _ => {
            anyhow::bail!("{}: unknown data file extension `{extension}`; expected .parquet or .jsonl", path.display())
        }
    }
}

fn file_stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}
