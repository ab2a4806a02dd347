//! Next-token choice for a batch of rows, on the logits' device: greedy, or temperature -> top-k ->
//! top-p in the order and with the rules of HF's logits warpers, then one draw per row by inverse
//! CDF over the vocabulary in id order. Each row's draw uses its own uniform number, made on the
//! host from the row's seeded stream: a row's sample depends on its logits and its stream, not on
//! which other rows share the batch, the device, or the world size. Only the chosen ids, their
//! log-probabilities and a finiteness flag per row come back to the host.

use longrl_core::{Error, Result};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
}

/// One step's choice for each row, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Picks {
    pub tokens: Vec<u32>,
    pub logprobs: Vec<f32>,
    /// Whether the row's logits were all finite (a non-finite row's pick is meaningless).
    pub finite: Vec<bool>,
}

impl Sampler {
    pub fn greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Log-probabilities `[A, V]` of the sampling distribution of logits `[A, V]` (float32): -inf
    /// outside what top-k and top-p keep. Greedy: the unscaled distribution.
    pub fn log_probs(&self, logits: &Tensor) -> Result<Tensor> {
        if self.greedy() {
            return Ok(logits.f_log_softmax(-1, Kind::Float)?);
        }
        let vocab = logits.size()[1];
        let mut scores = logits.f_to_kind(Kind::Float)?.f_div_scalar(self.temperature as f64)?;
        let k = self.top_k as i64;
        if k > 0 && k < vocab {
            // HF's TopKLogitsWarper: drop scores below the k-th largest (ties with it stay).
            let (values, _) = scores.f_topk(k, -1, true, true)?;
            let kth = values.f_narrow(1, k - 1, 1)?;
            scores = scores.f_masked_fill(&scores.f_lt_tensor(&kth)?, f64::NEG_INFINITY)?;
        }
        if self.top_p < 1.0 {
            // HF's TopPLogitsWarper: sort ascending, drop the tokens whose cumulative probability is
            // at most 1 - top_p, always keep the most likely one.
            let (sorted, order) = scores.f_sort(-1, false)?;
            let cumulative = sorted.f_softmax(-1, Kind::Float)?.f_cumsum(-1, Kind::Float)?;
            let drop_sorted = cumulative.f_le(1.0 - self.top_p as f64)?;
            let keep_last = Tensor::f_zeros([1, vocab], (Kind::Bool, logits.device()))?.f_index_fill_(
                1,
                &Tensor::from_slice(&[vocab - 1]).f_to(logits.device())?,
                1,
            )?;
            let drop_sorted = drop_sorted.f_logical_and(&keep_last.f_logical_not()?)?;
            let drop = drop_sorted.f_scatter(1, &order, &drop_sorted)?;
            scores = scores.f_masked_fill(&drop, f64::NEG_INFINITY)?;
        }
        Ok(scores.f_log_softmax(-1, Kind::Float)?)
    }

    /// Chosen token ids `[A]` (int64) and their log-probabilities `[A]` (float32), on the logits'
    /// device. `uniforms` `[A]` (float64 in (0, 1), same device) drive the draws; greedy needs none.
    pub fn choose(&self, logits: &Tensor, uniforms: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let log_probs = self.log_probs(logits)?;
        let tokens = if self.greedy() {
            logits.f_argmax(-1, false)?
        } else {
            let u = uniforms.ok_or_else(|| Error::msg("internal: sampling needs a uniform per row"))?;
            // Inverse CDF in float64, over ids in order; zero-probability ids are never chosen
            // (their CDF step is empty), and scaling by the total absorbs rounding.
            let cdf = log_probs.f_to_kind(Kind::Double)?.f_exp()?.f_cumsum(-1, Kind::Double)?;
            let total = cdf.f_narrow(1, logits.size()[1] - 1, 1)?;
            let target = u.f_unsqueeze(1)?.f_mul(&total)?;
            target
                .f_searchsorted(&cdf, false, false, "left", None::<Tensor>)?
                .f_squeeze_dim(1)?
                .f_clamp_max(logits.size()[1] - 1)?
        };
        let picked = log_probs.f_gather(1, &tokens.f_unsqueeze(1)?, false)?.f_squeeze_dim(1)?;
        Ok((tokens, picked))
    }

    /// [`Sampler::choose`] and one copy to the host of ids, log-probs and finiteness per row.
    pub fn pick(&self, logits: &Tensor, uniforms: Option<&[f64]>) -> Result<Picks> {
        let device = logits.device();
        let u = uniforms.map(|u| Tensor::from_slice(u).f_to(device)).transpose()?;
        let (tokens, logprobs) = self.choose(logits, u.as_ref())?;
        let finite = logits.f_isfinite()?.f_all_dims(Some(&[1i64][..]), false)?;
        let packed = Tensor::f_stack(
            &[tokens.f_to_kind(Kind::Double)?, logprobs.f_to_kind(Kind::Double)?, finite.f_to_kind(Kind::Double)?],
            1,
        )?
        .f_to(Device::Cpu)?;
        let flat = Vec::<f64>::try_from(packed.f_contiguous()?.f_view([-1])?)?;
        let rows = flat.len() / 3;
        Ok(Picks {
            tokens: (0..rows).map(|r| flat[3 * r] as u32).collect(),
            logprobs: (0..rows).map(|r| flat[3 * r + 1] as f32).collect(),
            finite: (0..rows).map(|r| flat[3 * r + 2] != 0.0).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(rows: &[&[f32]]) -> Tensor {
        let v = rows[0].len() as i64;
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_slice(&flat).view([rows.len() as i64, v])
    }

    fn kept(s: &Sampler, l: &Tensor) -> Vec<Vec<usize>> {
        let lp = s.log_probs(l).unwrap();
        let rows = Vec::<Vec<f32>>::try_from(lp).unwrap();
        rows.iter().map(|r| (0..r.len()).filter(|&i| r[i].is_finite()).collect()).collect()
    }

    #[test]
    fn greedy_takes_argmax_with_its_logprob() {
        let s = Sampler { temperature: 0.0, top_k: 0, top_p: 1.0 };
        let p = s.pick(&logits(&[&[0.0, 2.0, 1.0], &[5.0, 1.0, 1.0]]), None).unwrap();
        assert_eq!(p.tokens, vec![1, 0]);
        let expected = 2.0 - (1.0f32 + 2.0f32.exp() + 1.0f32.exp()).ln();
        assert!((p.logprobs[0] - expected).abs() < 1e-6);
        assert_eq!(p.finite, vec![true, true]);
    }

    #[test]
    fn top_k_and_top_p_keep_exactly_what_hf_keeps() {
        let row = |probs: &[f32]| -> Vec<f32> { probs.iter().map(|p| p.ln()).collect() };
        let with = |top_k, top_p| Sampler { temperature: 1.0, top_k, top_p };
        // Probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1.
        let l = logits(&[&row(&[0.5, 0.3, 0.15, 0.05])]);
        assert_eq!(kept(&with(2, 1.0), &l), vec![vec![0, 1]]);
        // top-p: the smallest set of most likely tokens whose mass reaches p.
        assert_eq!(kept(&with(0, 0.45), &l), vec![vec![0]]);
        assert_eq!(kept(&with(0, 0.6), &l), vec![vec![0, 1]]);
        assert_eq!(kept(&with(0, 0.9), &l), vec![vec![0, 1, 2]]);
        assert_eq!(kept(&with(0, 0.97), &l), vec![vec![0, 1, 2, 3]]);
        assert_eq!(kept(&with(0, 0.01), &l), vec![vec![0]]);
        // top-k, then top-p over the renormalised kept two (0.625, 0.375).
        assert_eq!(kept(&with(2, 0.6), &l), vec![vec![0]]);
        assert_eq!(kept(&with(2, 0.7), &l), vec![vec![0, 1]]);
        // The log-probs are those of the renormalised kept set.
        let lp = Vec::<Vec<f32>>::try_from(with(2, 1.0).log_probs(&l).unwrap()).unwrap();
        assert!((lp[0][0] - 0.625f32.ln()).abs() < 1e-6 && (lp[0][1] - 0.375f32.ln()).abs() < 1e-6);
        // Ties with the k-th value stay (HF compares with `<`).
        let ties = logits(&[&row(&[0.5, 0.3, 0.1, 0.1])]);
        assert_eq!(kept(&with(3, 1.0), &ties), vec![vec![0, 1, 2, 3]]);
        // Temperature sharpens before truncation: at t = 0.5, p ∝ 0.25, 0.09, 0.0225, 0.0025.
        let sharp = Sampler { temperature: 0.5, top_k: 0, top_p: 1.0 };
        let lp = Vec::<Vec<f32>>::try_from(sharp.log_probs(&l).unwrap()).unwrap();
        assert!((lp[0][0] - (0.25f32 / 0.365).ln()).abs() < 1e-6, "{}", lp[0][0]);
        // Rows are truncated independently.
        let two = logits(&[&row(&[0.5, 0.3, 0.15, 0.05]), &row(&[0.05, 0.15, 0.3, 0.5])]);
        assert_eq!(kept(&with(0, 0.6), &two), vec![vec![0, 1], vec![2, 3]]);
    }

    #[test]
    fn draws_follow_the_distribution() {
        // Chi-square over a small vocabulary: 4000 draws of p = (0.4, 0.3, 0.2, 0.1, 0) (the last
        // removed by top-k), 3 degrees of freedom; 16.27 is the 0.999 quantile.
        let probs = [0.4f64, 0.3, 0.2, 0.1, 0.05];
        let row: Vec<f32> = probs.iter().map(|p| p.ln() as f32).collect();
        let n = 4000usize;
        let l = logits(&[&row]).expand([n as i64, 5], false).contiguous();
        let s = Sampler { temperature: 1.0, top_k: 4, top_p: 1.0 };
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let u: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
        let p = s.pick(&l, Some(&u)).unwrap();
        let mut counts = [0usize; 5];
        for &t in &p.tokens {
            counts[t as usize] += 1;
        }
        assert_eq!(counts[4], 0, "top-k removed token 4");
        let kept: f64 = probs[..4].iter().sum();
        let chi2: f64 = (0..4)
            .map(|i| {
                let expected = n as f64 * probs[i] / kept;
                (counts[i] as f64 - expected).powi(2) / expected
            })
            .sum();
        assert!(chi2 < 16.27, "chi-square {chi2} for counts {counts:?}");
        // Each log-prob is that of the renormalised kept distribution.
        for (t, lp) in p.tokens.iter().zip(&p.logprobs) {
            assert!((*lp as f64 - (probs[*t as usize] / kept).ln()).abs() < 1e-5);
        }
        // The same uniforms give the same tokens; a row's pick depends only on its own uniform.
        let again = s.pick(&l.narrow(0, 5, 3), Some(&u[5..8])).unwrap();
        assert_eq!(again.tokens, p.tokens[5..8]);
    }

    #[test]
    fn non_finite_rows_are_flagged() {
        let s = Sampler { temperature: 0.7, top_k: 0, top_p: 0.9 };
        let p =
            s.pick(&logits(&[&[0.0, 1.0], &[f32::NAN, 1.0], &[0.0, f32::INFINITY]]), Some(&[0.5, 0.5, 0.5])).unwrap();
        assert_eq!(p.finite, vec![true, false, false]);
    }
}
