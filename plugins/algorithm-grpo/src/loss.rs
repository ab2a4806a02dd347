//! The clipped policy-gradient loss with KL and entropy terms.
//!
//! The default modes follow current verl (`compute_policy_loss`, `kl_penalty`, `agg_loss` with the
//! global-batch divisors): the divisors come from the mini-batch (`LossNormalizer`), so micro-batch
//! losses summed over gradient accumulation equal the mini-batch loss whatever the micro-batch
//! split; the log-ratio is clamped to ±20 before `exp`; the entropy and KL terms use the same
//! aggregation as the policy term; seq-mean modes count only sequences with an unmasked token.
//! Where they differ from current verl: dual clip is off unless `dual_clip` is set (verl's
//! `clip_ratio_c` defaults to 3), and seq-mean-token-sum-norm divides by `max_response_len`
//! (the Dr.GRPO paper) rather than the padded width.
//!
//! `loss_agg = "qwenlong-l1"` reproduces the verl the QwenLong-L1 paper ran (its `dp_actor.py` and
//! `core_algos.py`): each term is the token mean over the *micro*-batch, times the micro-batch's
//! share of the mini-batch's sequences (`policy_loss / gradient_accumulation`), so a micro-batch of
//! short responses weighs its tokens more than one of long responses; the entropy and KL terms are
//! always token means; no log-ratio clamp and no dual clip. One deviation: a micro-batch without an
//! unmasked token contributes 0 (verl's masked mean divides 0 by 0).

use std::collections::BTreeMap;

use longrl_core::api::{LossInputs, LossNormalizer, LossOutput};
use longrl_core::{Error, Result, bail};
use tch::{Kind, Tensor};

use crate::config::{GrpoConfig, KlEstimator, LossAgg};

/// verl clamps the log-ratio before `exp` so one wild token cannot overflow the ratio.
const LOG_RATIO_CLAMP: f64 = 20.0;
/// verl clamps k3 (low_var_kl) to this range.
const K3_CLAMP: f64 = 10.0;

fn is_float(kind: Kind) -> bool {
    matches!(kind, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16)
}

fn check_shapes(inputs: &LossInputs) -> Result<(i64, i64)> {
    let size = inputs.logprobs.size();
    let [batch, len] = size[..] else {
        bail!("algorithm/grpo loss: logprobs must be [batch, response_len], got shape {size:?}");
    };
    if !is_float(inputs.logprobs.kind()) {
        bail!("algorithm/grpo loss: logprobs must be floating point, got {:?}", inputs.logprobs.kind());
    }
    let same = [
        ("old_logprobs", Some(&inputs.old_logprobs)),
        ("mask", Some(&inputs.mask)),
        ("ref_logprobs", inputs.ref_logprobs.as_ref()),
        ("entropy", inputs.entropy.as_ref()),
    ];
    for (name, tensor) in same {
        if let Some(t) = tensor
            && t.size() != size
        {
            bail!("algorithm/grpo loss: {name} has shape {:?}, logprobs {size:?}; they must match", t.size());
        }
    }
    if inputs.advantages.size() != [batch] {
        bail!(
            "algorithm/grpo loss: advantages must be one per sequence ([{batch}]), got shape {:?}",
            inputs.advantages.size()
        );
    }
    Ok((batch, len))
}

/// Sequences of a `[batch, len]` mask with at least one unmasked token.
fn active_sequences(mask: &Tensor) -> Result<Tensor> {
    Ok(mask.f_gt(0.0)?.f_any_dim(1, false)?.f_to_kind(mask.kind())?)
}

/// The normaliser must describe a mini-batch containing this micro-batch (`batch` counts its
/// sequences with an unmasked token).
fn check_normalizer(n: &LossNormalizer, batch: f64, micro_tokens: f64) -> Result<()> {
    for (name, v) in [("tokens", n.tokens), ("sequences", n.sequences), ("max_response_len", n.max_response_len)] {
        if !v.is_finite() || v < 0.0 {
            bail!("algorithm/grpo loss: normalizer.{name} is {v}; it must be a finite count >= 0");
        }
    }
    if n.sequences < batch {
        bail!(
            "algorithm/grpo loss: normalizer.sequences ({}) is less than this micro-batch's {batch} sequences with an \
             unmasked token",
            n.sequences
        );
    }
    // Allow float rounding of the mask sum.
    if n.tokens + 0.5 < micro_tokens {
        bail!(
            "algorithm/grpo loss: normalizer.tokens ({}) is less than this micro-batch's {micro_tokens} unmasked tokens",
            n.tokens
        );
    }
    if n.max_response_len < 1.0 {
        bail!("algorithm/grpo loss: normalizer.max_response_len must be at least 1, got {}", n.max_response_len);
    }
    Ok(())
}

/// Masked entries set to exactly zero (so a `-inf` in padding cannot turn into NaN), then weighted.
fn masked(values: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let keep = mask.f_gt(0.0)?;
    let zeros = values.f_zeros_like()?;
    Ok(values.f_where_self(&keep, &zeros)?.f_mul(mask)?)
}

/// Aggregate a `[batch, len]` loss matrix into this micro-batch's share of the mini-batch loss.
/// `n.sequences` counts the mini-batch's sequences with an unmasked token (verl leaves fully
/// masked sequences out of the seq-mean divisors).
pub fn aggregate(values: &Tensor, mask: &Tensor, n: &LossNormalizer, mode: LossAgg) -> Result<Tensor> {
    let m = masked(values, mask)?;
    // With no unmasked tokens the numerator is 0 too; dividing by 1 keeps the loss 0 instead of NaN.
    let sequences = n.sequences.max(1.0);
    Ok(match mode {
        LossAgg::TokenMean => m.f_sum(None::<Kind>)?.f_div_scalar(n.tokens.max(1.0))?,
        LossAgg::SeqMeanTokenSum => m.f_sum(None::<Kind>)?.f_div_scalar(sequences)?,
        LossAgg::SeqMeanTokenMean => {
            let per_seq_tokens = mask.f_sum_dim_intlist([1i64].as_slice(), false, None::<Kind>)?.f_clamp_min(1.0)?;
            let per_seq = m.f_sum_dim_intlist([1i64].as_slice(), false, None::<Kind>)?.f_div(&per_seq_tokens)?;
            per_seq.f_sum(None::<Kind>)?.f_div_scalar(sequences)?
        }
        LossAgg::SeqMeanTokenSumNorm => m.f_sum(None::<Kind>)?.f_div_scalar(sequences * n.max_response_len)?,
        LossAgg::QwenlongL1 => {
            // verl_F.masked_mean over the micro-batch, times len(micro) / ppo_mini_batch_size.
            let micro_tokens = mask.f_sum(None::<Kind>)?.f_clamp_min(1.0)?;
            let share = active_sequences(mask)?.f_sum(None::<Kind>)?.f_div_scalar(sequences)?;
            m.f_sum(None::<Kind>)?.f_div(&micro_tokens)?.f_mul(&share)?
        }
    })
}

/// Per-token KL(policy || reference) estimate from log-probs (verl `kl_penalty`).
pub fn kl_estimate(logprobs: &Tensor, ref_logprobs: &Tensor, estimator: KlEstimator) -> Result<Tensor> {
    let log_ratio = logprobs.f_sub(ref_logprobs)?;
    Ok(match estimator {
        KlEstimator::K1 => log_ratio,
        KlEstimator::K2 => log_ratio.f_square()?.f_mul_scalar(0.5)?,
        KlEstimator::K3 => {
            // k3 = exp(ref - logp) - (ref - logp) - 1, clamped as verl's low_var_kl.
            let kl = log_ratio.f_neg()?.f_clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)?;
            kl.f_exp()?.f_sub(&kl)?.f_sub_scalar(1.0)?.f_clamp(-K3_CLAMP, K3_CLAMP)?
        }
    })
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.f_detach()?.f_to_kind(Kind::Double)?.f_double_value(&[])?)
}

/// Masked mean over this micro-batch, for metrics.
fn masked_mean(values: &Tensor, mask: &Tensor, tokens: f64) -> Result<f64> {
    Ok(scalar(&masked(values, mask)?.f_sum(Kind::Double)?)? / tokens.max(1.0))
}

pub fn policy_loss(config: &GrpoConfig, inputs: &LossInputs) -> Result<LossOutput> {
    check_shapes(inputs)?;
    let kind = inputs.logprobs.kind();
    let mask = inputs.mask.f_to_kind(kind)?;
    let micro_tokens = tch::no_grad(|| scalar(&mask.f_sum(Kind::Double)?))?;
    let micro_active = tch::no_grad(|| scalar(&active_sequences(&mask)?.f_sum(Kind::Double)?))?;
    check_normalizer(&inputs.normalizer, micro_active, micro_tokens)?;
    let n = &inputs.normalizer;

    let advantages = inputs.advantages.f_to_kind(kind)?.f_unsqueeze(1)?; // [batch, 1]
    let neg_adv = advantages.f_neg()?;
    let mut log_ratio = inputs.logprobs.f_sub(&inputs.old_logprobs.f_to_kind(kind)?)?;
    if config.loss_agg != LossAgg::QwenlongL1 {
        log_ratio = log_ratio.f_clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)?;
    }
    let ratio = log_ratio.f_exp()?;
    let (low, high) = (1.0 - config.clip_low, 1.0 + config.clip_high);

    // PPO: the pessimistic (larger) of the unclipped and clipped losses.
    let unclipped = neg_adv.f_mul(&ratio)?;
    let clipped = neg_adv.f_mul(&ratio.f_clamp(low, high)?)?;
    let mut pg = unclipped.f_maximum(&clipped)?;
    let negative = advantages.f_lt(0.0)?;
    if let Some(c) = config.dual_clip {
        // Dual clip: for negative advantages the loss is bounded by -A * c (ratio > c gives no gradient).
        let bound = neg_adv.f_mul_scalar(c)?.f_expand_as(&pg)?;
        let dual = pg.f_minimum(&bound)?;
        pg = dual.f_where_self(&negative, &pg)?;
    }
    let pg_loss = aggregate(&pg, &mask, n, config.loss_agg)?;
    let mut loss = pg_loss.shallow_clone();

    let mut kl_value = None;
    if let Some(reference) = &inputs.ref_logprobs {
        let kl = kl_estimate(&inputs.logprobs, &reference.f_to_kind(kind)?, config.kl_estimator)?;
        if config.kl_coef > 0.0 {
            loss = loss.f_add(&aggregate(&kl, &mask, n, config.loss_agg)?.f_mul_scalar(config.kl_coef)?)?;
        }
        kl_value = Some(kl);
    } else if config.kl_coef > 0.0 {
        bail!("algorithm/grpo loss: kl_coef is {} but the trainer passed no ref_logprobs", config.kl_coef);
    }
    if let Some(entropy) = &inputs.entropy {
        if config.entropy_coef != 0.0 {
            let bonus = aggregate(&entropy.f_to_kind(kind)?, &mask, n, config.loss_agg)?;
            loss = loss.f_sub(&bonus.f_mul_scalar(config.entropy_coef)?)?;
        }
    } else if config.entropy_coef != 0.0 {
        bail!("algorithm/grpo loss: entropy_coef is {} but the trainer passed no entropy", config.entropy_coef);
    }

    let metrics = tch::no_grad(|| -> Result<BTreeMap<String, f64>> {
        let positive = advantages.f_gt(0.0)?;
        let flag = |t: Tensor| t.f_to_kind(kind);
        let clipped_high = flag(positive.f_logical_and(&ratio.f_gt(high)?)?)?;
        let clipped_low = flag(negative.f_logical_and(&ratio.f_lt(low)?)?)?;
        let mut m = BTreeMap::new();
        m.insert("loss".into(), scalar(&loss)?);
        m.insert("pg_loss".into(), scalar(&pg_loss)?);
        m.insert("tokens".into(), micro_tokens);
        let high_frac = masked_mean(&clipped_high, &mask, micro_tokens)?;
        let low_frac = masked_mean(&clipped_low, &mask, micro_tokens)?;
        m.insert("clip_frac_high".into(), high_frac);
        m.insert("clip_frac_low".into(), low_frac);
        m.insert("clip_frac".into(), high_frac + low_frac);
        if let Some(c) = config.dual_clip {
            let dual = flag(negative.f_logical_and(&ratio.f_gt(c)?)?)?;
            m.insert("dual_clip_frac".into(), masked_mean(&dual, &mask, micro_tokens)?);
        }
        m.insert("ratio_mean".into(), masked_mean(&ratio, &mask, micro_tokens)?);
        // verl's ppo_kl: mean of old - new log-probs.
        m.insert("approx_kl".into(), masked_mean(&log_ratio.f_neg()?, &mask, micro_tokens)?);
        if let Some(kl) = &kl_value {
            m.insert("kl".into(), masked_mean(kl, &mask, micro_tokens)?);
        }
        if let Some(entropy) = &inputs.entropy {
            m.insert("entropy".into(), masked_mean(&entropy.f_to_kind(kind)?, &mask, micro_tokens)?);
        }
        Ok(m)
    })?;
    if let Some((key, v)) = metrics.iter().find(|(_, v)| !v.is_finite()) {
        return Err(Error::msg(format!("algorithm/grpo loss: {key} is {v} (non-finite log-probs or advantages?)")));
    }
    Ok(LossOutput { loss, metrics })
}
