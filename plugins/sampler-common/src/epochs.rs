//! Shuffled passes (epochs) over a fixed pool of dataset indices.

use longrl_core::{Result, bail};
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
        let index = self.order[self.cursor];
        self.cursor += 1;
        if self.cursor == self.order.len() {
            self.epochs_completed += 1;
            self.order.clear();
            self.cursor = 0;
        }
        Ok(index)
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
    fn empty_pool_is_an_error() {
        let mut rng = SamplerRng::from_seed(3);
        assert!(EpochShuffler::new(vec![]).next(&mut rng).is_err());
    }
}
