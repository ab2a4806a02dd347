//! Rotary position embeddings with HF's scaling types (none, linear, dynamic NTK, YaRN).

use longrl_core::Result;
use tch::{Device, Kind, Tensor};

use crate::hf_config::{QwenConfig, RopeScaling};

pub struct Rope {
    dim: i64,
    base: f64,
    scaling: RopeScaling,
    max_position_embeddings: i64,
    /// Inverse frequencies for positions within the trained length, float32 on the device.
    inv_freq: Tensor,
    attention_factor: f64,
}

fn default_inv_freq(base: f64, dim: i64) -> Vec<f64> {
    (0..dim / 2).map(|i| 1.0 / base.powf((2 * i) as f64 / dim as f64)).collect()
}

fn yarn_inv_freq(scaling: &RopeScaling, base: f64, dim: i64) -> (Vec<f64>, f64) {
    let RopeScaling::Yarn {
        factor,
        original_max_position_embeddings: original,
        attention_factor,
        beta_fast,
        beta_slow,
        mscale,
        mscale_all_dim,
        truncate,
    } = scaling.clone()
    else {
        unreachable!("yarn_inv_freq called with another scaling")
    };
    let get_mscale = |scale: f64, m: f64| {
        if scale <= 1.0 { 1.0 } else { 0.1 * m * scale.ln() + 1.0 }
    };
    let attention = attention_factor.unwrap_or(match (mscale, mscale_all_dim) {
        (Some(m), Some(a)) if m != 0.0 && a != 0.0 => get_mscale(factor, m) / get_mscale(factor, a),
        _ => get_mscale(factor, 1.0),
    });
    let d = dim as f64;
    let correction_dim =
        |rotations: f64| (d * (original / (rotations * 2.0 * std::f64::consts::PI)).ln()) / (2.0 * base.ln());
    let (mut low, mut high) = (correction_dim(beta_fast), correction_dim(beta_slow));
    if truncate {
        low = low.floor();
        high = high.ceil();
    }
    let low = low.max(0.0);
    let mut high = high.min(d - 1.0);
    if low == high {
        high += 0.001;
    }
    let inv = (0..dim / 2)
        .map(|i| {
            let pos_freq = base.powf((2 * i) as f64 / d);
            let extrapolation = 1.0 / pos_freq;
            let interpolation = 1.0 / (factor * pos_freq);
            let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
            let extrapolation_factor = 1.0 - ramp;
            interpolation * (1.0 - extrapolation_factor) + extrapolation * extrapolation_factor
        })
        .collect();
    (inv, attention)
}

fn to_tensor(values: &[f64], device: Device) -> Result<Tensor> {
    let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    Ok(Tensor::from_slice(&v).f_to_device(device)?)
}

impl Rope {
    pub fn new(config: &QwenConfig, device: Device) -> Result<Rope> {
        let dim = config.head_dim;
        let base = config.rope_theta;
        let (inv, attention_factor) = match &config.rope_scaling {
            RopeScaling::None | RopeScaling::Dynamic { .. } => (default_inv_freq(base, dim), 1.0),
            RopeScaling::Linear { factor } => {
                (default_inv_freq(base, dim).into_iter().map(|f| f / factor).collect(), 1.0)
            }
            yarn @ RopeScaling::Yarn { .. } => yarn_inv_freq(yarn, base, dim),
        };
        Ok(Rope {
            dim,
            base,
            scaling: config.rope_scaling.clone(),
            max_position_embeddings: config.max_position_embeddings,
            inv_freq: to_tensor(&inv, device)?,
            attention_factor,
        })
    }

    /// cos and sin for `positions` `[B, T]` (int64): `[B, 1, T, head_dim]` in `kind`.
    ///
    /// Dynamic NTK recomputes the base from the longest position of the call, as HF does per forward.
    pub fn cos_sin(&self, positions: &Tensor, kind: Kind) -> Result<(Tensor, Tensor)> {
        let dynamic_inv;
        let inv_freq = match self.scaling {
            RopeScaling::Dynamic { factor } => {
                let seq_len = positions.f_max()?.int64_value(&[]) + 1;
                if seq_len > self.max_position_embeddings {
                    let d = self.dim as f64;
                    let ratio = factor * seq_len as f64 / self.max_position_embeddings as f64 - (factor - 1.0);
                    let base = self.base * ratio.powf(d / (d - 2.0));
                    dynamic_inv = to_tensor(&default_inv_freq(base, self.dim), positions.device())?;
                    &dynamic_inv
                } else {
                    &self.inv_freq
                }
            }
            _ => &self.inv_freq,
        };
        // [B, T, 1] x [D/2] -> [B, T, D/2], in float32 as HF does.
        let freqs = positions.f_to_kind(Kind::Float)?.f_unsqueeze(-1)?.f_mul(inv_freq)?;
        let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?;
        let cos = emb.f_cos()?.f_mul_scalar(self.attention_factor)?.f_to_kind(kind)?.f_unsqueeze(1)?;
        let sin = emb.f_sin()?.f_mul_scalar(self.attention_factor)?.f_to_kind(kind)?.f_unsqueeze(1)?;
        Ok((cos, sin))
    }
}

fn rotate_half(x: &Tensor) -> Result<Tensor> {
    let half = x.size().last().copied().unwrap_or(0) / 2;
    let x1 = x.f_narrow(-1, 0, half)?;
    let x2 = x.f_narrow(-1, half, half)?;
    Ok(Tensor::f_cat(&[&x2.f_neg()?, &x1], -1)?)
}

/// `x * cos + rotate_half(x) * sin`, x `[B, heads, T, D]`.
pub fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok(x.f_mul(cos)?.f_add(&rotate_half(x)?.f_mul(sin)?)?)
}
