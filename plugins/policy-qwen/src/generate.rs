//! Batched generation with a KV cache allocated once per call and written in place. Prompts are
//! left-padded; masks and per-row positions make padding invisible; finished rows leave the batch.

use std::time::Instant;

use longrl_core::api::{FinishReason, GenerateOutput, Generation, GenerationParams};
use longrl_core::{Error, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::model::{AttentionSpec, QwenModel};
use crate::sampling::Sampler;
use crate::text::TextCodec;

struct Row {
    prompt_len: i64,
    padded: bool,
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    finish: Option<FinishReason>,
    rng: ChaCha8Rng,
}

/// `[S, 1, q_len, k_len]` boolean mask: valid keys, causal from query column `q_start`; each query
/// sees itself so that rows of padding never softmax over nothing.
fn attention_mask(key_valid: &Tensor, q_start: i64, q_len: i64, k_len: i64) -> Result<Tensor> {
    let device = key_valid.device();
    let q = Tensor::f_arange_start(q_start, q_start + q_len, (Kind::Int64, device))?.f_unsqueeze(1)?;
    let k = Tensor::f_arange(k_len, (Kind::Int64, device))?.f_unsqueeze(0)?;
    let causal = k.f_le_tensor(&q)?; // [q, k]
    let itself = k.f_eq_tensor(&q)?;
    let valid = key_valid.f_narrow(1, 0, k_len)?.f_unsqueeze(1)?.f_unsqueeze(1)?; // [S,1,1,k]
    Ok(valid.f_logical_and(&causal)?.f_logical_or(&itself)?)
}

fn rows_to_cpu(logits: &Tensor) -> Result<(Vec<f32>, usize)> {
    let vocab = logits.size()[1] as usize;
    let flat = logits.f_to_kind(Kind::Float)?.f_to(Device::Cpu)?.f_contiguous()?.f_view([-1])?;
    Ok((Vec::<f32>::try_from(&flat)?, vocab))
}

/// Earliest occurrence of any stop string in `text`.
fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min()
}

pub fn generate(
    model: &QwenModel,
    codec: &TextCodec,
    prompts: &[Vec<u32>],
    params: &GenerationParams,
    default_prefill_chunk: u32,
) -> Result<GenerateOutput> {
    if params.rollouts == 0 {
        return Err(Error::msg("generate: `rollouts` must be at least 1"));
    }
    if !(params.temperature >= 0.0) || !(params.top_p > 0.0 && params.top_p <= 1.0) {
        return Err(Error::msg(format!(
            "generate: temperature must be >= 0 and top_p in (0, 1] (got {}, {})",
            params.temperature, params.top_p
        )));
    }
    let vocab = model.config.vocab_size as u32;
    for (i, p) in prompts.iter().enumerate() {
        if p.is_empty() {
            return Err(Error::msg(format!("generate: prompt {i} is empty")));
        }
        if let Some(bad) = p.iter().find(|&&t| t >= vocab) {
            return Err(Error::msg(format!(
                "generate: prompt {i} has token id {bad} outside the vocabulary ({vocab})"
            )));
        }
    }
    let mut out = GenerateOutput::default();
    if prompts.is_empty() {
        return Ok(out);
    }
    let _guard = tch::no_grad_guard();
    let device = model.device;
    let sampler = Sampler { temperature: params.temperature, top_k: params.top_k, top_p: params.top_p };
    let seqs: Vec<&Vec<u32>> = prompts.iter().flat_map(|p| std::iter::repeat_n(p, params.rollouts as usize)).collect();
    let s = seqs.len() as i64;
    let l = seqs.iter().map(|p| p.len()).max().unwrap_or(0) as i64;
    let max_new = params.max_new_tokens as i64;
    let mut rows: Vec<Row> = seqs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
            rng.set_stream(i as u64); // one stream per output: independent of batch composition
            Row {
                prompt_len: p.len() as i64,
                padded: (p.len() as i64) < l,
                tokens: Vec::new(),
                logprobs: Vec::new(),
                finish: None,
                rng,
            }
        })
        .collect();
    if max_new == 0 {
        out.generations = rows
            .into_iter()
            .map(|_| Generation { tokens: vec![], text: String::new(), logprobs: vec![], finish: FinishReason::Length })
            .collect();
        return Ok(out);
    }

    // Left-padded prompts, per-row positions, and which cache columns hold real tokens.
    let cap = l + max_new;
    let mut ids = vec![0i64; (s * l) as usize];
    let mut pos = vec![0i64; (s * l) as usize];
    let mut valid = vec![true; (s * cap) as usize];
    for (r, p) in seqs.iter().enumerate() {
        let pad = l as usize - p.len();
        for c in 0..l as usize {
            let at = r * l as usize + c;
            if c >= pad {
                ids[at] = p[c - pad] as i64;
                pos[at] = (c - pad) as i64;
            } else {
                valid[r * cap as usize + c] = false;
            }
        }
    }
    let ids = Tensor::from_slice(&ids).f_view([s, l])?.f_to(device)?;
    let pos = Tensor::from_slice(&pos).f_view([s, l])?.f_to(device)?;
    let mut key_valid = Tensor::from_slice(&valid).f_view([s, cap])?.f_to(device)?;
    let any_padding = rows.iter().any(|r| r.padded);

    let start = Instant::now();
    let mut caches = model.new_cache(s, cap)?;
    let chunk = match params.prefill_chunk {
        0 => default_prefill_chunk as i64,
        c => c as i64,
    };
    let chunk = if chunk <= 0 || chunk >= l { l } else { chunk };
    let mut last_hidden = None;
    let mut c0 = 0;
    while c0 < l {
        let len = chunk.min(l - c0);
        let mask = if any_padding || c0 > 0 { Some(attention_mask(&key_valid, c0, len, c0 + len)?) } else { None };
        let spec = AttentionSpec { mask: mask.as_ref(), write_at: c0 };
        let h =
            model.forward_hidden(&ids.f_narrow(1, c0, len)?, &pos.f_narrow(1, c0, len)?, &spec, Some(&mut caches))?;
        last_hidden = Some(h.f_narrow(1, len - 1, 1)?.f_squeeze_dim(1)?);
        c0 += len;
    }
    let mut head = model.logits_head();
    let mut logits = head.logits(&last_hidden.expect("a non-empty prompt"))?;
    let (mut host, mut vocab_n) = rows_to_cpu(&logits)?;
    out.prefill_tokens = seqs.iter().map(|p| p.len() as u64).sum();
    out.prefill_seconds = start.elapsed().as_secs_f64();

    let decode_start = Instant::now();
    if max_new > 1 {
        model.prepare_decode(&mut caches, &mut head, s)?;
    }
    let eos = &codec.eos_token_ids;
    let stop_window = params.stop.iter().map(|s| s.len()).max().unwrap_or(0) + 16;
    let mut active: Vec<usize> = (0..rows.len()).collect();
    for step in 0..max_new {
        for (a, &r) in active.iter().enumerate() {
            let row = &mut rows[r];
            let (token, lp) = sampler.pick(&host[a * vocab_n..(a + 1) * vocab_n], &mut row.rng);
            row.tokens.push(token);
            row.logprobs.push(lp);
            if eos.contains(&token) {
                row.finish = Some(FinishReason::Stop);
            } else if !params.stop.is_empty() {
                // Only the tail can newly contain a stop string; decode a window of it.
                let from = row.tokens.len().saturating_sub(stop_window);
                let tail = codec.decode(&row.tokens[from..], true)?;
                if find_stop(&tail, &params.stop).is_some() {
                    row.finish = Some(FinishReason::Stop);
                }
            }
            if row.finish.is_none() && row.tokens.len() as i64 >= max_new {
                row.finish = Some(FinishReason::Length);
            }
        }
        let keep: Vec<i64> =
            active.iter().enumerate().filter(|(_, r)| rows[**r].finish.is_none()).map(|(a, _)| a as i64).collect();
        if keep.is_empty() {
            break;
        }
        if keep.len() < active.len() {
            // Finished rows stop costing compute: drop them from the cache and the masks.
            let index = Tensor::from_slice(&keep).f_to(device)?;
            for c in caches.iter_mut() {
                c.k = c.k.f_index_select(0, &index)?;
                c.v = c.v.f_index_select(0, &index)?;
            }
            key_valid = key_valid.f_index_select(0, &index)?;
            active = keep.iter().map(|&a| active[a as usize]).collect();
        }
        let next: Vec<i64> = active.iter().map(|&r| *rows[r].tokens.last().expect("sampled") as i64).collect();
        let next_pos: Vec<i64> = active.iter().map(|&r| rows[r].prompt_len + step).collect();
        let a = active.len() as i64;
        let write_at = l + step;
        let mask = if active.iter().any(|&r| rows[r].padded) {
            Some(key_valid.f_narrow(1, 0, write_at + 1)?.f_view([a, 1, 1, write_at + 1])?)
        } else {
            None
        };
        let spec = AttentionSpec { mask: mask.as_ref(), write_at };
        let input = Tensor::from_slice(&next).f_view([a, 1])?.f_to(device)?;
        let positions = Tensor::from_slice(&next_pos).f_view([a, 1])?.f_to(device)?;
        let h = model.forward_hidden(&input, &positions, &spec, Some(&mut caches))?;
        logits = head.logits(&h.f_squeeze_dim(1)?)?;
        (host, vocab_n) = rows_to_cpu(&logits)?;
    }
    out.decode_seconds = decode_start.elapsed().as_secs_f64();
    out.decode_tokens = rows.iter().map(|r| r.tokens.len() as u64).sum();
    for row in rows {
        let mut text = codec.decode(&row.tokens, true)?;
        if let Some(at) = find_stop(&text, &params.stop) {
            text.truncate(at);
        }
        out.generations.push(Generation {
            tokens: row.tokens,
            text,
            logprobs: row.logprobs,
            finish: row.finish.unwrap_or(FinishReason::Length),
        });
    }
    Ok(out)
}
