//! The Qwen2 / Qwen3 decoder in tch, structured like HF's modeling code. Each tensor is asked for
//! by its checkpoint name, spelled once, in the constructors below (see [`crate::weights`]).
//!
//! The model computes projections, norms, rotary embeddings and the MLP; where the keys of an
//! attention live and what each query sees is the caller's: a [`Layout`] for forwards without a
//! cache (training, scoring), or an attention callback for generation, which keeps its own caches.

use std::sync::Arc;

use longrl_core::{Error, Result};
use tch::{Kind, Tensor};

use crate::attention::{KeyPart, attend};
use crate::hf_config::{Arch, QwenConfig};
use crate::onednn::{PackedLayer, PackedLinear, PackedWeights, Proj};
use crate::recompute::{grad_enabled, recompute};
use crate::rope::{Rope, apply_rotary};
use crate::weights::{Init, Vars};

pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
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
}

/// HF's RMSNorm: normalise in float32, scale in the input dtype.
fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let kind = x.kind();
    let h = x.f_to_kind(Kind::Float)?;
    let variance = h.f_square()?.f_mean_dim(-1, true, Kind::Float)?;
    let h = h.f_mul(&variance.f_add_scalar(eps)?.f_rsqrt()?)?;
    Ok(weight.f_mul(&h.f_to_kind(kind)?)?)
}

/// A run of tokens in a packed row: `[start, start + len)`, causal within itself, and, with
/// `prefix`, also seeing all of an earlier segment (its group's shared prompt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub start: i64,
    pub len: i64,
    pub prefix: Option<usize>,
}

/// What the queries of a forward without a cache see.
#[derive(Debug, Clone)]
pub enum Layout {
    /// `[B, T]` rows, causal within each (right padding is invisible to the real tokens).
    Rows,
    /// One row `[1, T]` of back-to-back segments tiling `[0, T)` in order: no padding, no mask.
    Packed(Arc<Vec<Segment>>),
}

impl Layout {
    /// Attention for `q` `[B, heads, T, D]` and this forward's own `k`, `v` `[B, kv_heads, T, D]`.
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
        let gqa = q.size()[1] != k.size()[1];
        match self {
            Layout::Rows => Ok(Tensor::f_scaled_dot_product_attention::<Tensor>(q, k, v, None, 0.0, true, scale, gqa)?),
            Layout::Packed(segments) => {
                let t = q.size()[2];
                let covered: i64 = segments.iter().map(|s| s.len).sum();
                if q.size()[0] != 1 || covered != t {
                    return Err(Error::msg(format!(
                        "packed layout: segments cover {covered} tokens of a [{}, {t}] batch",
                        q.size()[0]
                    )));
                }
                let mut outs = Vec::with_capacity(segments.len());
                for s in segments.iter() {
                    let take = |x: &Tensor| x.f_narrow(2, s.start, s.len);
                    let (qs, ks, vs) = (take(q)?, take(k)?, take(v)?);
                    let out = match s.prefix {
                        None => Tensor::f_scaled_dot_product_attention::<Tensor>(
                            &qs, &ks, &vs, None, 0.0, true, scale, gqa,
                        )?,
                        Some(p) => {
                            let p = segments.get(p).filter(|p| p.start + p.len <= s.start).ok_or_else(|| {
                                Error::msg(format!("packed layout: segment at {} has no earlier prefix {p}", s.start))
                            })?;
                            let pk = k.f_narrow(2, p.start, p.len)?;
                            let pv = v.f_narrow(2, p.start, p.len)?;
                            attend(&qs, &[KeyPart::all(&pk, &pv), KeyPart::causal(&ks, &vs)], scale)?
                        }
                    };
                    outs.push(out);
                }
                Ok(if outs.len() == 1 { outs.remove(0) } else { Tensor::f_cat(&outs, 2)? })
            }
        }
    }
}

/// A layer's attention as generation runs it: `(layer, q, k, v) -> out`, with q `[B, heads, T, D]`
/// and this forward's k, v `[B, kv_heads, T, D]` (rotated); the callback stores k and v in its
/// cache and attends over whatever the queries see.
pub type AttendFn<'a> = dyn FnMut(usize, &Tensor, &Tensor, &Tensor) -> Result<Tensor> + 'a;

/// What every layer of one forward shares.
struct Pass<'a> {
    cos: &'a Tensor,
    sin: &'a Tensor,
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
    fn new(vb: &Vars, c: &QwenConfig) -> Result<Attention> {
        let (h, hd) = (c.hidden_size, c.head_dim);
        let (q_dim, kv_dim) = (c.num_attention_heads * hd, c.num_key_value_heads * hd);
        let (q, k, v) = (vb.pp("q_proj"), vb.pp("k_proj"), vb.pp("v_proj"));
        // Weights before biases: the order of HF's parameter list (and of a seeded random init).
        let qw = q.get("weight", &[q_dim, h], Init::Normal)?;
        let kw = k.get("weight", &[kv_dim, h], Init::Normal)?;
        let vw = v.get("weight", &[kv_dim, h], Init::Normal)?;
        let bias = |p: &Vars, n: i64| c.qkv_bias.then(|| p.get("bias", &[n], Init::Zeros)).transpose();
        let (qb, kb, vb_) = (bias(&q, q_dim)?, bias(&k, kv_dim)?, bias(&v, kv_dim)?);
        let o = Linear { weight: vb.pp("o_proj").get("weight", &[h, q_dim], Init::Normal)?, bias: None };
        let head_norm =
            |name: &str| (c.arch == Arch::Qwen3).then(|| vb.pp(name).get("weight", &[hd], Init::Ones)).transpose();
        Ok(Attention {
            q: Linear { weight: qw, bias: qb },
            k: Linear { weight: kw, bias: kb },
            v: Linear { weight: vw, bias: vb_ },
            o,
            q_norm: head_norm("q_norm")?,
            k_norm: head_norm("k_norm")?,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: hd,
            eps: c.rms_norm_eps,
        })
    }

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
        attend: &mut AttendFn<'_>,
        layer: usize,
        packed: Option<&PackedLayer>,
    ) -> Result<Tensor> {
        let (b, t) = (x.size()[0], x.size()[1]);
        let head_dim = self.head_dim;
        let eps = self.eps;
        // Projected `[B, T, heads, D]` -> (Qwen3: per-head norm) -> `[B, heads, T, D]` -> rotary.
        // Rotary alone keeps nothing big for backward (its products are with constants), so only
        // the norm + rotary block of Qwen3 is worth a recomputing node.
        let rotated = |lin: &Linear, proj: Proj, heads: i64, norm: Option<&Tensor>| -> Result<Tensor> {
            let y = lin.forward_with(x, packed.map(|p| &p[proj]))?.f_view([b, t, heads, head_dim])?;
            let Some(norm) = norm else {
                return apply_rotary(&y.f_transpose(1, 2)?, pass.cos, pass.sin);
            };
            let (cos, sin, weight) = (pass.cos.shallow_clone(), pass.sin.shallow_clone(), norm.shallow_clone());
            elementwise(pass.lean, &[&y], &[norm], move |i| {
                apply_rotary(&rms_norm(&i[0], &weight, eps)?.f_transpose(1, 2)?, &cos, &sin)
            })
        };
        let q = rotated(&self.q, Proj::Q, self.heads, self.q_norm.as_ref())?;
        let k = rotated(&self.k, Proj::K, self.kv_heads, self.k_norm.as_ref())?;
        let v = self
            .v
            .forward_with(x, packed.map(|p| &p[Proj::V]))?
            .f_view([b, t, self.kv_heads, head_dim])?
            .f_transpose(1, 2)?;
        let out = attend(layer, &q, &k, &v)?;
        let out = out.f_transpose(1, 2)?.f_reshape([b, t, self.heads * self.head_dim])?;
        self.o.forward_with(&out, packed.map(|p| &p[Proj::O]))
    }
}

struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Mlp {
    fn new(vb: &Vars, c: &QwenConfig) -> Result<Mlp> {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let linear = |name: &str, shape: [i64; 2]| -> Result<Linear> {
            Ok(Linear { weight: vb.pp(name).get("weight", &shape, Init::Normal)?, bias: None })
        };
        Ok(Mlp {
            gate: linear("gate_proj", [i, h])?,
            up: linear("up_proj", [i, h])?,
            down: linear("down_proj", [h, i])?,
        })
    }

    fn shallow_clone(&self) -> Mlp {
        Mlp { gate: self.gate.shallow_clone(), up: self.up.shallow_clone(), down: self.down.shallow_clone() }
    }

    fn forward(&self, x: &Tensor, lean: bool, packed: Option<&PackedLayer>) -> Result<Tensor> {
        let gate = self.gate.forward_with(x, packed.map(|p| &p[Proj::Gate]))?;
        let up = self.up.forward_with(x, packed.map(|p| &p[Proj::Up]))?;
        let h = elementwise(lean, &[&gate, &up], &[], |i| Ok(i[0].f_silu()?.f_mul(&i[1])?))?;
        self.down.forward_with(&h, packed.map(|p| &p[Proj::Down]))
    }
}

struct Layer {
    input_norm: Tensor,
    attention: Attention,
    post_norm: Tensor,
    mlp: Mlp,
}

impl Layer {
    fn new(vb: &Vars, c: &QwenConfig) -> Result<Layer> {
        let h = c.hidden_size;
        Ok(Layer {
            input_norm: vb.pp("input_layernorm").get("weight", &[h], Init::Ones)?,
            attention: Attention::new(&vb.pp("self_attn"), c)?,
            post_norm: vb.pp("post_attention_layernorm").get("weight", &[h], Init::Ones)?,
            mlp: Mlp::new(&vb.pp("mlp"), c)?,
        })
    }

    /// Handles to the same weights (the closure of a checkpointed layer owns them).
    fn shallow_clone(&self) -> Layer {
        Layer {
            input_norm: self.input_norm.shallow_clone(),
            attention: self.attention.shallow_clone(),
            post_norm: self.post_norm.shallow_clone(),
            mlp: self.mlp.shallow_clone(),
        }
    }

    /// The projections in [`Proj`] order, for packing.
    fn projections(&self) -> [&Linear; 7] {
        let (a, m) = (&self.attention, &self.mlp);
        [&a.q, &a.k, &a.v, &a.o, &m.gate, &m.up, &m.down]
    }

    /// Every weight of the layer.
    fn tensors(&self) -> Vec<&Tensor> {
        let mut out = vec![&self.input_norm, &self.post_norm];
        for lin in self.projections() {
            out.push(&lin.weight);
            out.extend(lin.bias.as_ref());
        }
        out.extend(self.attention.q_norm.as_ref());
        out.extend(self.attention.k_norm.as_ref());
        out
    }

    fn forward(
        &self,
        x: &Tensor,
        pass: &Pass<'_>,
        attend: &mut AttendFn<'_>,
        layer: usize,
        packed: Option<&PackedLayer>,
    ) -> Result<Tensor> {
        let h = norm(x, &self.input_norm, pass.eps, pass.lean)?;
        let h = self.attention.forward(&h, pass, attend, layer, packed)?;
        let x = x.f_add(&h)?;
        let h = norm(&x, &self.post_norm, pass.eps, pass.lean)?;
        Ok(x.f_add(&self.mlp.forward(&h, pass.lean, packed)?)?)
    }

    /// `forward` over `layout` as one recomputing autograd node: only `x` is kept for the
    /// backward pass, which runs the layer again.
    fn forward_checkpointed(&self, x: &Tensor, pass: &Pass<'_>, layout: &Layout, scale: f64) -> Result<Tensor> {
        let layer = self.shallow_clone();
        let (cos, sin) = (pass.cos.shallow_clone(), pass.sin.shallow_clone());
        let (layout, eps) = (layout.clone(), pass.eps);
        let mut out = recompute(&[x], &self.tensors(), 1, move |inputs| {
            // The whole layer is recomputed: no nodes inside it.
            let pass = Pass { cos: &cos, sin: &sin, eps, lean: false };
            let mut attend = |_: usize, q: &Tensor, k: &Tensor, v: &Tensor| layout.attend(q, k, v, scale);
            Ok(vec![layer.forward(&inputs[0], &pass, &mut attend, 0, None)?])
        })?;
        Ok(out.remove(0))
    }
}

/// Logits `[.., V]` of hidden states under the vocabulary projection `lm_head` `[V, H]`, in float32.
pub fn project(hidden: &Tensor, lm_head: &Tensor) -> Result<Tensor> {
    Ok(hidden.f_linear::<&Tensor>(lm_head, None)?.f_to_kind(Kind::Float)?)
}

pub struct QwenModel {
    pub config: QwenConfig,
    pub device: tch::Device,
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
    /// Every parameter by HF name, in checkpoint order (shallow clones of the tensors above).
    params: Vec<(String, Tensor)>,
}

impl QwenModel {
    /// Build the model from `vars` (a checkpoint or a random source), on `device` in `kind`.
    pub fn new(config: QwenConfig, vars: Vars, device: tch::Device, kind: Kind) -> Result<QwenModel> {
        let (v, h) = (config.vocab_size, config.hidden_size);
        let model = vars.pp("model");
        let embed = model.pp("embed_tokens").get("weight", &[v, h], Init::Normal)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::new(&model.pp("layers").pp(i), &config))
            .collect::<Result<Vec<_>>>()?;
        let norm = model.pp("norm").get("weight", &[h], Init::Ones)?;
        let lm_head = if config.tie_word_embeddings {
            embed.shallow_clone()
        } else {
            vars.pp("lm_head").get("weight", &[v, h], Init::Normal)?
        };
        drop(model);
        let params = vars.finish()?;
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

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// `1 / sqrt(head_dim)`, the attention scale.
    pub fn attention_scale(&self) -> f64 {
        1.0 / (self.config.head_dim as f64).sqrt()
    }

    /// Each layer's projections `(weight, bias)` in [`Proj`] order (for packing).
    pub fn projections(&self) -> Vec<[(&Tensor, Option<&Tensor>); 7]> {
        self.layers.iter().map(|l| l.projections().map(|lin| (&lin.weight, lin.bias.as_ref()))).collect()
    }

    /// Final hidden states `[B, T, H]` (after the last norm) for `input_ids` `[B, T]` at
    /// `positions`, attending as `layout` says, without a cache. With gradients, layers are
    /// checkpointed or their elementwise blocks recomputed as configured.
    pub fn forward_hidden(&self, input_ids: &Tensor, positions: &Tensor, layout: &Layout) -> Result<Tensor> {
        let grad = grad_enabled();
        let checkpoint = self.gradient_checkpointing && grad;
        let lean = self.lean_elementwise && !checkpoint && grad;
        let scale = self.attention_scale();
        self.run(input_ids, positions, lean, |layer, i, x, pass| {
            if checkpoint {
                layer.forward_checkpointed(x, pass, layout, scale)
            } else {
                let mut attend = |_: usize, q: &Tensor, k: &Tensor, v: &Tensor| layout.attend(q, k, v, scale);
                layer.forward(x, pass, &mut attend, i, None)
            }
        })
    }

    /// Final hidden states of a generation forward: `attend` keeps the caches and attends; decode
    /// steps may run through weights packed for them. No autograd nodes.
    pub fn forward_cached(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        attend: &mut AttendFn<'_>,
        packed: Option<&PackedWeights>,
    ) -> Result<Tensor> {
        self.run(input_ids, positions, false, |layer, i, x, pass| {
            layer.forward(x, pass, attend, i, packed.map(|p| p.layer(i)))
        })
    }

    fn run(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        lean: bool,
        mut each: impl FnMut(&Layer, usize, &Tensor, &Pass<'_>) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let mut x = Tensor::f_embedding(&self.embed, input_ids, -1, false, false)?;
        let (cos, sin) = self.rope.cos_sin(positions, self.kind)?;
        let pass = Pass { cos: &cos, sin: &sin, eps: self.config.rms_norm_eps, lean };
        for (i, layer) in self.layers.iter().enumerate() {
            x = each(layer, i, &x, &pass)?;
        }
        norm(&x, &self.norm, pass.eps, pass.lean)
    }

    /// Logits `[.., V]` of hidden states, in float32.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        project(hidden, &self.lm_head)
    }
}
