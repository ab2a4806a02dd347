//! `longrl train --dry-run`: the plan of a run (stages, phases, steps, tokens per step) and a
//! memory estimate per GPU, from the config alone (no model is loaded, no GPU is needed).

use std::fmt::Write as _;
use std::path::Path;

use longrl_core::api::{AlgorithmSettings, PhaseLength, PhaseSpec};
use serde_json::Value;

use longrl_config::Config;

/// Model sizes read from an HF `config.json` or the qwen policy's `init` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelShape {
    pub hidden: u64,
    pub layers: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub intermediate: u64,
    pub vocab: u64,
    pub tied: bool,
}

impl ModelShape {
    /// From the policy's config table: `model` (an HF directory) or `init`.
    pub fn from_policy_config(policy: &Value) -> anyhow::Result<Option<ModelShape>> {
        let u = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
        if let Some(init) = policy.get("init").filter(|v| v.is_object()) {
            let hidden = u(init, "hidden").unwrap_or(0);
            let heads = u(init, "heads").unwrap_or(1).max(1);
            let vocab = init
                .get("tokenizer")
                .and_then(Value::as_str)
                .and_then(|p| std::fs::read_to_string(p).ok())
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|t| t.pointer("/model/vocab").map(|v| v.as_object().map_or(0, |o| o.len()) as u64))
                .unwrap_or(0);
            return Ok(Some(ModelShape {
                hidden,
                layers: u(init, "layers").unwrap_or(0),
                heads,
                kv_heads: u(init, "kv_heads").unwrap_or(heads),
                head_dim: hidden / heads,
                intermediate: u(init, "intermediate").unwrap_or(0),
                vocab,
                tied: init.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false),
            }));
        }
        let Some(dir) = policy.get("model").and_then(Value::as_str) else { return Ok(None) };
        let path = Path::new(dir).join("config.json");
        if !path.exists() {
            // Planning a reproduction before downloading the weights: the published shape of a
            // model the recipe names, when the directory is called after it.
            let name = Path::new(dir).file_name().and_then(|n| n.to_str()).unwrap_or_default();
            return Ok(ModelShape::published(name));
        }
        let text = std::fs::read_to_string(&path)?;
        let c: Value = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let hidden = u(&c, "hidden_size").unwrap_or(0);
        let heads = u(&c, "num_attention_heads").unwrap_or(1).max(1);
        Ok(Some(ModelShape {
            hidden,
            layers: u(&c, "num_hidden_layers").unwrap_or(0),
            heads,
            kv_heads: u(&c, "num_key_value_heads").unwrap_or(heads),
            head_dim: u(&c, "head_dim").unwrap_or(hidden / heads),
            intermediate: u(&c, "intermediate_size").unwrap_or(0),
            vocab: u(&c, "vocab_size").unwrap_or(0),
            tied: c.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false),
        }))
    }

    /// The shapes in the `config.json` of the checkpoints the recipe starts from or judges with.
    pub fn published(name: &str) -> Option<ModelShape> {
        let qwen25 = |hidden, layers, heads, kv_heads, intermediate, tied| ModelShape {
            hidden,
            layers,
            heads,
            kv_heads,
            head_dim: hidden / heads,
            intermediate,
            vocab: if tied { 151936 } else { 152064 },
            tied,
        };
        match name.to_ascii_lowercase().as_str() {
            "deepseek-r1-distill-qwen-14b" | "qwenlong-l1-14b" => Some(qwen25(5120, 48, 40, 8, 13824, false)),
            "deepseek-r1-distill-qwen-32b" | "qwenlong-l1-32b" => Some(qwen25(5120, 64, 40, 8, 27648, false)),
            "deepseek-r1-distill-qwen-7b" => Some(qwen25(3584, 28, 28, 4, 18944, false)),
            "qwen2.5-1.5b-instruct" => Some(qwen25(1536, 28, 12, 2, 8960, true)),
            _ => None,
        }
    }

    /// Parameters of a Qwen2-style decoder (q/k/v biases, SwiGLU MLP, RMSNorms).
    pub fn parameters(&self) -> u64 {
        let (h, q, kv) = (self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim);
        let attention = h * q + q + 2 * (h * kv + kv) + q * h;
        let mlp = 3 * h * self.intermediate;
        let embeddings = self.vocab * h * if self.tied { 1 } else { 2 };
        embeddings + self.layers * (attention + mlp + 2 * h) + h
    }
}

/// Bytes of each part of training memory on the one device longrl trains on.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryEstimate {
    pub weights: f64,
    pub gradients: f64,
    pub optimizer: f64,
    pub reference: f64,
    pub activations: f64,
    pub logits: f64,
    pub kv_cache: f64,
}

impl MemoryEstimate {
    /// Training holds weights, gradients, optimizer, reference, activations and logits; generation
    /// holds weights, reference and the KV cache (gradients are freed between steps only if the
    /// policy drops them: counted throughout, to be safe).
    pub fn peak(&self) -> f64 {
        let common = self.weights + self.gradients + self.optimizer + self.reference;
        common + (self.activations + self.logits).max(self.kv_cache)
    }
}

/// Rough but explicit: weights and gradients in the compute dtype, AdamW moments in float32 (and,
/// for a 16-bit compute dtype, the optimizer's float32 master weights and gradient copy),
/// activations of one micro-batch sequence at the longest length without recomputation
/// (~34·s·h bytes per layer with fused attention, as in Korthikanti et al. 2022), logits of one
/// chunk of the vocabulary projection in float32, and the KV cache of one generation call.
pub fn estimate_memory(
    shape: &ModelShape,
    dtype_bytes: f64,
    reference: bool,
    micro_batch: u64,
    seq_tokens: u64,
    gen_sequences: u64,
    chunk_tokens: u64,
) -> MemoryEstimate {
    let n = shape.parameters() as f64;
    let s = seq_tokens as f64;
    MemoryEstimate {
        weights: n * dtype_bytes,
        gradients: n * dtype_bytes,
        // longrl-optim's `state_bytes_per_element`: moments (8), plus master and gradient copy (8)
        // for bfloat16/float16 weights.
        optimizer: n * if dtype_bytes < 4.0 { 16.0 } else { 8.0 },
        reference: if reference { n * dtype_bytes } else { 0.0 },
        activations: micro_batch as f64 * shape.layers as f64 * 34.0 * s * shape.hidden as f64 * dtype_bytes / 2.0,
        logits: micro_batch as f64 * (chunk_tokens.max(1) as f64).min(s) * shape.vocab as f64 * 4.0 * 2.0,
        kv_cache: gen_sequences as f64
            * s
            * 2.0
            * shape.layers as f64
            * (shape.kv_heads * shape.head_dim) as f64
            * dtype_bytes,
    }
}

pub fn gib(bytes: f64) -> String {
    format!("{:.2} GiB", bytes / (1u64 << 30) as f64)
}

/// The plan as text.
pub fn render(
    config: &Config,
    phases: &[PhaseSpec],
    settings: &AlgorithmSettings,
    device: &str,
    plugins_used: &[String],
) -> anyhow::Result<String> {
    let mut out = String::new();
    let t = &config.train;
    let _ = writeln!(out, "longrl train plan (dry run: nothing is trained)");
    let _ = writeln!(out, "  run directory: {}", config.run_dir.display());
    let _ = writeln!(out, "  device: {device}; seed {}", config.seed);
    let _ = writeln!(out, "  components: {}", plugins_used.join(", "));
    let _ = writeln!(out, "stages:");
    let mut stage = 1;
    if config.sft.enabled {
        let _ = writeln!(
            out,
            "  {stage}. sft: {} epochs over {} file(s), batch {} sequences (micro-batch {}), lr {:e} ({:?}, warm-up {})",
            config.sft.epochs,
            config.data.sft_files.len(),
            config.sft.batch_size,
            config.sft.micro_batch_size,
            config.sft.optim.lr,
            config.sft.optim.schedule,
            config.sft.optim.warmup_steps
        );
        stage += 1;
    }
    let mut longest = 0u64;
    if t.enabled {
        for (k, p) in phases.iter().enumerate() {
            let max_out = if t.max_response_tokens > 0 {
                t.max_response_tokens.min(p.max_output_tokens)
            } else {
                p.max_output_tokens
            };
            let length = match p.length {
                PhaseLength::Steps(n) => format!("{n} steps"),
                PhaseLength::Epochs(e) => format!("{e} epochs over its pool"),
            };
            let per_step = t.batch_prompts as u64 * t.rollouts as u64 * (p.max_input_tokens + max_out as u64);
            longest = longest.max(p.max_input_tokens + max_out as u64);
            let _ = writeln!(
                out,
                "  {stage}. rl phase {k} `{}`: prompts {} < tokens <= {}, responses <= {max_out} tokens, {length}; \
                 {} prompts x {} rollouts per step, at most {per_step} tokens per step",
                p.name, p.min_input_tokens_exclusive, p.max_input_tokens, t.batch_prompts, t.rollouts
            );
            stage += 1;
        }
        let _ = writeln!(
            out,
            "  update: {} epoch(s) x mini-batches of {} prompts x micro-batches of {} sequences; lr {:e} ({:?}, warm-up {}), \
             weight decay {}, grad clip {}; reference policy: {}; dynamic sampling: {} (max {} generation rounds)",
            t.epochs,
            t.mini_batch_prompts,
            t.micro_batch_size,
            t.optim.lr,
            t.optim.schedule,
            t.optim.warmup_steps,
            t.optim.weight_decay,
            t.optim.grad_clip,
            if settings.needs_reference { "yes" } else { "no" },
            if t.dynamic_sampling { "on" } else { "off" },
            t.max_gen_batches
        );
        if t.max_steps > 0 {
            let _ = writeln!(out, "  capped at {} RL steps (train.max_steps)", t.max_steps);
        }
    }
    if config.eval.enabled {
        let _ = writeln!(out, "  evaluation after each stage; report in {}/report.md", config.run_dir.display());
    }
    match ModelShape::from_policy_config(&config.policy.config)? {
        Some(shape) => {
            let dtype = config.policy.config.get("dtype").and_then(Value::as_str).unwrap_or("auto");
            let bytes = match dtype {
                "float32" | "fp32" => 4.0,
                "auto" if device == "cpu" => 4.0,
                _ => 2.0,
            };
            let sft_longest =
                if config.sft.enabled && config.sft.max_tokens > 0 { config.sft.max_tokens as u64 } else { 0 };
            let seq = longest.max(sft_longest).max(1);
            let gen_prompts = if t.generate_batch_prompts > 0 {
                t.generate_batch_prompts
            } else {
                t.gen_batch_prompts.max(t.batch_prompts)
            };
            let chunk = if t.logprob_chunk_tokens > 0 { t.logprob_chunk_tokens as u64 } else { 1024 };
            let m = estimate_memory(
                &shape,
                bytes,
                settings.needs_reference,
                t.micro_batch_size as u64,
                seq,
                gen_prompts as u64 * t.rollouts as u64,
                chunk,
            );
            let _ = writeln!(out, "memory estimate per GPU (longrl trains on one device; nothing is sharded):");
            let _ = writeln!(
                out,
                "  model: {:.3}B parameters, {} bytes per weight",
                shape.parameters() as f64 / 1e9,
                bytes
            );
            let _ = writeln!(
                out,
                "  weights {}, gradients {}, AdamW state {}, reference {}, activations {} (micro-batch {} x {seq} tokens), \
                 logits chunk {}, generation KV cache {} ({} sequences x {seq} tokens)",
                gib(m.weights),
                gib(m.gradients),
                gib(m.optimizer),
                gib(m.reference),
                gib(m.activations),
                t.micro_batch_size,
                gib(m.logits),
                gib(m.kv_cache),
                gen_prompts as u64 * t.rollouts as u64
            );
            let _ = writeln!(out, "  peak about {}", gib(m.peak()));
        }
        None => {
            let _ = writeln!(
                out,
                "memory estimate: unknown (the policy config names no readable model config.json or `init` table)"
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Qwen2.5-1.5B-Instruct: 1.54B parameters (tied embeddings), per its model card.
    #[test]
    fn parameter_count_matches_a_known_model() {
        let shape = ModelShape {
            hidden: 1536,
            layers: 28,
            heads: 12,
            kv_heads: 2,
            head_dim: 128,
            intermediate: 8960,
            vocab: 151936,
            tied: true,
        };
        let n = shape.parameters() as f64 / 1e9;
        assert!((n - 1.544).abs() < 0.005, "{n}");
        // R1-Distill-Qwen-14B (Qwen2.5-14B): 14.77B.
        let shape = ModelShape {
            hidden: 5120,
            layers: 48,
            heads: 40,
            kv_heads: 8,
            head_dim: 128,
            intermediate: 13824,
            vocab: 152064,
            tied: false,
        };
        let n = shape.parameters() as f64 / 1e9;
        assert!((n - 14.77).abs() < 0.01, "{n}");
        // Without the checkpoint on disk, the published shapes: R1-Distill-Qwen-32B has 32.76B.
        let n = ModelShape::published("DeepSeek-R1-Distill-Qwen-32B").unwrap().parameters() as f64 / 1e9;
        assert!((n - 32.76).abs() < 0.01, "{n}");
        assert_eq!(ModelShape::published("DeepSeek-R1-Distill-Qwen-14B"), Some(shape));
        assert_eq!(ModelShape::published("my-own-model"), None);
    }

    #[test]
    fn memory_grows_with_what_it_counts() {
        let shape = ModelShape {
            hidden: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            head_dim: 16,
            intermediate: 128,
            vocab: 100,
            tied: false,
        };
        let a = estimate_memory(&shape, 4.0, false, 1, 1000, 8, 1024);
        let b = estimate_memory(&shape, 4.0, true, 2, 1000, 16, 1024);
        assert_eq!(a.optimizer, shape.parameters() as f64 * 8.0);
        let bf16 = estimate_memory(&shape, 2.0, false, 1, 1000, 8, 1024);
        assert_eq!(bf16.optimizer, shape.parameters() as f64 * 16.0, "float32 master weights and gradient copy");
        assert_eq!(b.reference, a.weights);
        assert_eq!(b.activations, 2.0 * a.activations);
        assert_eq!(b.kv_cache, 2.0 * a.kv_cache);
        assert!(b.peak() > a.peak());
    }
}
