//! The Qwen2 / Qwen3 decoder in tch, structured like HF's modeling code; parameter names are the HF
//! checkpoint keys.

use std::collections::BTreeMap;

use longrl_core::{Error, Result};
use tch::{Device, Kind, Tensor};

use crate::hf_config::{Arch, QwenConfig};
use crate::recompute::{grad_enabled, recompute};
use crate::rope::{Rope, apply_rotary};

struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    fn shallow_clone(&self) -> Linear {
        Linear {
            weight: self.weight.shallow_clone(),
            bias: self.bias.as_ref().map(Tensor::shallow_clone),
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.weight, self.bias.as_ref())?)
    }
}

/// HF's RMSNorm: normalise in float32, scale in the input dtype.
fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let kind = x.kind();
    let h = x.f_to_kind(Kind::Float)?;
    let variance = h.f_square()?.f_mean_dim(-1, true, Kind::Float)?;
    let h = h.f_mul(&variance.f_add_scalar(eps)?.f_rsqrt()?)?;
    Ok(weight.f_mul(&h.f_to_kind(kind)?)?)
}

/// One layer's slice of the generation KV cache: `[B, kv_heads, capacity, head_dim]`.
pub struct LayerCache {
    pub k: Tensor,
    pub v: Tensor,
}

/// How the queries of one forward attend.
pub struct AttentionSpec<'a> {
    /// Boolean `[B, 1, T, K]` (true = attend); `None` means plain causal over `K == T` keys, or all
    /// cached keys when decoding.
    pub mask: Option<&'a Tensor>,
    /// Cache column where this forward's first token goes (ignored without a cache).
    pub write_at: i64,
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
    eps: f64,
}

impl Attention {
    fn shallow_clone(&self) -> Attention {
        Attention {
            q: self.q.shallow_clone(),
            k: self.k.shallow_clone(),
            v: self.v.shallow_clone(),
            o: self.o.shallow_clone(),
            q_norm: self.q_norm.as_ref().map(Tensor::shallow_clone),
            k_norm: self.k_norm.as_ref().map(Tensor::shallow_clone),
            ..*self
        }
    }

    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        spec: &AttentionSpec<'_>,
        cache: Option<&mut LayerCache>,
    ) -> Result<Tensor> {
        let (b, t) = (x.size()[0], x.size()[1]);
        let project = |lin: &Linear, heads: i64, norm: Option<&Tensor>| -> Result<Tensor> {
            let y = lin.forward(x)?.f_view([b, t, heads, self.head_dim])?;
            let y = match norm {
                Some(w) => rms_norm(&y, w, self.eps)?,
                None => y,
            };
            Ok(y.f_transpose(1, 2)?)
        };
        let q = apply_rotary(
            &project(&self.q, self.heads, self.q_norm.as_ref())?,
            cos,
            sin,
        )?;
        let k = apply_rotary(
            &project(&self.k, self.kv_heads, self.k_norm.as_ref())?,
            cos,
            sin,
        )?;
        let v = project(&self.v, self.kv_heads, None)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let gqa = self.heads != self.kv_heads;
        let out = match cache {
            Some(cache) => {
                // Written in place: the cache is allocated once per generation.
                cache.k.f_narrow(2, spec.write_at, t)?.f_copy_(&k)?;
                cache.v.f_narrow(2, spec.write_at, t)?.f_copy_(&v)?;
                let keys = cache.k.f_narrow(2, 0, spec.write_at + t)?;
                let values = cache.v.f_narrow(2, 0, spec.write_at + t)?;
                let causal = spec.mask.is_none() && t > 1;
                if causal && spec.write_at > 0 {
                    return Err(Error::msg(
                        "internal: a chunk after the first needs an explicit mask",
                    ));
                }
                Tensor::f_scaled_dot_product_attention(
                    &q, &keys, &values, spec.mask, 0.0, causal, scale, gqa,
                )?
            }
            None => Tensor::f_scaled_dot_product_attention(
                &q,
                &k,
                &v,
                spec.mask,
                0.0,
                spec.mask.is_none(),
                scale,
                gqa,
            )?,
        };
        let out = out
            .f_transpose(1, 2)?
            .f_reshape([b, t, self.heads * self.head_dim])?;
        self.o.forward(&out)
    }
}

struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Mlp {
    fn shallow_clone(&self) -> Mlp {
        Mlp {
            gate: self.gate.shallow_clone(),
            up: self.up.shallow_clone(),
            down: self.down.shallow_clone(),
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self
            .gate
            .forward(x)?
            .f_silu()?
            .f_mul(&self.up.forward(x)?)?;
        self.down.forward(&h)
    }
}

struct Layer {
    input_norm: Tensor,
    attention: Attention,
    post_norm: Tensor,
    mlp: Mlp,
}

impl Layer {
    /// Handles to the same weights (the closure of a checkpointed layer owns them).
    fn shallow_clone(&self) -> Layer {
        Layer {
            input_norm: self.input_norm.shallow_clone(),
            attention: self.attention.shallow_clone(),
            post_norm: self.post_norm.shallow_clone(),
            mlp: self.mlp.shallow_clone(),
        }
    }

    /// Every weight of the layer.
    fn tensors(&self) -> Vec<&Tensor> {
        let a = &self.attention;
        let mut out = vec![&self.input_norm, &self.post_norm];
        for lin in [
            &a.q,
            &a.k,
            &a.v,
            &a.o,
            &self.mlp.gate,
            &self.mlp.up,
            &self.mlp.down,
        ] {
            out.push(&lin.weight);
            out.extend(lin.bias.as_ref());
        }
        out.extend(a.q_norm.as_ref());
        out.extend(a.k_norm.as_ref());
        out
    }

    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        spec: &AttentionSpec<'_>,
        cache: Option<&mut LayerCache>,
        eps: f64,
    ) -> Result<Tensor> {
        let h = rms_norm(x, &self.input_norm, eps)?;
        let h = self.attention.forward(&h, cos, sin, spec, cache)?;
        let x = x.f_add(&h)?;
        let h = rms_norm(&x, &self.post_norm, eps)?;
        Ok(x.f_add(&self.mlp.forward(&h)?)?)
    }

    /// `forward` without a cache as one recomputing autograd node: only `x` is kept for the
    /// backward pass, which runs the layer again.
    fn forward_checkpointed(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        spec: &AttentionSpec<'_>,
        eps: f64,
    ) -> Result<Tensor> {
        let layer = self.shallow_clone();
        let (cos_c, sin_c) = (cos.shallow_clone(), sin.shallow_clone());
        let mask = spec.mask.map(Tensor::shallow_clone);
        let write_at = spec.write_at;
        let mut out = recompute(&[x], &self.tensors(), 1, move |inputs| {
            let spec = AttentionSpec {
                mask: mask.as_ref(),
                write_at,
            };
            Ok(vec![
                layer.forward(&inputs[0], &cos_c, &sin_c, &spec, None, eps)?,
            ])
        })?;
        Ok(out.remove(0))
    }
}

/// Expected parameter names and shapes, in checkpoint order.
pub fn parameter_shapes(config: &QwenConfig) -> Vec<(String, Vec<i64>)> {
    let (h, hd) = (config.hidden_size, config.head_dim);
    let (q, kv) = (
        config.num_attention_heads * hd,
        config.num_key_value_heads * hd,
    );
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![config.vocab_size, h],
    )];
    for i in 0..config.num_hidden_layers {
        let p = format!("model.layers.{i}");
        out.push((format!("{p}.input_layernorm.weight"), vec![h]));
        out.push((format!("{p}.self_attn.q_proj.weight"), vec![q, h]));
        out.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h]));
        out.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h]));
        if config.qkv_bias {
            out.push((format!("{p}.self_attn.q_proj.bias"), vec![q]));
            out.push((format!("{p}.self_attn.k_proj.bias"), vec![kv]));
            out.push((format!("{p}.self_attn.v_proj.bias"), vec![kv]));
        }
        out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
        if config.arch == Arch::Qwen3 {
            out.push((format!("{p}.self_attn.q_norm.weight"), vec![hd]));
            out.push((format!("{p}.self_attn.k_norm.weight"), vec![hd]));
        }
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        out.push((
            format!("{p}.mlp.gate_proj.weight"),
            vec![config.intermediate_size, h],
        ));
        out.push((
            format!("{p}.mlp.up_proj.weight"),
            vec![config.intermediate_size, h],
        ));
        out.push((
            format!("{p}.mlp.down_proj.weight"),
            vec![h, config.intermediate_size],
        ));
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !config.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![config.vocab_size, h]));
    }
    out
}

/// Logits `[.., V]` of hidden states under the vocabulary projection `lm_head` `[V, H]`, in float32.
pub fn project(hidden: &Tensor, lm_head: &Tensor) -> Result<Tensor> {
    Ok(hidden
        .f_linear::<&Tensor>(lm_head, None)?
        .f_to_kind(Kind::Float)?)
}

pub struct QwenModel {
    pub config: QwenConfig,
    pub device: Device,
    pub kind: Kind,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Tensor,
    rope: Rope,
    /// Recompute each layer in the backward pass instead of keeping its activations.
    gradient_checkpointing: bool,
    /// Every parameter by HF name (shallow clones of the tensors above).
    params: Vec<(String, Tensor)>,
}

impl QwenModel {
    /// Build from named tensors already on `device` in `kind`, one per `parameter_shapes` entry.
    pub fn from_tensors(
        config: QwenConfig,
        mut tensors: BTreeMap<String, Tensor>,
        device: Device,
        kind: Kind,
    ) -> Result<QwenModel> {
        let shapes = parameter_shapes(&config);
        let mut params = Vec::with_capacity(shapes.len());
        for (name, shape) in &shapes {
            let t = tensors
                .get(name)
                .ok_or_else(|| Error::msg(format!("missing tensor `{name}`")))?;
            if t.size() != *shape {
                return Err(Error::msg(format!(
                    "tensor `{name}` has shape {:?}, expected {shape:?}",
                    t.size()
                )));
            }
            params.push((name.clone(), t.shallow_clone()));
        }
        let mut take = |name: &str| -> Result<Tensor> {
            tensors
                .remove(name)
                .ok_or_else(|| Error::msg(format!("missing tensor `{name}`")))
        };
        let embed = take("model.embed_tokens.weight")?;
        let mut layers = Vec::new();
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let mut linear = |name: &str, bias: bool| -> Result<Linear> {
                Ok(Linear {
                    weight: take(&format!("{p}.{name}.weight"))?,
                    bias: if bias {
                        Some(take(&format!("{p}.{name}.bias"))?)
                    } else {
                        None
                    },
                })
            };
            let q = linear("self_attn.q_proj", config.qkv_bias)?;
            let k = linear("self_attn.k_proj", config.qkv_bias)?;
            let v = linear("self_attn.v_proj", config.qkv_bias)?;
            let o = linear("self_attn.o_proj", false)?;
            let gate = linear("mlp.gate_proj", false)?;
            let up = linear("mlp.up_proj", false)?;
            let down = linear("mlp.down_proj", false)?;
            let (q_norm, k_norm) = if config.arch == Arch::Qwen3 {
                (
                    Some(take(&format!("{p}.self_attn.q_norm.weight"))?),
                    Some(take(&format!("{p}.self_attn.k_norm.weight"))?),
                )
            } else {
                (None, None)
            };
            layers.push(Layer {
                input_norm: take(&format!("{p}.input_layernorm.weight"))?,
                attention: Attention {
                    q,
                    k,
                    v,
                    o,
                    q_norm,
                    k_norm,
                    heads: config.num_attention_heads,
                    kv_heads: config.num_key_value_heads,
                    head_dim: config.head_dim,
                    eps: config.rms_norm_eps,
                },
                post_norm: take(&format!("{p}.post_attention_layernorm.weight"))?,
                mlp: Mlp { gate, up, down },
            });
        }
        let norm = take("model.norm.weight")?;
        let lm_head = if config.tie_word_embeddings {
            embed.shallow_clone()
        } else {
            take("lm_head.weight")?
        };
        let rope = Rope::new(&config, device)?;
        Ok(QwenModel {
            config,
            device,
            kind,
            embed,
            layers,
            norm,
            lm_head,
            rope,
            gradient_checkpointing: false,
            params,
        })
    }

    /// Recompute each decoder layer in the backward pass (activation checkpointing): a forward
    /// with gradients then keeps one `[B, T, H]` tensor per layer instead of all its activations.
    pub fn set_gradient_checkpointing(&mut self, on: bool) {
        self.gradient_checkpointing = on;
    }

    pub fn gradient_checkpointing(&self) -> bool {
        self.gradient_checkpointing
    }

    pub fn parameters(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// The vocabulary projection `[V, H]` (the embedding when tied).
    pub fn lm_head(&self) -> &Tensor {
        &self.lm_head
    }

    /// Final hidden states `[B, T, H]` (after the last norm) for `input_ids` `[B, T]` at `positions`.
    pub fn forward_hidden(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        spec: &AttentionSpec<'_>,
        mut caches: Option<&mut [LayerCache]>,
    ) -> Result<Tensor> {
        let mut x = Tensor::f_embedding(&self.embed, input_ids, -1, false, false)?;
        let (cos, sin) = self.rope.cos_sin(positions, self.kind)?;
        let eps = self.config.rms_norm_eps;
        let checkpoint = self.gradient_checkpointing && caches.is_none() && grad_enabled();
        for (i, layer) in self.layers.iter().enumerate() {
            x = if checkpoint {
                layer.forward_checkpointed(&x, &cos, &sin, spec, eps)?
            } else {
                let cache = caches.as_deref_mut().map(|c| &mut c[i]);
                layer.forward(&x, &cos, &sin, spec, cache, eps)?
            };
        }
        rms_norm(&x, &self.norm, eps)
    }

    /// Logits `[.., V]` of hidden states, in float32.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        project(hidden, &self.lm_head)
    }

    /// An empty KV cache for `batch` sequences of up to `capacity` tokens.
    pub fn new_cache(&self, batch: i64, capacity: i64) -> Result<Vec<LayerCache>> {
        let shape = [
            batch,
            self.config.num_key_value_heads,
            capacity,
            self.config.head_dim,
        ];
        (0..self.layers.len())
            .map(|_| {
                Ok(LayerCache {
                    k: Tensor::f_zeros(shape, (self.kind, self.device))?,
                    v: Tensor::f_zeros(shape, (self.kind, self.device))?,
                })
            })
            .collect()
    }
}
