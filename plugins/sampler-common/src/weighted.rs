//! One draw with probability proportional to a weight.

use longrl_core::{Result, bail};
use rand::Rng;

use crate::SamplerRng;

/// Index `i` with probability `weights[i] / sum(weights)`. Weights must be finite and >= 0, with a
/// positive sum. Uses exactly one `f64` from the RNG per draw, so draws are reproducible.
pub fn weighted_index(weights: &[f64], rng: &mut SamplerRng) -> Result<usize> {
    let mut total = 0.0;
    for (i, w) in weights.iter().enumerate() {
        if !w.is_finite() || *w < 0.0 {
            bail!("weight {i} is {w}; weights must be finite and non-negative");
        }
        total += w;
    }
    if total <= 0.0 {
        bail!("cannot draw: the {} weights sum to {total}", weights.len());
    }
    let target = rng.0.random::<f64>() * total;
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        if target < acc {
            return Ok(i);
        }
    }
    // Rounding can leave `target` a hair above the last partial sum: the last positive weight wins.
    Ok(weights.iter().rposition(|w| *w > 0.0).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_weights_are_never_drawn_and_bad_weights_fail() {
        let mut rng = SamplerRng::from_seed(5);
        for _ in 0..1000 {
            let i = weighted_index(&[0.0, 1.0, 0.0, 2.0], &mut rng).unwrap();
            assert!(i == 1 || i == 3);
        }
        assert!(weighted_index(&[0.0, 0.0], &mut rng).is_err());
        assert!(weighted_index(&[1.0, f64::NAN], &mut rng).is_err());
        assert!(weighted_index(&[1.0, -1.0], &mut rng).is_err());
        assert!(weighted_index(&[], &mut rng).is_err());
    }

    #[test]
    fn frequencies_follow_weights() {
        let mut rng = SamplerRng::from_seed(11);
        let weights = [1.0, 2.0, 7.0];
        let n = 20_000;
        let mut counts = [0usize; 3];
        for _ in 0..n {
            counts[weighted_index(&weights, &mut rng).unwrap()] += 1;
        }
        for (i, w) in weights.iter().enumerate() {
            let p = w / 10.0;
            let sigma = (n as f64 * p * (1.0 - p)).sqrt();
            let diff = (counts[i] as f64 - n as f64 * p).abs();
            assert!(diff < 4.0 * sigma, "index {i}: {} draws, expected {}", counts[i], n as f64 * p);
        }
    }
}
