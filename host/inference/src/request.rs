//! What the trainer asks of a rollout server and what it gets back, whatever the server speaks.

use longrl_core::api::Generation;

/// The weight version rollouts were drawn with: the trainer's global step when it published them.
pub type WeightVersion = u64;

/// Sampling settings shared by the samples of one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub max_tokens: u32,
    /// 0 is greedy.
    pub temperature: f32,
    /// 1.0 disables nucleus sampling.
    pub top_p: f32,
    /// 0 disables top-k.
    pub top_k: u32,
    /// Stop strings (kept out of the returned text).
    pub stop: Vec<String>,
}

/// One prompt and the `n` samples wanted of it (a GRPO group). Its samples all go to one server, so
/// that server's prefix cache prefills the prompt once.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRequest {
    pub prompt: Vec<u32>,
    pub n: u32,
    /// Derived by the trainer from (run seed, step, prompt); sample `j`'s seed is derived from it and `j`.
    pub seed: u64,
    pub sampling: Sampling,
}

impl GroupRequest {
    /// Seed of sample `j` where the server takes one seed per sample (SGLang): a SplitMix64 step over
    /// (group seed, j), so samples differ and do not depend on which server or batch served them.
    pub fn sample_seed(&self, j: u32) -> u64 {
        let mut z = self.seed ^ (u64::from(j) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        // Servers take signed 64-bit seeds.
        (z ^ (z >> 31)) & (i64::MAX as u64)
    }
}

/// The samples of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupOutput {
    /// `n` generations: token ids as sampled, the server's log-prob of each, the finish reason.
    pub generations: Vec<Generation>,
    /// The weights they were drawn with.
    pub weight_version: WeightVersion,
    /// The server that drew them.
    pub server: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_seeds_differ_and_fit_in_i64() {
        let group = GroupRequest {
            prompt: vec![1],
            n: 8,
            seed: 42,
            sampling: Sampling { max_tokens: 1, temperature: 1.0, top_p: 1.0, top_k: 0, stop: vec![] },
        };
        let seeds: Vec<u64> = (0..8).map(|j| group.sample_seed(j)).collect();
        let mut unique = seeds.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 8);
        assert!(seeds.iter().all(|&s| s <= i64::MAX as u64));
        assert_eq!(group.sample_seed(3), GroupRequest { seed: 42, ..group.clone() }.sample_seed(3));
        assert_ne!(group.sample_seed(3), GroupRequest { seed: 43, ..group }.sample_seed(3));
    }
}
