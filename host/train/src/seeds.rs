//! Seeds derived from the run's seed, so that every random choice of a step is a function of
//! (run seed, what, step, round) and a resumed run repeats it exactly.

/// SplitMix64 finaliser: a well-mixed 64-bit hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn derive(run_seed: u64, what: &str, a: u64, b: u64) -> u64 {
    let tag = what.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, c| (h ^ c as u64).wrapping_mul(0x100_0000_01B3));
    mix(mix(mix(run_seed ^ tag) ^ a) ^ b.rotate_left(32))
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_differ_by_every_input_and_repeat() {
        let base = super::derive(1, "generate", 2, 3);
        assert_eq!(base, super::derive(1, "generate", 2, 3));
        for other in [
            super::derive(2, "generate", 2, 3),
            super::derive(1, "sft", 2, 3),
            super::derive(1, "generate", 3, 3),
            super::derive(1, "generate", 2, 4),
        ] {
            assert_ne!(base, other);
        }
    }
}
