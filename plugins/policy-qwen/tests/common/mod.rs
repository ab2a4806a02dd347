//! Fixtures of the policy's own tests: a word-level tokenizer written on the spot and small random
//! models with weights large enough that their distributions are far from uniform.

#![allow(dead_code)]

use std::path::Path;

use longrl_core::Result;
use longrl_policy_qwen::hf_config::{Arch, QwenConfig};
use longrl_policy_qwen::model::QwenModel;
use longrl_policy_qwen::text::TextCodec;
use longrl_policy_qwen::weights::{Init, Vars, WeightSource};
use serde_json::json;
use tch::{Device, Kind, Tensor};

/// Weights drawn from torch's generator: norms near 1, small biases, projections at `scale`.
pub struct Randn {
    pub scale: f64,
}

impl WeightSource for Randn {
    fn get(&mut self, _: &str, shape: &[i64], init: Init) -> Result<Tensor> {
        let t = Tensor::randn(shape, (Kind::Float, Device::Cpu));
        Ok(match init {
            Init::Ones => t * 0.1 + 1.0,
            Init::Zeros => t * 0.1,
            Init::Normal => t * self.scale,
        })
    }
}

/// A random float32 model on CPU (4 heads, 2 KV heads).
pub fn model(arch: Arch, vocab: i64, hidden: i64, layers: i64, tie: bool, seed: i64, scale: f64) -> QwenModel {
    let config =
        QwenConfig::new_random(arch, vocab, hidden, layers, 4, 2, hidden * 2, 4096, 10_000.0, tie, None, None).unwrap();
    tch::manual_seed(seed);
    let model = QwenModel::new(config, Vars::new(Randn { scale }), Device::Cpu, Kind::Float).unwrap();
    for (_, p) in model.parameters() {
        let _ = p.set_requires_grad(true);
    }
    model
}

/// A word-level tokenizer of `vocab` tokens (`<|endoftext|>`, `<|im_end|>`, then `w2`, `w3`, ...)
/// in `dir`, whose end-of-sequence ids are `<|im_end|>` and `extra_eos`.
pub fn codec(dir: &Path, vocab: usize, extra_eos: &[u32]) -> TextCodec {
    let special = ["<|endoftext|>", "<|im_end|>"];
    let mut words = serde_json::Map::new();
    for i in 0..vocab {
        let word = if i < 2 { special[i].to_string() } else { format!("w{i}") };
        words.insert(word, json!(i));
    }
    let added: Vec<_> = special
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": words, "unk_token": "<|endoftext|>"}
    });
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), json!({"eos_token": "<|im_end|>"}).to_string()).unwrap();
    let mut eos = vec![1u32];
    eos.extend_from_slice(extra_eos);
    std::fs::write(dir.join("generation_config.json"), json!({"eos_token_id": eos}).to_string()).unwrap();
    TextCodec::load(&dir.join("tokenizer.json"), dir, None).unwrap()
}

/// `n` token ids in `[2, vocab)` from a seed (no special tokens).
pub fn ids(seed: u32, n: usize, vocab: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| 2 + (i.wrapping_mul(2_654_435_761).wrapping_add(seed.wrapping_mul(97))) % (vocab - 2))
        .collect()
}
