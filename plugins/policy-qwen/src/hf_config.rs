//! The model's `config.json`, read in both layouts found in the wild: the classic one of published
//! Qwen2.5 / R1-Distill checkpoints (`rope_theta`, `rope_scaling`, `torch_dtype`) and the one
//! transformers 5 writes (`rope_parameters`, `dtype`).

use std::path::Path;

use longrl_core::{Error, Result};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Qwen2,
    Qwen3,
}

impl Arch {
    pub fn parse(name: &str) -> Option<Arch> {
        match name {
            "qwen2" => Some(Arch::Qwen2),
            "qwen3" => Some(Arch::Qwen3),
            _ => None,
        }
    }
    pub fn model_type(self) -> &'static str {
        match self {
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }
    pub fn class_name(self) -> &'static str {
        match self {
            Arch::Qwen2 => "Qwen2ForCausalLM",
            Arch::Qwen3 => "Qwen3ForCausalLM",
        }
    }
}

/// Rotary scaling, with HF's semantics per type.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    Linear {
        factor: f64,
    },
    Dynamic {
        factor: f64,
    },
    Yarn {
        factor: f64,
        original_max_position_embeddings: f64,
        attention_factor: Option<f64>,
        beta_fast: f64,
        beta_slow: f64,
        mscale: Option<f64>,
        mscale_all_dim: Option<f64>,
        truncate: bool,
    },
}

#[derive(Debug, Clone)]
pub struct QwenConfig {
    pub arch: Arch,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub num_key_value_heads: i64,
    pub head_dim: i64,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: i64,
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry a bias (Qwen2 always; Qwen3 when `attention_bias`).
    pub qkv_bias: bool,
    /// The dtype the checkpoint declares (`torch_dtype` / `dtype`), if any.
    pub checkpoint_dtype: Option<String>,
    /// The file as read, written back on save with only the dtype updated.
    pub raw: Value,
}

fn key_err(file: &str, key: &str, message: impl std::fmt::Display) -> Error {
    Error::msg(format!("{file}: key `{key}`: {message}"))
}

fn get_i64(obj: &Map<String, Value>, file: &str, key: &str) -> Result<i64> {
    match obj.get(key) {
        Some(v) => v.as_i64().ok_or_else(|| key_err(file, key, format!("expected an integer, got {v}"))),
        None => Err(key_err(file, key, "missing")),
    }
}

fn opt_f64(obj: &Map<String, Value>, file: &str, key: &str) -> Result<Option<f64>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| key_err(file, key, format!("expected a number, got {v}"))),
    }
}

impl QwenConfig {
    pub fn from_file(path: &Path) -> Result<QwenConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::msg(format!("{}: {e}", path.display())))?;
        let raw: Value =
            serde_json::from_str(&text).map_err(|e| Error::msg(format!("{}: invalid JSON: {e}", path.display())))?;
        Self::from_value(raw, &path.display().to_string())
    }

    pub fn from_value(raw: Value, file: &str) -> Result<QwenConfig> {
        let obj = raw.as_object().ok_or_else(|| Error::msg(format!("{file}: expected a JSON object")))?;
        let model_type = obj.get("model_type").and_then(Value::as_str).unwrap_or("");
        let arch = Arch::parse(model_type).ok_or_else(|| {
            key_err(file, "model_type", format!("`{model_type}` is not supported (expected qwen2 or qwen3)"))
        })?;
        let hidden_size = get_i64(obj, file, "hidden_size")?;
        let num_attention_heads = get_i64(obj, file, "num_attention_heads")?;
        let num_key_value_heads = match obj.get("num_key_value_heads") {
            None | Some(Value::Null) => num_attention_heads,
            Some(_) => get_i64(obj, file, "num_key_value_heads")?,
        };
        let head_dim = match obj.get("head_dim") {
            None | Some(Value::Null) => hidden_size / num_attention_heads.max(1),
            Some(_) => get_i64(obj, file, "head_dim")?,
        };
        if num_attention_heads <= 0 || num_key_value_heads <= 0 || num_attention_heads % num_key_value_heads != 0 {
            return Err(key_err(
                file,
                "num_key_value_heads",
                format!("{num_key_value_heads} must divide num_attention_heads {num_attention_heads}"),
            ));
        }
        // transformers 5 keeps theta and scaling in `rope_parameters`; older files at the top level.
        let rope_params = obj.get("rope_parameters").and_then(Value::as_object);
        let rope_theta = rope_params
            .and_then(|p| p.get("rope_theta"))
            .or_else(|| obj.get("rope_theta"))
            .map(|v| v.as_f64().ok_or_else(|| key_err(file, "rope_theta", "expected a number")))
            .transpose()?
            .unwrap_or(10000.0);
        let max_position_embeddings = get_i64(obj, file, "max_position_embeddings")?;
        let scaling = rope_params.or_else(|| obj.get("rope_scaling").and_then(Value::as_object));
        let rope_scaling = match scaling {
            None => RopeScaling::None,
            Some(s) => parse_rope_scaling(s, file, max_position_embeddings)?,
        };
        let checkpoint_dtype =
            obj.get("dtype").or_else(|| obj.get("torch_dtype")).and_then(Value::as_str).map(str::to_string);
        let qkv_bias = match arch {
            Arch::Qwen2 => true,
            Arch::Qwen3 => obj.get("attention_bias").and_then(Value::as_bool).unwrap_or(false),
        };
        Ok(QwenConfig {
            arch,
            vocab_size: get_i64(obj, file, "vocab_size")?,
            hidden_size,
            intermediate_size: get_i64(obj, file, "intermediate_size")?,
            num_hidden_layers: get_i64(obj, file, "num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: opt_f64(obj, file, "rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings,
            tie_word_embeddings: obj.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false),
            qkv_bias,
            checkpoint_dtype,
            raw,
        })
    }

    /// A fresh config in the classic layout (what `model init` writes).
    #[allow(clippy::too_many_arguments)]
    pub fn new_random(
        arch: Arch,
        vocab_size: i64,
        hidden: i64,
        layers: i64,
        heads: i64,
        kv_heads: i64,
        intermediate: i64,
        max_position_embeddings: i64,
        rope_theta: f64,
        tie_word_embeddings: bool,
        bos_token_id: Option<u32>,
        eos_token_id: Option<u32>,
    ) -> Result<QwenConfig> {
        let mut raw = json!({
            "architectures": [arch.class_name()],
            "model_type": arch.model_type(),
            "vocab_size": vocab_size,
            "hidden_size": hidden,
            "intermediate_size": intermediate,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "hidden_act": "silu",
            "max_position_embeddings": max_position_embeddings,
            "initializer_range": 0.02,
            "rms_norm_eps": 1e-6,
            "rope_theta": rope_theta,
            "tie_word_embeddings": tie_word_embeddings,
            "use_cache": true,
            "attention_dropout": 0.0,
            "torch_dtype": "float32",
        });
        if heads <= 0 || hidden % heads != 0 {
            return Err(Error::config("init.heads", format!("{heads} must divide hidden {hidden}")));
        }
        if arch == Arch::Qwen3 {
            raw["head_dim"] = json!(hidden / heads);
            raw["attention_bias"] = json!(false);
        }
        if let Some(id) = bos_token_id {
            raw["bos_token_id"] = json!(id);
        }
        if let Some(id) = eos_token_id {
            raw["eos_token_id"] = json!(id);
        }
        Self::from_value(raw, "init")
    }

    /// The `config.json` to write beside weights of dtype `dtype`.
    pub fn to_json(&self, dtype: &str) -> Value {
        let mut raw = self.raw.clone();
        if let Some(obj) = raw.as_object_mut() {
            // Keep whichever dtype key the file used; transformers reads both.
            if obj.contains_key("dtype") {
                obj.insert("dtype".into(), json!(dtype));
            } else {
                obj.insert("torch_dtype".into(), json!(dtype));
            }
        }
        raw
    }

    /// Replace the rotary scaling with `value`, an HF `rope_scaling` object (the policy's
    /// override, e.g. YaRN for contexts past the trained length).
    pub fn override_rope_scaling(&mut self, value: &Value) -> Result<()> {
        let obj = value
            .as_object()
            .ok_or_else(|| Error::msg(format!("expected a table like HF's rope_scaling, got {value}")))?;
        self.rope_scaling = parse_rope_scaling(obj, "rope_scaling", self.max_position_embeddings)?;
        Ok(())
    }

    /// The longest context the model is meant to run: `max_position_embeddings`, or with YaRN the
    /// original length times the factor when that is longer (vLLM's `max_model_len` rule).
    pub fn context_length(&self) -> i64 {
        match self.rope_scaling {
            RopeScaling::Yarn { factor, original_max_position_embeddings, .. } => {
                self.max_position_embeddings.max((factor * original_max_position_embeddings) as i64)
            }
            _ => self.max_position_embeddings,
        }
    }

    pub fn num_parameters(&self) -> u64 {
        let (h, i, v) = (self.hidden_size as u64, self.intermediate_size as u64, self.vocab_size as u64);
        let (q, kv) =
            ((self.num_attention_heads * self.head_dim) as u64, (self.num_key_value_heads * self.head_dim) as u64);
        let mut layer = h * q + 2 * h * kv + q * h + 3 * h * i + 2 * h;
        if self.qkv_bias {
            layer += q + 2 * kv;
        }
        if self.arch == Arch::Qwen3 {
            layer += 2 * self.head_dim as u64;
        }
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + self.num_hidden_layers as u64 * layer + h + head
    }
}

fn parse_rope_scaling(s: &Map<String, Value>, file: &str, max_pos: i64) -> Result<RopeScaling> {
    let kind = s.get("rope_type").or_else(|| s.get("type")).and_then(Value::as_str).unwrap_or("default");
    let factor = || -> Result<f64> {
        opt_f64(s, file, "factor")?.ok_or_else(|| key_err(file, "rope_scaling.factor", "missing"))
    };
    Ok(match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear { factor: factor()? },
        "dynamic" => RopeScaling::Dynamic { factor: factor()? },
        "yarn" => {
            let original = opt_f64(s, file, "original_max_position_embeddings")?.unwrap_or(max_pos as f64);
            // transformers derives a missing factor from the two lengths (DeepSeek-V3 style).
            let factor = opt_f64(s, file, "factor")?.unwrap_or(max_pos as f64 / original);
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings: original,
                attention_factor: opt_f64(s, file, "attention_factor")?,
                beta_fast: opt_f64(s, file, "beta_fast")?.filter(|b| *b != 0.0).unwrap_or(32.0),
                beta_slow: opt_f64(s, file, "beta_slow")?.filter(|b| *b != 0.0).unwrap_or(1.0),
                mscale: opt_f64(s, file, "mscale")?,
                mscale_all_dim: opt_f64(s, file, "mscale_all_dim")?,
                truncate: s.get("truncate").and_then(Value::as_bool).unwrap_or(true),
            }
        }
        other => {
            return Err(key_err(
                file,
                "rope_scaling.rope_type",
                format!("`{other}` is not supported (default, linear, dynamic, yarn)"),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        json!({"model_type": "qwen2", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "max_position_embeddings": 1024})
    }

    #[test]
    fn reads_both_rope_layouts() {
        let mut classic = base();
        classic["rope_theta"] = json!(1e6);
        classic["rope_scaling"] = json!({"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256});
        let a = QwenConfig::from_value(classic, "c").unwrap();
        let mut v5 = base();
        v5["rope_parameters"] =
            json!({"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0, "original_max_position_embeddings": 256});
        let b = QwenConfig::from_value(v5, "c").unwrap();
        assert_eq!(a.rope_theta, 1e6);
        assert_eq!(a.rope_scaling, b.rope_scaling);
        assert!(matches!(a.rope_scaling, RopeScaling::Yarn { factor: 4.0, .. }));
        assert_eq!(a.head_dim, 16);
    }

    #[test]
    fn rope_override_replaces_the_scaling_and_extends_the_context() {
        let mut c = QwenConfig::from_value(base(), "c").unwrap();
        assert_eq!(c.context_length(), 1024);
        c.override_rope_scaling(&json!({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024}))
            .unwrap();
        assert!(matches!(c.rope_scaling, RopeScaling::Yarn { factor: 4.0, .. }));
        assert_eq!(c.context_length(), 4096);
        let err = c.override_rope_scaling(&json!({"rope_type": "ntk-by-parts"})).unwrap_err().to_string();
        assert!(err.contains("ntk-by-parts"), "{err}");
        assert!(c.override_rope_scaling(&json!(4.0)).is_err());
    }

    #[test]
    fn errors_name_the_key() {
        let mut c = base();
        c.as_object_mut().unwrap().remove("hidden_size");
        let err = QwenConfig::from_value(c, "x/config.json").unwrap_err().to_string();
        assert!(err.contains("hidden_size") && err.contains("x/config.json"), "{err}");
        let mut c = base();
        c["model_type"] = json!("llama");
        assert!(QwenConfig::from_value(c, "f").unwrap_err().to_string().contains("llama"));
    }
}
