//! Group-aware generation. Each prompt is prefilled once (in chunks if asked), however many
//! rollouts continue it, and its keys and values are held once: a decode step's queries see their
//! group's prompt cache and their own row cache, merged by log-sum-exp (`attention.rs`), so no
//! padding and no mask exist anywhere. Sampling runs on the device (`sampling.rs`); only ids,
//! log-probs and a finiteness flag per row come back each step. Rows that finish keep their slot
//! (their output is ignored) until the active rows fall to `compact_below` of the slots; then the
//! row caches are compacted once and the prompt caches of finished groups dropped.
//!
//! Randomness: rollout `j` of prompt `i` draws from its own ChaCha8 stream `i * rollouts + j` of
//! the call's seed, one number per sampled token, so its tokens depend on the seed, the prompt, its
//! index and the weights, not on the batch around it, the device or the world size.

use std::time::Instant;

use longrl_core::api::{FinishReason, GenerateOutput, Generation, GenerationParams};
use longrl_core::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use crate::attention::{KeyPart, attend};
use crate::kv_cache::{KvCache, PromptCache, RowCache};
use crate::model::QwenModel;
use crate::onednn::PackedWeights;
use crate::sampling::Sampler;
use crate::text::TextCodec;

/// Engine settings that are not sampling parameters.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Prefill prompts this many tokens at a time (0: whole).
    pub prefill_chunk: i64,
    /// Compact the row caches once the active rows are at most this share of the slots (0: never).
    pub compact_below: f64,
    /// Pack the weights for oneDNN decode steps (CPU float32 only).
    pub pack_decode_weights: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { prefill_chunk: 0, compact_below: 0.5, pack_decode_weights: true }
    }
}

/// One output sequence: which prompt it continues and its random stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowSpec {
    pub prompt: usize,
    pub seed: u64,
    pub stream: u64,
}

struct Row {
    spec: RowSpec,
    /// Rollout index within its prompt (for messages).
    rollout: usize,
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    finish: Option<FinishReason>,
    rng: ChaCha8Rng,
}

/// Earliest occurrence of any stop string in `text`.
fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min()
}

fn check_params(params: &GenerationParams) -> Result<()> {
    if params.rollouts == 0 {
        return Err(Error::msg("generate: `rollouts` must be at least 1"));
    }
    if !(params.temperature >= 0.0) || !(params.top_p > 0.0 && params.top_p <= 1.0) {
        return Err(Error::msg(format!(
            "generate: temperature must be >= 0 and top_p in (0, 1] (got {}, {})",
            params.temperature, params.top_p
        )));
    }
    Ok(())
}

/// `params.rollouts` rollouts of each prompt: output `i * n + j` is rollout `j` of prompt `i`.
pub fn generate(
    model: &QwenModel,
    codec: &TextCodec,
    prompts: &[Vec<u32>],
    params: &GenerationParams,
    mut options: EngineOptions,
) -> Result<GenerateOutput> {
    check_params(params)?;
    if params.prefill_chunk > 0 {
        options.prefill_chunk = params.prefill_chunk as i64;
    }
    let n = params.rollouts as usize;
    let rows: Vec<RowSpec> =
        (0..prompts.len() * n).map(|r| RowSpec { prompt: r / n, seed: params.seed, stream: r as u64 }).collect();
    generate_rows(model, codec, prompts, &rows, params, options)
}

/// Generate one sequence per entry of `rows` (grouped by prompt, in prompt order), each from the
/// prompt and random stream it names.
pub fn generate_rows(
    model: &QwenModel,
    codec: &TextCodec,
    prompts: &[Vec<u32>],
    specs: &[RowSpec],
    params: &GenerationParams,
    options: EngineOptions,
) -> Result<GenerateOutput> {
    check_params(params)?;
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
    if specs.windows(2).any(|w| w[1].prompt < w[0].prompt) || specs.iter().any(|s| s.prompt >= prompts.len()) {
        return Err(Error::msg("internal: generation rows must name prompts in order"));
    }
    let mut out = GenerateOutput::default();
    let mut rows: Vec<Row> = Vec::with_capacity(specs.len());
    for (r, spec) in specs.iter().enumerate() {
        let rollout = specs[..r].iter().rev().take_while(|s| s.prompt == spec.prompt).count();
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        rng.set_stream(spec.stream);
        rows.push(Row { spec: *spec, rollout, tokens: vec![], logprobs: vec![], finish: None, rng });
    }
    let max_new = params.max_new_tokens as i64;
    if rows.is_empty() || max_new == 0 {
        out.generations = rows
            .iter()
            .map(|_| Generation { tokens: vec![], text: String::new(), logprobs: vec![], finish: FinishReason::Length })
            .collect();
        return Ok(out);
    }
    let _guard = tch::no_grad_guard();
    let sampler = Sampler { temperature: params.temperature, top_k: params.top_k, top_p: params.top_p };

    // Prefill each prompt that has rows, once.
    let start = Instant::now();
    let mut caches: Vec<Option<PromptCache>> = (0..prompts.len()).map(|_| None).collect();
    let mut first_logits = Vec::new();
    for (i, prompt) in prompts.iter().enumerate() {
        let count = rows.iter().filter(|r| r.spec.prompt == i).count() as i64;
        if count == 0 {
            continue;
        }
        let (cache, logits) = prefill(model, prompt, options.prefill_chunk)?;
        caches[i] = Some(cache);
        first_logits.push(logits.f_expand([count, -1], false)?);
        out.prefill_tokens += prompt.len() as u64;
    }
    let logits = Tensor::f_cat(&first_logits, 0)?;
    drop(first_logits);
    out.prefill_seconds = start.elapsed().as_secs_f64();

    let decode_start = Instant::now();
    // slot -> row; the rows of a prompt stay contiguous and in order through compaction.
    let mut slots: Vec<usize> = (0..rows.len()).collect();
    let mut own: Option<RowCache> = None;
    let mut packed: Option<PackedWeights> = None;
    if max_new > 1 {
        let c = &model.config;
        let shape = [rows.len() as i64, c.num_key_value_heads, max_new - 1, c.head_dim];
        own = Some(KvCache::new(model.num_layers(), shape, model.kind, model.device)?);
        if options.pack_decode_weights {
            packed = PackedWeights::new(model, rows.len() as i64)?;
        }
    }
    let eos = &codec.eos_token_ids;
    let stop_window = params.stop.iter().map(|s| s.len()).max().unwrap_or(0) + 16;
    let mut logits = logits;
    let mut step = 0i64;
    loop {
        // Sample token `step + 1` of every slot; only the active slots' picks are kept.
        let uniforms: Option<Vec<f64>> = (!sampler.greedy()).then(|| {
            slots.iter().map(|&r| if rows[r].finish.is_none() { rows[r].rng.random::<f64>() } else { 0.5 }).collect()
        });
        let picks = sampler.pick(&logits, uniforms.as_deref())?;
        for (s, &r) in slots.iter().enumerate() {
            let row = &mut rows[r];
            if row.finish.is_some() {
                continue;
            }
            if !picks.finite[s] {
                return Err(Error::msg(format!(
                    "generate: non-finite logits for prompt {}, rollout {} (output {r}) at new token {}",
                    row.spec.prompt, row.rollout, step
                )));
            }
            let token = picks.tokens[s];
            row.tokens.push(token);
            row.logprobs.push(picks.logprobs[s]);
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
        let active = slots.iter().filter(|&&r| rows[r].finish.is_none()).count();
        if active == 0 {
            break;
        }
        let own_cache = own.as_mut().ok_or_else(|| Error::msg("internal: decoding without a row cache"))?;
        if (active as f64) <= options.compact_below * slots.len() as f64 && active < slots.len() {
            let keep: Vec<i64> =
                (0..slots.len()).filter(|&s| rows[slots[s]].finish.is_none()).map(|s| s as i64).collect();
            own_cache.select_rows(&Tensor::from_slice(&keep).f_to(model.device)?)?;
            slots = keep.iter().map(|&s| slots[s as usize]).collect();
            for (i, cache) in caches.iter_mut().enumerate() {
                if cache.is_some() && !slots.iter().any(|&r| rows[r].spec.prompt == i) {
                    *cache = None;
                }
            }
        }
        // Forward each slot's newest token: it goes to column `step` of the row cache.
        let ids: Vec<i64> = slots.iter().map(|&r| *rows[r].tokens.last().unwrap_or(&0) as i64).collect();
        let positions: Vec<i64> = slots.iter().map(|&r| prompts[rows[r].spec.prompt].len() as i64 + step).collect();
        let groups = group_ranges(&slots, |r| rows[r].spec.prompt);
        let a = slots.len() as i64;
        let input = Tensor::from_slice(&ids).f_view([a, 1])?.f_to(model.device)?;
        let positions = Tensor::from_slice(&positions).f_view([a, 1])?.f_to(model.device)?;
        let scale = model.attention_scale();
        let own_cache = &*own_cache;
        let mut attend_step = |layer: usize, q: &Tensor, k: &Tensor, v: &Tensor| -> Result<Tensor> {
            own_cache.write(layer, step, k, v)?;
            let mut outs = Vec::with_capacity(groups.len());
            for &(prompt, first, count) in &groups {
                let cache = caches[prompt].as_ref().ok_or_else(|| Error::msg("internal: prompt cache dropped"))?;
                let prompt_len = prompts[prompt].len() as i64;
                let (pk, pv) = cache.read(layer, 0, 1, prompt_len)?;
                let (ok, ov) = own_cache.read(layer, first, count, step + 1)?;
                let q = q.f_narrow(0, first, count)?;
                outs.push(attend(&q, &[KeyPart::all(&pk, &pv), KeyPart::all(&ok, &ov)], scale)?);
            }
            Ok(if outs.len() == 1 { outs.remove(0) } else { Tensor::f_cat(&outs, 0)? })
        };
        let hidden = model.forward_cached(&input, &positions, &mut attend_step, packed.as_ref())?;
        let hidden = hidden.f_squeeze_dim(1)?;
        logits = match &packed {
            Some(p) => p.logits(&hidden)?,
            None => model.logits(&hidden)?,
        };
        step += 1;
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

/// `(prompt, first slot, slots)` of each run of slots continuing the same prompt.
fn group_ranges(slots: &[usize], prompt_of: impl Fn(usize) -> usize) -> Vec<(usize, i64, i64)> {
    let mut groups: Vec<(usize, i64, i64)> = Vec::new();
    for (s, &r) in slots.iter().enumerate() {
        let p = prompt_of(r);
        match groups.last_mut() {
            Some(g) if g.0 == p => g.2 += 1,
            _ => groups.push((p, s as i64, 1)),
        }
    }
    groups
}

/// Prefill one prompt, `chunk` tokens at a time (0: whole): its cache and the logits `[1, V]` of
/// its last token. A chunk after the first sees the cached prefix whole and itself causally.
pub fn prefill(model: &QwenModel, prompt: &[u32], chunk: i64) -> Result<(PromptCache, Tensor)> {
    let c = &model.config;
    let len = prompt.len() as i64;
    let cache =
        KvCache::new(model.num_layers(), [1, c.num_key_value_heads, len, c.head_dim], model.kind, model.device)?;
    let chunk = if chunk <= 0 || chunk >= len { len } else { chunk };
    let ids: Vec<i64> = prompt.iter().map(|&t| t as i64).collect();
    let scale = model.attention_scale();
    let mut last = None;
    let mut at = 0;
    while at < len {
        let n = chunk.min(len - at);
        let input = Tensor::from_slice(&ids[at as usize..(at + n) as usize]).f_view([1, n])?.f_to(model.device)?;
        let positions = Tensor::f_arange_start(at, at + n, (Kind::Int64, model.device))?.f_view([1, n])?;
        let mut attend_chunk = |layer: usize, q: &Tensor, k: &Tensor, v: &Tensor| -> Result<Tensor> {
            cache.write(layer, at, k, v)?;
            if at == 0 {
                return attend(q, &[KeyPart::causal(k, v)], scale);
            }
            let (pk, pv) = cache.read(layer, 0, 1, at)?;
            attend(q, &[KeyPart::all(&pk, &pv), KeyPart::causal(k, v)], scale)
        };
        let hidden = model.forward_cached(&input, &positions, &mut attend_chunk, None)?;
        last = Some(hidden.f_narrow(1, n - 1, 1)?.f_squeeze_dim(1)?);
        at += n;
    }
    let last = last.ok_or_else(|| Error::msg("generate: empty prompt"))?;
    Ok((cache, model.logits(&last)?))
}
