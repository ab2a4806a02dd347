//! Per-token log-probs (and entropy) of response tokens.
//!
//! The batch is one packed row without padding: each sequence a causal segment, or, with shared
//! prompts, each distinct prompt of consecutive sequences one segment and each response a segment
//! that sees its prompt whole and itself causally (`model::Layout::Packed`). A group of G rollouts
//! then runs its prompt's forward once, and the gradients of all G responses flow into that one
//! forward through the prompt's keys and values. Hidden states are computed once; the vocabulary
//! projection and log-softmax run a chunk of tokens at a time, so no `[tokens x vocab]` logits
//! tensor ever exists whole.

use std::sync::Arc;

use longrl_core::api::{LogprobOutput, Sequence};
use longrl_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::model::{self, Layout, QwenModel, Segment};
use crate::recompute::{grad_enabled, recompute};

/// How a batch of sequences is laid out for the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BatchLayout {
    /// Packed, and consecutive sequences with the same prompt share one forward of it.
    Shared,
    /// Packed, one segment per sequence (each prompt computed with its response).
    Packed,
    /// `[B, T]` right-padded to the longest sequence.
    Padded,
}

/// Whether and how entropy is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entropy {
    No,
    /// For logging: computed without gradients (no backward cost).
    Logged,
    /// Part of the loss: differentiable.
    WithGrad,
}

#[derive(Debug, Clone, Copy)]
pub struct ScoreOptions {
    pub with_grad: bool,
    pub entropy: Entropy,
    /// Tokens per chunk of the vocabulary projection (0: all at once).
    pub chunk_tokens: i64,
    pub temperature: f64,
    pub layout: BatchLayout,
}

/// Token ids `[1, T]` / `[B, T]`, positions, the layout, and for each response token (in order)
/// the flat index of the hidden state that predicts it and its place in the `[B, max_resp]` output.
struct Batch {
    ids: Vec<i64>,
    positions: Vec<i64>,
    shape: [i64; 2],
    layout: Layout,
    hidden_index: Vec<i64>,
    out_index: Vec<i64>,
    targets: Vec<i64>,
}

fn padded_batch(batch: &[Sequence], max_resp: i64) -> Batch {
    // The last response token predicts nothing, so it is left out. With right padding, plain
    // causal attention never lets a real token see a pad.
    let input_len = |s: &Sequence| s.prompt.len() + s.response.len().saturating_sub(1);
    let b = batch.len() as i64;
    let t = batch.iter().map(input_len).max().unwrap_or(0) as i64;
    let mut ids = vec![0i64; (b * t) as usize];
    let (mut hidden_index, mut out_index, mut targets) = (Vec::new(), Vec::new(), Vec::new());
    for (r, s) in batch.iter().enumerate() {
        for (c, &tok) in s.prompt.iter().chain(&s.response).take(input_len(s)).enumerate() {
            ids[r * t as usize + c] = tok as i64;
        }
        for (j, &tok) in s.response.iter().enumerate() {
            hidden_index.push(r as i64 * t + (s.prompt.len() + j) as i64 - 1);
            out_index.push(r as i64 * max_resp + j as i64);
            targets.push(tok as i64);
        }
    }
    let positions = (0..b).flat_map(|_| 0..t).collect();
    Batch { ids, positions, shape: [b, t], layout: Layout::Rows, hidden_index, out_index, targets }
}

fn packed_batch(batch: &[Sequence], max_resp: i64, share: bool) -> Batch {
    let (mut ids, mut positions, mut segments) = (Vec::new(), Vec::new(), Vec::new());
    let (mut hidden_index, mut out_index, mut targets) = (Vec::new(), Vec::new(), Vec::new());
    let mut push = |tokens: &mut dyn Iterator<Item = u32>, first_position: i64, prefix: Option<usize>| {
        let start = ids.len() as i64;
        for (i, tok) in tokens.enumerate() {
            ids.push(tok as i64);
            positions.push(first_position + i as i64);
        }
        let len = ids.len() as i64 - start;
        if len > 0 {
            segments.push(Segment { start, len, prefix });
        }
        (start, len, segments.len().checked_sub(1))
    };
    // (prompt, index of its segment, its last token's flat index) of the current shared prompt.
    let mut shared: Option<(&[u32], usize, i64)> = None;
    for (r, s) in batch.iter().enumerate() {
        let p = s.prompt.len() as i64;
        let rest = s.response.len().saturating_sub(1);
        let (last_prompt_token, response_start) = if share {
            let (segment, last) = match shared {
                Some((prompt, segment, last)) if prompt == s.prompt.as_slice() => (segment, last),
                _ => {
                    let (start, len, segment) = push(&mut s.prompt.iter().copied(), 0, None);
                    let segment = segment.expect("a prompt is never empty");
                    shared = Some((s.prompt.as_slice(), segment, start + len - 1));
                    (segment, start + len - 1)
                }
            };
            let (start, _, _) = push(&mut s.response[..rest].iter().copied(), p, Some(segment));
            (last, start)
        } else {
            let (start, _, _) = push(&mut s.prompt.iter().chain(&s.response[..rest]).copied(), 0, None);
            (start + p - 1, start + p)
        };
        for (j, &tok) in s.response.iter().enumerate() {
            hidden_index.push(if j == 0 { last_prompt_token } else { response_start + j as i64 - 1 });
            out_index.push(r as i64 * max_resp + j as i64);
            targets.push(tok as i64);
        }
    }
    let t = ids.len() as i64;
    Batch {
        ids,
        positions,
        shape: [1, t],
        layout: Layout::Packed(Arc::new(segments)),
        hidden_index,
        out_index,
        targets,
    }
}

pub fn logprobs(model: &QwenModel, batch: &[Sequence], options: &ScoreOptions) -> Result<LogprobOutput> {
    if !(options.temperature > 0.0) {
        return Err(Error::msg(format!("logprobs: temperature must be > 0 (got {})", options.temperature)));
    }
    let vocab = model.config.vocab_size as u32;
    for (i, s) in batch.iter().enumerate() {
        if s.prompt.is_empty() {
            return Err(Error::msg(format!("logprobs: sequence {i} has an empty prompt")));
        }
        if let Some(bad) = s.prompt.iter().chain(&s.response).find(|&&t| t >= vocab) {
            return Err(Error::msg(format!(
                "logprobs: sequence {i} has token id {bad} outside the vocabulary ({vocab})"
            )));
        }
    }
    let device = model.device;
    let b = batch.len() as i64;
    let max_resp = batch.iter().map(|s| s.response.len()).max().unwrap_or(0) as i64;
    let zeros = || Tensor::f_zeros([b, max_resp], (Kind::Float, device));
    let want_entropy = options.entropy != Entropy::No;
    if max_resp == 0 {
        return Ok(LogprobOutput {
            logprobs: zeros()?,
            entropy: want_entropy.then(zeros).transpose()?,
            mask: zeros()?,
        });
    }
    let _guard = (!options.with_grad).then(tch::no_grad_guard);

    let plan = match options.layout {
        BatchLayout::Padded => padded_batch(batch, max_resp),
        BatchLayout::Packed => packed_batch(batch, max_resp, false),
        BatchLayout::Shared => packed_batch(batch, max_resp, true),
    };
    let ids = Tensor::from_slice(&plan.ids).f_view(plan.shape)?.f_to(device)?;
    let positions = Tensor::from_slice(&plan.positions).f_view(plan.shape)?.f_to(device)?;
    let hidden = model.forward_hidden(&ids, &positions, &plan.layout)?;
    let h = hidden.size()[2];
    let hidden_index = Tensor::from_slice(&plan.hidden_index).f_to(device)?;
    let selected = hidden.f_reshape([-1, h])?.f_index_select(0, &hidden_index)?;
    let targets = Tensor::from_slice(&plan.targets).f_to(device)?;

    let n = targets.size()[0];
    let chunk = if options.chunk_tokens <= 0 { n } else { options.chunk_tokens };
    let temperature = options.temperature;
    let grad_entropy = options.entropy == Entropy::WithGrad;
    let n_out = if want_entropy { 2 } else { 1 };
    // With gradients, each chunk is one recomputing autograd node: only the hidden states are kept
    // for backward, which projects the chunk again, so peak memory grows with the chunk and not
    // with tokens x vocab. Entropy only logged is computed in the forward pass alone: the node's
    // recomputation in backward skips it, and the value is handed out detached.
    let recompute_chunks = options.with_grad && grad_enabled();
    let (mut lps, mut ents) = (Vec::new(), Vec::new());
    let hidden_chunks = selected.f_split(chunk, 0)?;
    let target_chunks = targets.f_split(chunk, 0)?;
    for (hidden_chunk, target_chunk) in hidden_chunks.iter().zip(target_chunks) {
        let mut out = if recompute_chunks {
            let lm_head = model.lm_head().shallow_clone();
            let target = target_chunk.shallow_clone();
            recompute(&[hidden_chunk], &[model.lm_head()], n_out, move |inputs| {
                let entropy_now = want_entropy && (grad_entropy || !grad_enabled());
                let mut out = chunk_logprobs(&inputs[0], &lm_head, &target, temperature, entropy_now)?;
                if want_entropy && !entropy_now {
                    out.push(out[0].f_zeros_like()?);
                }
                Ok(out)
            })?
        } else {
            chunk_logprobs(hidden_chunk, model.lm_head(), &target_chunk, temperature, want_entropy)?
        };
        if want_entropy {
            let entropy = out.pop().expect("two outputs");
            ents.push(if grad_entropy { entropy } else { entropy.f_detach()? });
        }
        lps.push(out.pop().expect("one output"));
    }
    let values = Tensor::f_cat(&lps, 0)?;
    check_finite(&values, &plan.out_index, max_resp)?;
    let out_index = Tensor::from_slice(&plan.out_index).f_to(device)?;
    let scatter = |values: &Tensor| -> Result<Tensor> {
        Ok(Tensor::f_zeros([b * max_resp], (Kind::Float, device))?
            .f_index_copy(0, &out_index, values)?
            .f_view([b, max_resp])?)
    };
    let logprobs = scatter(&values)?;
    let entropy = if want_entropy { Some(scatter(&Tensor::f_cat(&ents, 0)?)?) } else { None };
    let mask = Tensor::f_zeros([b * max_resp], (Kind::Float, device))?
        .f_index_fill(0, &out_index, 1.0)?
        .f_view([b, max_resp])?;
    Ok(LogprobOutput { logprobs, entropy, mask })
}

/// Non-finite log-probs (from non-finite logits) are an error naming the first sequence and token.
fn check_finite(values: &Tensor, out_index: &[i64], max_resp: i64) -> Result<()> {
    let bad = values.f_isfinite()?.f_logical_not()?;
    if !bad.f_any()?.f_int64_value(&[])?.eq(&1) {
        return Ok(());
    }
    let first = bad.f_nonzero()?.f_view([-1])?.f_int64_value(&[0])? as usize;
    let at = out_index[first];
    Err(Error::msg(format!(
        "logprobs: non-finite log-probability for sequence {} at response token {} (non-finite logits)",
        at / max_resp,
        at % max_resp
    )))
}

/// Log-probs of `targets` `[N]` under `hidden` `[N, H]` projected by `lm_head` at `temperature`,
/// and, with `entropy`, the entropy of each token's distribution: `[lp]` or `[lp, entropy]`.
fn chunk_logprobs(
    hidden: &Tensor,
    lm_head: &Tensor,
    targets: &Tensor,
    temperature: f64,
    entropy: bool,
) -> Result<Vec<Tensor>> {
    let mut logits = model::project(hidden, lm_head)?;
    if temperature != 1.0 {
        logits = logits.f_div_scalar(temperature)?;
    }
    let log_probs = logits.f_log_softmax(-1, Kind::Float)?;
    drop(logits);
    let lp = log_probs.f_gather(1, &targets.f_unsqueeze(1)?, false)?.f_squeeze_dim(1)?;
    let mut out = vec![lp];
    if entropy {
        out.push(log_probs.f_exp()?.f_mul(&log_probs)?.f_sum_dim_intlist(-1, false, Kind::Float)?.f_neg()?);
    }
    Ok(out)
}
