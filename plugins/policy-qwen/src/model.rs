//! The Qwen2 / Qwen3 decoder in tch, structured like HF's modeling code; parameter names are the HF
//! checkpoint keys.

use std::collections::BTreeMap;

use longrl_core::{Error, Result};
use tch::{Device, Kind, Tensor};

use crate::hf_config::{Arch, QwenConfig};
use crate::onednn::PackedLinear;
use crate::recompute::{grad_enabled, recompute};
use crate::rope::{Rope, apply_rotary};

struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    fn shallow_clone(&self) -> Linear {
        Linear { weight: self.weight.shallow_clone(), bias: self.bias.as_ref().map(Tensor::shallow_clone) }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.weight, self.bias.as_ref())?)
    }

    /// Through the packed copy of the weight when there is one (decode steps on CPU).
    fn forward_with(&self, x: &Tensor, packed: Option<&PackedLinear>) -> Result<Tensor> {
        match packed {
            Some(p) => p.forward(x),
            None => self.forward(x),
        }
    }

    fn pack(&self, batch: i64) -> Result<Option<PackedLinear>> {
        PackedLinear::new(&self.weight, self.bias.as_ref(), batch)
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

/// One layer's generation state: its slice of the KV cache, `[B, kv_heads, capacity, head_dim]`,
/// and, on CPU in float32, its weights packed for decode steps.
pub struct LayerCache {
    pub k: Tensor,
    pub v: Tensor,
    packed: Option<PackedLayer>,
}

/// A layer's projections packed for oneDNN (see [`PackedLinear`]); used by one-token steps.
struct PackedLayer {
    q: PackedLinear,
    k: PackedLinear,
    v: PackedLinear,
    o: PackedLinear,
    gate: PackedLinear,
    up: PackedLinear,
    down: PackedLinear,
}

/// How the queries of one forward attend.
pub struct AttentionSpec<'a> {
    /// Boolean `[B, 1, T, K]` (true = attend); `None` means plain causal over `K == T` keys, or all
    /// cached keys when decoding.
    pub mask: Option<&'a Tensor>,
    /// Cache column where this forward's first token goes (ignored without a cache).
    pub write_at: i64,
}

/// What every layer of one forward shares.
struct Pass<'a> {
    cos: &'a Tensor,
    sin: &'a Tensor,
    spec: &'a AttentionSpec<'a>,
    eps: f64,
    /// Norms and SwiGLU as recomputing autograd nodes (see [`elementwise`]).
    lean: bool,
}

/// `f(inputs)`; when `lean`, as one autograd node that keeps only `inputs` and recomputes `f` in
/// the backward pass. Used for the cheap elementwise blocks (RMSNorm, SwiGLU, Qwen3's q/k norm with
/// rotary): autograd keeps an intermediate of each besides its input (`x * rsqrt`, `silu(gate)`),
/// about a quarter of a layer's saved activations, and redoing a few elementwise passes in
/// backward costs about 1% of the step.
fn elementwise<F>(lean: bool, inputs: &[&Tensor], params: &[&Tensor], f: F) -> Result<Tensor>
where
    F: Fn(&[Tensor]) -> Result<Tensor> + Send + 'static,
{
    if !lean {
        let inputs: Vec<Tensor> = inputs.iter().map(|t| t.shallow_clone()).collect();
        return f(&inputs);
    }
    let mut out = recompute(inputs, params, 1, move |inputs| Ok(vec![f(inputs)?]))?;
    Ok(out.remove(0))
}

/// [`rms_norm`], as a recomputing node when `lean`.
fn norm(x: &Tensor, weight: &Tensor, eps: f64, lean: bool) -> Result<Tensor> {
    let w = weight.shallow_clone();
    elementwise(lean, &[x], &[weight], move |i| rms_norm(&i[0], &w, eps))
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
        pass: &Pass<'_>,
        cache: Option<(&Tensor, &Tensor)>,
        packed: Option<&PackedLayer>,
    ) -> Result<Tensor> {
        let (b, t) = (x.size()[0], x.size()[1]);
        let spec = pass.spec;
        let head_dim = self.head_dim;
        let eps = self.eps;
        // Projected `[B, T, heads, D]` -> (Qwen3: per-head norm) -> `[B, heads, T, D]` -> rotary.
        // Rotary alone keeps nothing big for backward (its products are with constants), so only
        // the norm + rotary block of Qwen3 is worth a recomputing node.
        let rotated =
            |lin: &Linear, fast: Option<&PackedLinear>, heads: i64, norm: Option<&Tensor>| -> Result<Tensor> {
                let y = lin.forward_with(x, fast)?.f_view([b, t, heads, head_dim])?;
                let Some(norm) = norm else {
                    return apply_rotary(&y.f_transpose(1, 2)?, pass.cos, pass.sin);
                };
                let (cos, sin, weight) = (pass.cos.shallow_clone(), pass.sin.shallow_clone(), norm.shallow_clone());
                elementwise(pass.lean, &[&y], &[norm], move |i| {
                    apply_rotary(&rms_norm(&i[0], &weight, eps)?.f_transpose(1, 2)?, &cos, &sin)
                })
            };
        let q = rotated(&self.q, packed.map(|p| &p.q), self.heads, self.q_norm.as_ref())?;
        let k = rotated(&self.k, packed.map(|p| &p.k), self.kv_heads, self.k_norm.as_ref())?;
        let v =
            self.v.forward_with(x, packed.map(|p| &p.v))?.f_view([b, t, self.kv_heads, head_dim])?.f_transpose(1, 2)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let gqa = self.heads != self.kv_heads;
        let out = match cache {
            Some((cache_k, cache_v)) => {
                // Written in place: the cache is allocated once per generation.
                cache_k.f_narrow(2, spec.write_at, t)?.f_copy_(&k)?;
                cache_v.f_narrow(2, spec.write_at, t)?.f_copy_(&v)?;
                let keys = cache_k.f_narrow(2, 0, spec.write_at + t)?;
                let values = cache_v.f_narrow(2, 0, spec.write_at + t)?;
                let causal = spec.mask.is_none() && t > 1;
                if causal && spec.write_at > 0 {
                    return Err(Error::msg("internal: a chunk after the first needs an explicit mask"));
                }
                if t == 1 && gqa {
                    // A decode step: the query heads that share a KV head become that head's
                    // `n_rep` query rows, so each cached key and value is read once per step
                    // rather than once per query head. HF's head order (query head h uses KV
                    // head h / n_rep) makes this a view; a `[B, 1, 1, K]` mask still broadcasts.
                    let n_rep = self.heads / self.kv_heads;
                    let grouped = q.f_reshape([b, self.kv_heads, n_rep, head_dim])?;
                    Tensor::f_scaled_dot_product_attention(
                        &grouped, &keys, &values, spec.mask, 0.0, false, scale, false,
                    )?
                    .f_reshape([b, self.heads, 1, head_dim])?
                } else {
                    Tensor::f_scaled_dot_product_attention(&q, &keys, &values, spec.mask, 0.0, causal, scale, gqa)?
                }
            }
            None => {
                Tensor::f_scaled_dot_product_attention(&q, &k, &v, spec.mask, 0.0, spec.mask.is_none(), scale, gqa)?
            }
        };
        let out = out.f_transpose(1, 2)?.f_reshape([b, t, self.heads * self.head_dim])?;
        self.o.forward_with(&out, packed.map(|p| &p.o))
    }
}

struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Mlp {
    fn shallow_clone(&self) -> Mlp {
        Mlp { gate: self.gate.shallow_clone(), up: self.up.shallow_clone(), down: self.down.shallow_clone() }
    }

    fn forward(&self, x: &Tensor, lean: bool, packed: Option<&PackedLayer>) -> Result<Tensor> {
        let gate = self.gate.forward_with(x, packed.map(|p| &p.gate))?;
        let up = self.up.forward_with(x, packed.map(|p| &p.up))?;
        let h = elementwise(lean, &[&gate, &up], &[], |i| Ok(i[0].f_silu()?.f_mul(&i[1])?))?;
        self.down.forward_with(&h, packed.map(|p| &p.down))
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
        for lin in [&a.q, &a.k, &a.v, &a.o, &self.mlp.gate, &self.mlp.up, &self.mlp.down] {
            out.push(&lin.weight);
            out.extend(lin.bias.as_ref());
        }
        out.extend(a.q_norm.as_ref());
        out.extend(a.k_norm.as_ref());
        out
    }

    fn forward(&self, x: &Tensor, pass: &Pass<'_>, cache: Option<&LayerCache>) -> Result<Tensor> {
        // Packed weights pay off for one-token steps; a prefill's many rows use the plain path.
        let packed = cache.and_then(|c| c.packed.as_ref()).filter(|_| x.size()[1] == 1);
        let h = norm(x, &self.input_norm, pass.eps, pass.lean)?;
        let h = self.attention.forward(&h, pass, cache.map(|c| (&c.k, &c.v)), packed)?;
        let x = x.f_add(&h)?;
        let h = norm(&x, &self.post_norm, pass.eps, pass.lean)?;
        Ok(x.f_add(&self.mlp.forward(&h, pass.lean, packed)?)?)
    }

    fn pack(&self, batch: i64) -> Result<Option<PackedLayer>> {
        let (a, m) = (&self.attention, &self.mlp);
        let (Some(q), Some(k), Some(v), Some(o), Some(gate), Some(up), Some(down)) = (
            a.q.pack(batch)?,
            a.k.pack(batch)?,
            a.v.pack(batch)?,
            a.o.pack(batch)?,
            m.gate.pack(batch)?,
            m.up.pack(batch)?,
            m.down.pack(batch)?,
        ) else {
            return Ok(None);
        };
        Ok(Some(PackedLayer { q, k, v, o, gate, up, down }))
    }

    /// `forward` without a cache as one recomputing autograd node: only `x` is kept for the
    /// backward pass, which runs the layer again.
    fn forward_checkpointed(&self, x: &Tensor, pass: &Pass<'_>) -> Result<Tensor> {
        let layer = self.shallow_clone();
        let (cos, sin) = (pass.cos.shallow_clone(), pass.sin.shallow_clone());
        let mask = pass.spec.mask.map(Tensor::shallow_clone);
        let (write_at, eps) = (pass.spec.write_at, pass.eps);
        let mut out = recompute(&[x], &self.tensors(), 1, move |inputs| {
            let spec = AttentionSpec { mask: mask.as_ref(), write_at };
            // The whole layer is recomputed: no nodes inside it.
            let pass = Pass { cos: &cos, sin: &sin, spec: &spec, eps, lean: false };
            Ok(vec![layer.forward(&inputs[0], &pass, None)?])
        })?;
        Ok(out.remove(0))
    }
}

/// Expected parameter names and shapes, in checkpoint order.
pub fn parameter_shapes(config: &QwenConfig) -> Vec<(String, Vec<i64>)> {
    let (h, hd) = (config.hidden_size, config.head_dim);
    let (q, kv) = (config.num_attention_heads * hd, config.num_key_value_heads * hd);
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![config.vocab_size, h])];
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
        out.push((format!("{p}.mlp.gate_proj.weight"), vec![config.intermediate_size, h]));
        out.push((format!("{p}.mlp.up_proj.weight"), vec![config.intermediate_size, h]));
        out.push((format!("{p}.mlp.down_proj.weight"), vec![h, config.intermediate_size]));
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !config.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![config.vocab_size, h]));
    }
    out
}

/// Logits `[.., V]` of hidden states under the vocabulary projection `lm_head` `[V, H]`, in float32.
pub fn project(hidden: &Tensor, lm_head: &Tensor) -> Result<Tensor> {
    Ok(hidden.f_linear::<&Tensor>(lm_head, None)?.f_to_kind(Kind::Float)?)
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
    /// Recompute norms and SwiGLU in the backward pass (on by default).
    lean_elementwise: bool,
    /// Generation packs the weights for oneDNN where it can (on by default).
    pack_for_decode: bool,
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
            let t = tensors.get(name).ok_or_else(|| Error::msg(format!("missing tensor `{name}`")))?;
            if t.size() != *shape {
                return Err(Error::msg(format!("tensor `{name}` has shape {:?}, expected {shape:?}", t.size())));
            }
            params.push((name.clone(), t.shallow_clone()));
        }
        let mut take = |name: &str| -> Result<Tensor> {
            tensors.remove(name).ok_or_else(|| Error::msg(format!("missing tensor `{name}`")))
        };
        let embed = take("model.embed_tokens.weight")?;
        let mut layers = Vec::new();
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let mut linear = |name: &str, bias: bool| -> Result<Linear> {
                Ok(Linear {
                    weight: take(&format!("{p}.{name}.weight"))?,
                    bias: if bias { Some(take(&format!("{p}.{name}.bias"))?) } else { None },
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
        let lm_head = if config.tie_word_embeddings { embed.shallow_clone() } else { take("lm_head.weight")? };
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
            lean_elementwise: true,
            pack_for_decode: true,
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

    /// With gradients, run the norms (with Qwen3's rotary) and SwiGLU as nodes that keep only
    /// their inputs and recompute the rest in backward (on by default; off gives the plain autograd
    /// graph, which tests compare against).
    pub fn set_lean_elementwise(&mut self, on: bool) {
        self.lean_elementwise = on;
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
        caches: Option<&mut [LayerCache]>,
    ) -> Result<Tensor> {
        let mut x = Tensor::f_embedding(&self.embed, input_ids, -1, false, false)?;
        let (cos, sin) = self.rope.cos_sin(positions, self.kind)?;
        let checkpoint = self.gradient_checkpointing && caches.is_none() && grad_enabled();
        let pass = Pass {
            cos: &cos,
            sin: &sin,
            spec,
            eps: self.config.rms_norm_eps,
            lean: self.lean_elementwise && !checkpoint && caches.is_none() && grad_enabled(),
        };
        for (i, layer) in self.layers.iter().enumerate() {
            x = if checkpoint {
                layer.forward_checkpointed(&x, &pass)?
            } else {
                layer.forward(&x, &pass, caches.as_deref().map(|c| &c[i]))?
            };
        }
        norm(&x, &self.norm, pass.eps, pass.lean)
    }

    /// Logits `[.., V]` of hidden states, in float32.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        project(hidden, &self.lm_head)
    }

    /// The vocabulary projection as generation uses it (see [`LogitsHead`]).
    pub fn logits_head(&self) -> LogitsHead {
        LogitsHead { weight: self.lm_head.shallow_clone(), packed: None }
    }

    /// An empty KV cache for `batch` sequences of up to `capacity` tokens.
    pub fn new_cache(&self, batch: i64, capacity: i64) -> Result<Vec<LayerCache>> {
        let shape = [batch, self.config.num_key_value_heads, capacity, self.config.head_dim];
        (0..self.layers.len())
            .map(|_| {
                Ok(LayerCache {
                    k: Tensor::f_zeros(shape, (self.kind, self.device))?,
                    v: Tensor::f_zeros(shape, (self.kind, self.device))?,
                    packed: None,
                })
            })
            .collect()
    }

    /// Before the decode steps of a generation (after its prefill, so that a prompt-only call
    /// pays nothing): on CPU in float32 without gradients, packs every layer's weights into
    /// `caches` and the vocabulary projection into `head` for steps of `batch` rows. A second copy
    /// of the weights lives as long as the caches.
    pub fn prepare_decode(&self, caches: &mut [LayerCache], head: &mut LogitsHead, batch: i64) -> Result<()> {
        if !self.pack_for_decode || grad_enabled() {
            return Ok(());
        }
        for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
            if cache.packed.is_none() {
                cache.packed = layer.pack(batch)?;
            }
        }
        if head.packed.is_none() {
            head.packed = PackedLinear::new(&head.weight, None, batch)?;
        }
        Ok(())
    }

    /// Whether generation packs the weights for oneDNN (on by default; tests compare both paths).
    pub fn set_pack_for_decode(&mut self, on: bool) {
        self.pack_for_decode = on;
    }
}

/// The vocabulary projection of generation, which projects a few rows per step. Once
/// [`QwenModel::prepare_decode`] packed it (CPU, float32) it runs through the packed oneDNN weight:
/// for `[8, 512] x [512, 32000]` the BLAS path took 14 ms against 4.5 ms on the 2-core benchmark
/// machine. Otherwise, and for the prefill's logits, it is the plain projection.
pub struct LogitsHead {
    weight: Tensor,
    packed: Option<PackedLinear>,
}

impl LogitsHead {
    /// Logits `[N, V]` of hidden states `[N, H]`, in float32.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        match &self.packed {
            Some(p) => p.forward(hidden),
            None => project(hidden, &self.weight),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_linear_matches_the_plain_one() {
        let _guard = tch::no_grad_guard();
        tch::manual_seed(1);
        let weight = Tensor::randn([3000, 64], (Kind::Float, Device::Cpu));
        let bias = Tensor::randn([3000], (Kind::Float, Device::Cpu));
        for with_bias in [false, true] {
            let lin = Linear { weight: weight.shallow_clone(), bias: with_bias.then(|| bias.shallow_clone()) };
            let packed = lin.pack(8).unwrap().expect("this libtorch has oneDNN: packing should apply");
            for shape in [vec![1, 64], vec![8, 64], vec![13, 64], vec![8, 1, 64]] {
                let x = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));
                let plain = lin.forward(&x).unwrap();
                let fast = packed.forward(&x).unwrap();
                assert_eq!(fast.size(), plain.size());
                let diff = (&fast - &plain).abs().max().double_value(&[]);
                assert!(diff < 1e-4, "{shape:?}, bias {with_bias}: outputs differ by {diff}");
            }
            // A strided (non-contiguous) input.
            let x = Tensor::randn([64, 8], (Kind::Float, Device::Cpu)).tr();
            let diff = (packed.forward(&x).unwrap() - lin.forward(&x).unwrap()).abs().max().double_value(&[]);
            assert!(diff < 1e-4, "transposed input: {diff}");
        }
    }

    #[test]
    fn packing_does_not_apply_outside_cpu_float32() {
        let _guard = tch::no_grad_guard();
        let weight = Tensor::randn([100, 16], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
        assert!(PackedLinear::new(&weight, None, 8).unwrap().is_none());
    }
}
