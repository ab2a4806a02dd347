//! The `grpo` algorithm's config table and its validation.

use longrl_core::{Error, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a rollout's reward becomes an advantage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AdvantageEstimator {
    /// (r - group mean) / (std + eps).
    Grpo,
    /// Dr.GRPO: r - group mean, never divided by a std.
    Drgrpo,
    /// Leave-one-out baseline: r_i - mean of the group's other rewards.
    Rloo,
}

/// Which standard deviation divides the advantages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    Group,
    Batch,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LossAgg {
    TokenMean,
    SeqMeanTokenSum,
    SeqMeanTokenMean,
    SeqMeanTokenSumNorm,
    /// The verl of QwenLong-L1: each micro-batch's token mean, scaled by its share of the
    /// mini-batch's sequences (`dp_actor.py`: `policy_loss / gradient_accumulation`).
    #[serde(rename = "qwenlong-l1")]
    QwenlongL1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KlEstimator {
    K1,
    K2,
    K3,
}

/// The algorithm's config table. Each field's doc comment is its documentation in `longrl plugins inspect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GrpoConfig {
    /// grpo: (r - group mean) / (std + eps); drgrpo: r - group mean (no std); rloo: r minus the mean of
    /// the group's other rewards.
    pub advantage: AdvantageEstimator,
    /// Std dividing the advantages: group | batch (std of all rewards of the batch, as TRL) | none.
    /// null: group for grpo, none for drgrpo and rloo. Unbiased std (torch.std, as verl); a lone
    /// sample's std is 1.
    pub scale: Option<Scale>,
    /// Added to the std before dividing (verl: 1e-6).
    pub eps: f64,
    /// Ratio lower bound is 1 - clip_low.
    pub clip_low: f64,
    /// Ratio upper bound is 1 + clip_high (DAPO clip-higher: 0.28; the QwenLong-L1 script used 0.2).
    pub clip_high: f64,
    /// Dual-clip constant c > 1 bounding the loss of negative-advantage tokens at -A*c (verl default 3,
    /// DAPO recipe 10); null: off.
    pub dual_clip: Option<f64>,
    /// token-mean | seq-mean-token-sum | seq-mean-token-mean | seq-mean-token-sum-norm (Dr.GRPO: token
    /// sums / (sequences * max_response_len), as the Dr.GRPO paper; verl divides by the padded length
    /// only); divisors are the mini-batch's (current verl), so micro-batch losses add up; seq-mean modes
    /// count only sequences with an unmasked token. qwenlong-l1: the verl the paper ran (each
    /// micro-batch's token mean times its share of the mini-batch's sequences, entropy and KL token
    /// means, no log-ratio clamp, no dual clip); the reproduction configs use it.
    pub loss_agg: LossAgg,
    /// Weight of the KL-to-reference term (0: no reference model is kept, as in the recipe).
    pub kl_coef: f64,
    /// k1 (log-ratio), k2 (half squared log-ratio), k3 (verl low_var_kl, clamped to [-10, 10]).
    pub kl_estimator: KlEstimator,
    /// Entropy bonus: loss -= entropy_coef * aggregated entropy. 0 here; verl's default at the time of
    /// the QwenLong-L1 runs was 0.001 (their recipe inherits it: set 0.001 to reproduce).
    pub entropy_coef: f64,
    /// Ask the trainer for per-token entropy to log it even when entropy_coef is 0.
    pub log_entropy: bool,
    /// DAPO overlong shaping buffer in tokens (Eq. 7; recipe: 1000); 0: off.
    pub overlong_buffer: u32,
    /// Penalty at the length limit; grows linearly over the buffer (recipe: 1.0).
    pub overlong_factor: f64,
}

/// Defaults follow the QwenLong-L1 release script (scripts/rl_4nodes_dapo.sh) where it sets a value.
impl Default for GrpoConfig {
    fn default() -> Self {
        GrpoConfig {
            advantage: AdvantageEstimator::Grpo,
            scale: None,
            eps: 1e-6,
            clip_low: 0.2,
            clip_high: 0.2,
            dual_clip: None,
            loss_agg: LossAgg::TokenMean,
            kl_coef: 0.0,
            kl_estimator: KlEstimator::K3,
            entropy_coef: 0.0,
            log_entropy: true,
            overlong_buffer: 0,
            overlong_factor: 1.0,
        }
    }
}

const COMPONENT: &str = "algorithm/grpo";

impl GrpoConfig {
    /// The std used, after resolving `scale = null` per estimator.
    pub fn scale(&self) -> Scale {
        self.scale.unwrap_or(match self.advantage {
            AdvantageEstimator::Grpo => Scale::Group,
            AdvantageEstimator::Drgrpo | AdvantageEstimator::Rloo => Scale::None,
        })
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, msg: String| Err(Error::config(key, format!("{COMPONENT}: {msg}")));
        let finite = |key: &str, v: f64| {
            if v.is_finite() { Ok(()) } else { bad(key, format!("{v} is not a finite number")) }
        };
        for (key, v) in [
            ("eps", self.eps),
            ("clip_low", self.clip_low),
            ("clip_high", self.clip_high),
            ("kl_coef", self.kl_coef),
            ("entropy_coef", self.entropy_coef),
            ("overlong_factor", self.overlong_factor),
        ] {
            finite(key, v)?;
        }
        if self.advantage == AdvantageEstimator::Drgrpo && matches!(self.scale, Some(Scale::Group | Scale::Batch)) {
            return bad("scale", "drgrpo divides by no std; use scale = \"none\" (or advantage = \"grpo\")".into());
        }
        if self.eps < 0.0 {
            return bad("eps", format!("must be >= 0, got {}", self.eps));
        }
        if !(0.0..1.0).contains(&self.clip_low) {
            return bad("clip_low", format!("must be in [0, 1), got {}", self.clip_low));
        }
        if self.clip_high < 0.0 {
            return bad("clip_high", format!("must be >= 0, got {}", self.clip_high));
        }
        if let Some(c) = self.dual_clip
            && !(c.is_finite() && c > 1.0)
        {
            return bad("dual_clip", format!("must be a number > 1 (or null), got {c}"));
        }
        if self.dual_clip.is_some() && self.loss_agg == LossAgg::QwenlongL1 {
            return bad(
                "dual_clip",
                "the verl QwenLong-L1 ran has no dual clip; leave it null with loss_agg = \"qwenlong-l1\"".into(),
            );
        }
        if self.kl_coef < 0.0 {
            return bad("kl_coef", format!("must be >= 0, got {}", self.kl_coef));
        }
        if self.overlong_factor < 0.0 {
            return bad("overlong_factor", format!("must be >= 0, got {}", self.overlong_factor));
        }
        Ok(())
    }
}
