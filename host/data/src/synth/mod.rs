//! Synthetic long-document QA for the embedded default (`longrl data synth`): seeded documents of
//! short fact paragraphs about invented people with distractors, four question kinds, SFT traces,
//! and a BPE tokenizer trained on the corpus.
//!
//! Every example has its own ChaCha stream, seeded from (seed, split, index): the same options give
//! byte-identical files, and growing `--train` leaves the examples already generated unchanged.

pub mod generate;
pub mod tokenizer;
pub mod vocab;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use longrl_core::api::ChatMessage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use generate::{Calibration, Kind, SynthItem, approx_tokens};

use crate::Example;
use crate::template::docqa_prompt;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthOptions {
    pub seed: u64,
    pub train: usize,
    pub eval: usize,
    /// SFT traces, from their own examples (not the RL training prompts).
    pub sft: usize,
    /// Target prompt lengths in tokens; examples cycle through kinds, then lengths.
    pub lengths: Vec<u32>,
    /// Lengths of the SFT examples (empty: `lengths`).
    pub sft_lengths: Vec<u32>,
    pub kinds: Vec<Kind>,
    /// Upper bound of the BPE vocabulary (the closed corpus usually needs fewer).
    pub vocab_size: usize,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            seed: 0,
            train: 1000,
            eval: 200,
            sft: 1000,
            lengths: vec![512, 1024, 2048],
            sft_lengths: Vec::new(),
            kinds: Kind::ALL.to_vec(),
            vocab_size: 8192,
        }
    }
}

impl SynthOptions {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.kinds.is_empty(), "--kinds: at least one kind is needed");
        anyhow::ensure!(!self.lengths.is_empty(), "--lengths: at least one length is needed");
        if let Some(short) = self.lengths.iter().chain(&self.sft_lengths).find(|&&l| l < 128) {
            anyhow::bail!(
                "length {short}: prompts need at least 128 tokens (the template and question alone take ~60)"
            );
        }
        anyhow::ensure!(self.vocab_size >= 512, "--vocab-size {}: at least 512 (256 bytes + words)", self.vocab_size);
        Ok(())
    }
}

/// A generated example with its place in the output.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    pub split: &'static str,
    pub index: usize,
    pub item: SynthItem,
    /// Tokens of the chat-templated prompt under the trained tokenizer (set by [`write`]).
    pub prompt_tokens: Option<u64>,
}

impl Record {
    pub fn prompt_text(&self) -> String {
        docqa_prompt(&self.item.context, &self.item.question)
    }

    fn extra_info(&self) -> Value {
        let mut extra = json!({
            "id": self.id,
            "index": self.index,
            "split": self.split,
            "kind": self.item.kind.name(),
            "bucket": self.item.bucket,
            "question": self.item.question,
            "approx_tokens": self.item.approx_tokens,
        });
        if let Some(tokens) = self.prompt_tokens {
            extra["prompt_tokens"] = tokens.into();
        }
        extra
    }

    /// The example as the loaders read it back (from parquet or JSONL alike).
    pub fn example(&self) -> Example {
        Example {
            id: self.id.clone(),
            data_source: self.item.kind.data_source(),
            prompt: vec![ChatMessage::new("user", self.prompt_text())],
            question: self.item.question.clone(),
            ground_truth: self.item.answer.clone(),
            ability: self.item.kind.ability().into(),
            extra: self.extra_info(),
        }
    }

    /// A `context`/`question`/`answer` JSONL row.
    pub fn jsonl_row(&self) -> Value {
        json!({
            "id": self.id,
            "data_source": self.item.kind.data_source(),
            "ability": self.item.kind.ability(),
            "context": self.item.context,
            "question": self.item.question,
            "answer": self.item.answer,
            "extra_info": self.extra_info(),
        })
    }

    /// A `context`/`question`/`response` SFT row.
    pub fn sft_row(&self) -> Value {
        let mut row = self.jsonl_row();
        row["response"] = self.item.response.clone().into();
        row
    }
}

/// The per-example generator, independent of every other example.
fn example_rng(seed: u64, split: &str, index: usize) -> ChaCha8Rng {
    let digest = Sha256::new().chain_update(format!("longrl-synth/{seed}/{split}/{index}")).finalize();
    ChaCha8Rng::from_seed(digest.into())
}

/// `count` examples of one split: example `i` has kind `kinds[i % K]` and length
/// `lengths[(i / K) % L]`, so every (kind, length) cell gets its share.
/// `calibration`: see [`generate::generate`].
pub fn generate_split(
    seed: u64,
    split: &'static str,
    count: usize,
    kinds: &[Kind],
    lengths: &[u32],
    calibration: Calibration,
) -> Vec<Record> {
    (0..count)
        .map(|index| {
            let kind = kinds[index % kinds.len()];
            let bucket = lengths[(index / kinds.len()) % lengths.len()];
            let item = generate::generate(&mut example_rng(seed, split, index), kind, bucket, calibration);
            Record { id: format!("synth-{split}-{index:06}"), split, index, item, prompt_tokens: None }
        })
        .collect()
}

/// The three splits.
pub struct SynthSet {
    pub train: Vec<Record>,
    pub eval: Vec<Record>,
    pub sft: Vec<Record>,
}

pub fn generate_all(options: &SynthOptions, calibration: Calibration) -> anyhow::Result<SynthSet> {
    options.validate()?;
    let sft_lengths = if options.sft_lengths.is_empty() { &options.lengths } else { &options.sft_lengths };
    let split =
        |name, count, lengths: &[u32]| generate_split(options.seed, name, count, &options.kinds, lengths, calibration);
    Ok(SynthSet {
        train: split("train", options.train, &options.lengths),
        eval: split("eval", options.eval, &options.lengths),
        sft: split("sft", options.sft, sft_lengths),
    })
}

impl SynthSet {
    fn records(&self) -> impl Iterator<Item = &Record> {
        self.train.iter().chain(&self.eval).chain(&self.sft)
    }

    /// The texts the tokenizer learns from; the think tags are added tokens, kept out of the merges.
    fn corpus(&self) -> Vec<String> {
        let mut corpus: Vec<String> = vec![docqa_prompt("", "")];
        for record in self.records() {
            corpus.push(record.item.context.clone());
            corpus.push(record.item.question.clone());
            corpus.push(record.item.response.replace(tokenizer::THINK, "").replace(tokenizer::END_THINK, ""));
        }
        corpus
    }

    /// Set each record's real prompt length under `bpe`.
    fn measure(&mut self, bpe: &tokenizers::Tokenizer) -> anyhow::Result<()> {
        for record in self.train.iter_mut().chain(self.eval.iter_mut()).chain(self.sft.iter_mut()) {
            let text = tokenizer::chatml_user_prompt(&record.prompt_text());
            let encoding = bpe.encode(text, false).map_err(|e| anyhow::anyhow!("tokenizing {}: {e}", record.id))?;
            record.prompt_tokens = Some(encoding.get_ids().len() as u64);
        }
        Ok(())
    }

    /// Real tokens per estimated token of documents and questions, and the template's real tokens.
    fn calibrate(&self, bpe: &tokenizers::Tokenizer) -> anyhow::Result<Calibration> {
        let count = |text: &str| -> anyhow::Result<u64> {
            Ok(bpe.encode(text, false).map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?.get_ids().len() as u64)
        };
        let (mut real, mut approx) = (0u64, 0u64);
        for record in self.records() {
            for text in [&record.item.context, &record.item.question] {
                real += count(text)?;
                approx += approx_tokens(text);
            }
        }
        Ok(Calibration {
            tokens_per_piece: if approx == 0 { 1.0 } else { real as f64 / approx as f64 },
            template_tokens: count(&tokenizer::chatml_user_prompt(&docqa_prompt("", "")))? as f64,
        })
    }
}

/// Per split and length bucket: examples and their measured prompt tokens (min / mean / max).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BucketStats {
    pub examples: usize,
    pub min_tokens: u64,
    pub mean_tokens: f64,
    pub max_tokens: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub vocab_size: usize,
    pub files: Vec<String>,
    pub lengths: BTreeMap<String, BTreeMap<u32, BucketStats>>,
}

/// Generate everything and write `train.parquet`, `eval.parquet`, `train.jsonl`, `eval.jsonl`,
/// `sft.jsonl`, the tokenizer files and `manifest.json` into `dir`.
pub fn write(options: &SynthOptions, dir: &Path) -> anyhow::Result<Summary> {
    // Two passes: the first measures how many real tokens an estimated one makes under a tokenizer
    // trained on this very corpus; the second sizes the documents with that ratio.
    let probe = generate_all(options, Calibration::default())?;
    let probe_bpe = tokenizer::train(probe.corpus().iter().map(String::as_str), options.vocab_size)?;
    let calibration = probe.calibrate(&probe_bpe)?;
    drop((probe, probe_bpe));

    let mut set = generate_all(options, calibration)?;
    let bpe = tokenizer::train(set.corpus().iter().map(String::as_str), options.vocab_size)?;
    set.measure(&bpe)?;
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let max_length = options.lengths.iter().chain(&options.sft_lengths).copied().max().unwrap_or(0);
    tokenizer::save(&bpe, dir, (u64::from(max_length) * 2).max(4096))?;

    let mut lengths: BTreeMap<String, BTreeMap<u32, Vec<u64>>> = BTreeMap::new();
    for record in set.records() {
        let tokens = record.prompt_tokens.unwrap_or(0);
        lengths.entry(record.split.into()).or_default().entry(record.item.bucket).or_default().push(tokens);
    }

    let mut files = Vec::new();
    for (name, records) in [("train", &set.train), ("eval", &set.eval)] {
        let examples: Vec<Example> = records.iter().map(Record::example).collect();
        let parquet = dir.join(format!("{name}.parquet"));
        crate::parquet::write_verl(&parquet, &examples)?;
        write_jsonl(&dir.join(format!("{name}.jsonl")), records.iter().map(Record::jsonl_row))?;
        files.extend([format!("{name}.parquet"), format!("{name}.jsonl")]);
    }
    write_jsonl(&dir.join("sft.jsonl"), set.sft.iter().map(Record::sft_row))?;
    files.extend(
        ["sft.jsonl", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "manifest.json"]
            .map(String::from),
    );

    let summary = Summary {
        vocab_size: bpe.get_vocab_size(true),
        files,
        lengths: lengths
            .into_iter()
            .map(|(split, buckets)| {
                let stats = buckets
                    .into_iter()
                    .map(|(bucket, tokens)| {
                        let stats = BucketStats {
                            examples: tokens.len(),
                            min_tokens: tokens.iter().copied().min().unwrap_or(0),
                            mean_tokens: tokens.iter().sum::<u64>() as f64 / tokens.len().max(1) as f64,
                            max_tokens: tokens.iter().copied().max().unwrap_or(0),
                        };
                        (bucket, stats)
                    })
                    .collect();
                (split, stats)
            })
            .collect(),
    };
    let manifest = json!({
        "generator": "longrl data synth",
        "seed": options.seed,
        "train": options.train,
        "eval": options.eval,
        "sft": options.sft,
        "lengths": options.lengths,
        "sft_lengths": options.sft_lengths,
        "kinds": options.kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "data_sources": options.kinds.iter().map(|k| k.data_source()).collect::<Vec<_>>(),
        "vocab_size": summary.vocab_size,
        "length_calibration": calibration,
        "prompt_tokens": summary.lengths,
    });
    std::fs::write(dir.join("manifest.json"), serde_json::to_string_pretty(&manifest)? + "\n")
        .with_context(|| format!("{}: cannot write manifest.json", dir.display()))?;
    Ok(summary)
}

fn write_jsonl(path: &Path, rows: impl Iterator<Item = Value>) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for row in rows {
        serde_json::to_writer(&mut out, &row)?;
        out.write_all(b"\n")?;
    }
    out.flush().with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}
