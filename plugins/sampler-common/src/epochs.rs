//! Shuffled passes (epochs) over a fixed pool of dataset indices: uniform permutations, or
//! weighted ones (each draw of a pass proportional to weight among the indices not yet drawn).

use longrl_core::{Result, bail};
use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::SamplerRng;

/// Walks a pool in a fresh random order each pass. The whole position is plain data, so saving it
/// with the RNG state continues the exact same sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochShuffler {
    /// The pool in its given order; each epoch is a permutation of it.
    pool: Vec<u32>,
    /// This epoch's order; empty until the first draw of the epoch (shuffled lazily so the RNG is
    /// consumed only when something is drawn).
    order: Vec<u32>,
    cursor: usize,
    epochs_completed: u64,
}

impl EpochShuffler {
    pub fn new(pool: Vec<u32>) -> Self {
        EpochShuffler { pool, order: Vec::new(), cursor: 0, epochs_completed: 0 }
    }

    pub fn pool(&self) -> &[u32] {
        &self.pool
    }

    /// Full passes finished: incremented as the last index of a pass is drawn.
    pub fn epochs_completed(&self) -> u64 {
        self.epochs_completed
    }

    /// Draws made in the current pass.
    pub fn position(&self) -> usize {
        self.cursor
    }

    pub fn next(&mut self, rng: &mut SamplerRng) -> Result<u32> {
        if self.pool.is_empty() {
            bail!("cannot draw from an empty pool");
        }
        if self.order.is_empty() {
            self.order = self.pool.clone();
            self.order.shuffle(&mut rng.0);
            self.cursor = 0;
        }
        Ok(self.take())
    }

    /// Like [`next`](Self::next), but each pass is a weighted permutation: every draw picks among
    /// the indices not yet drawn in this pass with probability proportional to `weight(index)`
    /// (sampling without replacement, as torch's `WeightedRandomSampler(replacement=False)`). The
    /// weights are read when a pass starts. Weights must be finite and > 0.
    pub fn next_weighted(&mut self, rng: &mut SamplerRng, weight: impl Fn(u32) -> f64) -> Result<u32> {
        if self.pool.is_empty() {
            bail!("cannot draw from an empty pool");
        }
        if self.order.is_empty() {
            // Efraimidis-Spirakis: key ln(u) / w, largest first, is successive sampling by weight.
            let mut keyed = Vec::with_capacity(self.pool.len());
            for &index in &self.pool {
                let w = weight(index);
                if !(w.is_finite() && w > 0.0) {
                    bail!("index {index} has weight {w}; weights must be finite and positive");
                }
                let u = 1.0 - rng.0.random::<f64>(); // (0, 1]
                keyed.push((u.ln() / w, index));
            }
            keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            self.order = keyed.into_iter().map(|(_, index)| index).collect();
            self.cursor = 0;
        }
        Ok(self.take())
    }

    fn take(&mut self) -> u32 {
        let index = self.order[self.cursor];
        self.cursor += 1;
        if self.cursor == self.order.len() {
            self.epochs_completed += 1;
            self.order.clear();
            self.cursor = 0;
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_epoch_is_a_permutation_and_counted() {
        let mut rng = SamplerRng::from_seed(3);
        let mut s = EpochShuffler::new((0..10).collect());
        let mut orders = Vec::new();
        for epoch in 0..3 {
            assert_eq!(s.epochs_completed(), epoch);
            let mut got: Vec<u32> = (0..10).map(|_| s.next(&mut rng).unwrap()).collect();
            orders.push(got.clone());
            got.sort();
            assert_eq!(got, (0..10).collect::<Vec<_>>());
        }
        assert_eq!(s.epochs_completed(), 3);
        assert!(orders[0] != orders[1] || orders[1] != orders[2], "epochs should be reshuffled");
    }

    #[test]
    fn weighted_passes_are_permutations_drawn_by_weight() {
        let mut rng = SamplerRng::from_seed(9);
        let weights = [1.0, 2.0, 7.0];
        let mut s = EpochShuffler::new(vec![0, 1, 2]);
        let passes = 6000;
        let mut first = [0usize; 3];
        let mut second_after_2 = [0usize; 3];
        for _ in 0..passes {
            let order: Vec<u32> = (0..3).map(|_| s.next_weighted(&mut rng, |i| weights[i as usize]).unwrap()).collect();
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, vec![0, 1, 2], "each pass draws every index once");
            first[order[0] as usize] += 1;
            if order[0] == 2 {
                second_after_2[order[1] as usize] += 1;
            }
        }
        assert_eq!(s.epochs_completed(), passes as u64);
        // First draw: P(i) = w_i / 10. Second, after 2: P(0) = 1/3, P(1) = 2/3 among the rest.
        let check = |got: usize, n: usize, p: f64| {
            let sigma = (n as f64 * p * (1.0 - p)).sqrt();
            assert!((got as f64 - n as f64 * p).abs() < 4.0 * sigma, "{got} of {n}, expected p = {p}");
        };
        for (i, w) in weights.iter().enumerate() {
            check(first[i], passes, w / 10.0);
        }
        let after_2: usize = second_after_2.iter().sum();
        check(second_after_2[0], after_2, 1.0 / 3.0);
        check(second_after_2[1], after_2, 2.0 / 3.0);
        assert!(s.next_weighted(&mut rng, |_| 0.0).is_err());
    }

    #[test]
    fn empty_pool_is_an_error() {
        let mut rng = SamplerRng::from_seed(3);
        assert!(EpochShuffler::new(vec![]).next(&mut rng).is_err());
    }
}
