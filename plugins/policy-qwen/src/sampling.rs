//! Next-token choice from one row of logits: greedy, or temperature -> top-k -> top-p sampling in
//! the order of HF's logits warpers, with the log-probability under that sampling distribution.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
}

fn log_sum_exp(values: impl Iterator<Item = f32> + Clone, max: f32) -> f32 {
    let sum: f64 = values.map(|v| ((v - max) as f64).exp()).sum();
    max + sum.ln() as f32
}

impl Sampler {
    /// The chosen token and its log-probability. Greedy (temperature 0) reports the log-probability
    /// under the unscaled distribution, since the sampling distribution is a point mass there.
    pub fn pick(&self, logits: &[f32], rng: &mut ChaCha8Rng) -> (u32, f32) {
        if self.temperature <= 0.0 {
            let (best, &max) = logits
                .iter()
                .enumerate()
                .fold((0, &f32::NEG_INFINITY), |acc, (i, v)| if *v > *acc.1 { (i, v) } else { acc });
            let lse = log_sum_exp(logits.iter().copied(), max);
            return (best as u32, max - lse);
        }
        let inv_t = 1.0 / self.temperature;
        let vocab = logits.len();
        let scaled = |i: u32| logits[i as usize] * inv_t;
        let by_logit_desc = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]);
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) * inv_t;
        let mut candidates: Vec<u32> = (0..vocab as u32).collect();
        if self.top_k > 0 && (self.top_k as usize) < vocab {
            candidates.select_nth_unstable_by(self.top_k as usize - 1, by_logit_desc);
            candidates.truncate(self.top_k as usize);
        }
        let kept: Vec<u32> = if self.top_p < 1.0 {
            // Smallest prefix (by descending probability) whose mass reaches top_p, as HF keeps;
            // sort only as many candidates as that needs.
            let candidates_lse = log_sum_exp(candidates.iter().map(|&i| scaled(i)), max);
            let mut m = candidates.len().min(256);
            loop {
                if m < candidates.len() {
                    candidates.select_nth_unstable_by(m - 1, by_logit_desc);
                }
                let mut head = candidates[..m].to_vec();
                head.sort_unstable_by(by_logit_desc);
                let mut mass = 0.0f64;
                let cut = head.iter().position(|&i| {
                    mass += ((scaled(i) - candidates_lse) as f64).exp();
                    mass >= self.top_p as f64
                });
                match cut {
                    Some(n) => break head[..=n].to_vec(),
                    None if m == candidates.len() => break head,
                    None => m = (m * 4).min(candidates.len()),
                }
            }
        } else {
            candidates
        };
        let kept_lse = log_sum_exp(kept.iter().map(|&i| scaled(i)), max);
        let u: f64 = rng.random::<f64>();
        let mut acc = 0.0f64;
        let mut chosen = *kept.last().expect("at least one candidate");
        for &i in &kept {
            acc += ((scaled(i) - kept_lse) as f64).exp();
            if u < acc {
                chosen = i;
                break;
            }
        }
        (chosen, scaled(chosen) - kept_lse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(7)
    }

    #[test]
    fn greedy_takes_argmax_with_its_logprob() {
        let s = Sampler { temperature: 0.0, top_k: 0, top_p: 1.0 };
        let (t, lp) = s.pick(&[0.0, 2.0, 1.0], &mut rng());
        assert_eq!(t, 1);
        let expected = 2.0 - (1.0f32 + 2.0f32.exp() + 1.0f32.exp()).ln();
        assert!((lp - expected).abs() < 1e-6);
    }

    #[test]
    fn top_k_and_top_p_restrict_the_support() {
        let logits = [3.0, 2.9, 0.0, -1.0, -5.0];
        let k = Sampler { temperature: 1.0, top_k: 2, top_p: 1.0 };
        let p = Sampler { temperature: 1.0, top_k: 0, top_p: 0.5 };
        let mut r = rng();
        for _ in 0..200 {
            let (t, lp) = k.pick(&logits, &mut r);
            assert!(t < 2);
            let expected = logits[t as usize] - (3.0f32.exp() + 2.9f32.exp()).ln();
            assert!((lp - expected).abs() < 1e-5);
            // 3.0 alone holds < 0.5 of the mass, so top-p keeps the first two.
            let (t, _) = p.pick(&logits, &mut r);
            assert!(t < 2);
        }
        let narrow = Sampler { temperature: 1.0, top_k: 0, top_p: 0.01 };
        for _ in 0..50 {
            assert_eq!(narrow.pick(&logits, &mut r), (0, 0.0));
        }
    }

    #[test]
    fn sampling_follows_the_distribution_and_is_seeded() {
        let logits = [0.0f32, (3.0f32).ln()]; // p = 0.25, 0.75
        let s = Sampler { temperature: 1.0, top_k: 0, top_p: 1.0 };
        let mut r = rng();
        let ones = (0..4000).filter(|_| s.pick(&logits, &mut r).0 == 1).count();
        assert!((2800..3200).contains(&ones), "{ones}");
        let a: Vec<u32> = {
            let mut r = rng();
            (0..20).map(|_| s.pick(&logits, &mut r).0).collect()
        };
        let b: Vec<u32> = {
            let mut r = rng();
            (0..20).map(|_| s.pick(&logits, &mut r).0).collect()
        };
        assert_eq!(a, b);
    }
}
