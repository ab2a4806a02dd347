//! Per-token log-probs (and entropy) of response tokens. Hidden states are computed once; the
//! vocabulary projection and log-softmax run a chunk of tokens at a time, so no
//! `[tokens x vocab]` logits tensor ever exists whole.

use longrl_core::api::{LogprobOptions, LogprobOutput, Sequence};
use longrl_core::{Error, Result};
use tch::{Kind, Tensor};

use crate::model::{self, AttentionSpec, QwenModel};
use crate::recompute::{grad_enabled, recompute};

pub fn logprobs(
    model: &QwenModel,
    batch: &[Sequence],
    options: &LogprobOptions,
    default_chunk: u32,
) -> Result<LogprobOutput> {
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
    if max_resp == 0 {
        return Ok(LogprobOutput {
            logprobs: zeros()?,
            entropy: options.entropy.then(zeros).transpose()?,
            mask: zeros()?,
        });
    }
    let _guard = (!options.with_grad).then(tch::no_grad_guard);

    // Right-padded inputs: the last response token predicts nothing, so it is left out. With right
    // padding, plain causal attention never lets a real token see a pad.
    let input_len = |s: &Sequence| s.prompt.len() + s.response.len().saturating_sub(1);
    let t = batch.iter().map(input_len).max().unwrap_or(0) as i64;
    let mut ids = vec![0i64; (b * t) as usize];
    let (mut hidden_index, mut out_index, mut targets) = (Vec::new(), Vec::new(), Vec::new());
    for (r, s) in batch.iter().enumerate() {
        let tokens = s.prompt.iter().chain(&s.response).take(input_len(s));
        for (c, &tok) in tokens.enumerate() {
            ids[r * t as usize + c] = tok as i64;
        }
        for (j, &tok) in s.response.iter().enumerate() {
            hidden_index.push(r as i64 * t + (s.prompt.len() + j) as i64 - 1);
            out_index.push(r as i64 * max_resp + j as i64);
            targets.push(tok as i64);
        }
    }
    let ids = Tensor::from_slice(&ids).f_view([b, t])?.f_to(device)?;
    let positions = Tensor::f_arange(t, (Kind::Int64, device))?.f_unsqueeze(0)?.f_expand([b, t], false)?;
    let spec = AttentionSpec { mask: None, write_at: 0 };
    let hidden = model.forward_hidden(&ids, &positions, &spec, None)?;
    let h = hidden.size()[2];
    let hidden_index = Tensor::from_slice(&hidden_index).f_to(device)?;
    let selected = hidden.f_reshape([b * t, h])?.f_index_select(0, &hidden_index)?;
    let targets = Tensor::from_slice(&targets).f_to(device)?;

    let n = targets.size()[0];
    let chunk = match options.chunk_tokens {
        0 => default_chunk as i64,
        c => c as i64,
    };
    let chunk = if chunk <= 0 { n } else { chunk };
    let temperature = options.temperature as f64;
    let want_entropy = options.entropy;
    let n_out = if want_entropy { 2 } else { 1 };
    // With gradients, each chunk is one recomputing autograd node: only the hidden states are kept
    // for backward, which projects the chunk again, so peak memory grows with the chunk and not
    // with tokens x vocab.
    let recompute_chunks = options.with_grad && grad_enabled();
    let (mut lps, mut ents) = (Vec::new(), Vec::new());
    let hidden_chunks = selected.f_split(chunk, 0)?;
    let target_chunks = targets.f_split(chunk, 0)?;
    for (hidden_chunk, target_chunk) in hidden_chunks.iter().zip(target_chunks) {
        let mut out = if recompute_chunks {
            let lm_head = model.lm_head().shallow_clone();
            recompute(&[hidden_chunk], &[model.lm_head()], n_out, move |inputs| {
                chunk_logprobs(&inputs[0], &lm_head, &target_chunk, temperature, want_entropy)
            })?
        } else {
            chunk_logprobs(hidden_chunk, model.lm_head(), &target_chunk, temperature, want_entropy)?
        };
        if want_entropy {
            ents.push(out.pop().expect("two outputs"));
        }
        lps.push(out.pop().expect("one output"));
    }
    let out_index = Tensor::from_slice(&out_index).f_to(device)?;
    let scatter = |parts: &[Tensor]| -> Result<Tensor> {
        let values = Tensor::f_cat(parts, 0)?;
        Ok(Tensor::f_zeros([b * max_resp], (Kind::Float, device))?
            .f_index_copy(0, &out_index, &values)?
            .f_view([b, max_resp])?)
    };
    let logprobs = scatter(&lps)?;
    let entropy = if options.entropy { Some(scatter(&ents)?) } else { None };
    let mask = Tensor::f_zeros([b * max_resp], (Kind::Float, device))?
        .f_index_fill(0, &out_index, 1.0)?
        .f_view([b, max_resp])?;
    Ok(LogprobOutput { logprobs, entropy, mask })
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
