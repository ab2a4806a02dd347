//! Retention rule, draw frequencies proportional to difficulty, batch mixing, the offline file,
//! and save/restore continuing the same draws.

use std::io::Write;

use longrl_sampler_common::testing;
use serde_json::json;

use super::*;

fn items(indices: impl IntoIterator<Item = u32>) -> Vec<PoolItem> {
    indices
        .into_iter()
        .map(|i| PoolItem { index: i, id: format!("ex{i}"), prompt_tokens: u64::from(i) * 10, data_source: "d".into() })
        .collect()
}

fn sampler(config: serde_json::Value) -> RetrospectiveSampler {
    let ctx = ComponentContext { seed: 17, ..Default::default() };
    RetrospectiveSampler::create(&config, &ctx).unwrap()
}

/// Phase 0 over 0..6 with mean rewards [0, 0.15, 0.4, 0.9, 0 (two groups: 0 then 0), unobserved].
fn after_phase_zero(config: serde_json::Value) -> RetrospectiveSampler {
    let mut s = sampler(config);
    s.begin_phase(0, &items(0..6)).unwrap();
    s.next_batch(6).unwrap();
    s.observe(0, &[0.0, 0.0, 0.0, 0.0]).unwrap();
    s.observe(1, &[0.0, 0.3, 0.0, 0.3]).unwrap();
    s.observe(2, &[1.0, 0.0, 0.6, 0.0]).unwrap();
    s.observe(3, &[1.0, 1.0, 0.6, 1.0]).unwrap();
    s.observe(4, &[0.0, 0.0]).unwrap();
    s.observe(4, &[0.0, 0.0, 0.0]).unwrap();
    s
}

fn retained(s: &RetrospectiveSampler) -> Vec<u32> {
    s.retained.clone()
}

#[test]
fn keeps_only_unsolved_examples_by_default() {
    let mut s = after_phase_zero(json!({}));
    assert!(s.retained.is_empty(), "phase 0 retains nothing");
    s.begin_phase(1, &items(10..20)).unwrap();
    // Examples 0 and 4 never earned a reward; 5 was never observed, so there is no evidence it is hard.
    assert_eq!(retained(&s), vec![0, 4]);
    let m = s.metrics().unwrap();
    assert_eq!((m["pool_size"], m["retained_count"]), (10.0, 2.0));
    assert!((m["retained_mean_difficulty"] - 10.0).abs() < 1e-12);
}

#[test]
fn threshold_and_cumulative_pools() {
    let mut s = after_phase_zero(json!({"retain_threshold": 0.5}));
    // Cumulative phase: 0..3 are in the new pool again, so they are not retained twice.
    s.begin_phase(1, &items([0, 1, 2, 10, 11])).unwrap();
    assert_eq!(retained(&s), vec![4]);
    let mut s = after_phase_zero(json!({"retain_threshold": 0.5}));
    s.begin_phase(1, &items(10..12)).unwrap();
    assert_eq!(retained(&s), vec![0, 1, 2, 4]);
}

#[test]
fn retained_examples_leave_once_solved_and_new_hard_ones_join() {
    let mut s = after_phase_zero(json!({}));
    s.begin_phase(1, &items(10..13)).unwrap();
    s.observe(0, &[1.0, 0.0]).unwrap(); // retained example 0 finally solved once
    s.observe(10, &[0.0, 0.0]).unwrap(); // phase-1 example never solved
    s.observe(11, &[1.0, 1.0]).unwrap();
    s.begin_phase(2, &items(20..25)).unwrap();
    assert_eq!(retained(&s), vec![4, 10]);
}

#[test]
fn batches_mix_exactly_the_configured_share() {
    let mut s = after_phase_zero(json!({"retained_share": 0.25}));
    s.begin_phase(1, &items(10..100)).unwrap();
    for n in [1usize, 4, 10, 16] {
        let batch = s.next_batch(n).unwrap();
        assert_eq!(batch.len(), n);
        let from_retained = batch.iter().filter(|i| **i < 10).count();
        assert_eq!(from_retained, (n as f64 * 0.25).round() as usize, "n = {n}: {batch:?}");
    }
    // A phase with no new examples draws everything from the retained ones.
    s.begin_phase(2, &[]).unwrap();
    assert!(s.next_batch(8).unwrap().iter().all(|i| [0, 4].contains(i)));
}

/// Count draws of each index over `rounds` batches of `n`.
fn counts(s: &mut RetrospectiveSampler, rounds: usize, n: usize) -> BTreeMap<u32, usize> {
    let mut c = BTreeMap::new();
    for _ in 0..rounds {
        for i in s.next_batch(n).unwrap() {
            *c.entry(i).or_insert(0) += 1;
        }
    }
    c
}

fn assert_proportional(c: &BTreeMap<u32, usize>, expected_weights: &[(u32, f64)], total: usize) {
    let sum: f64 = expected_weights.iter().map(|(_, w)| w).sum();
    for &(i, w) in expected_weights {
        let p = w / sum;
        let want = total as f64 * p;
        let sigma = (total as f64 * p * (1.0 - p)).sqrt();
        let got = *c.get(&i).unwrap_or(&0) as f64;
        assert!((got - want).abs() < 4.0 * sigma, "index {i}: {got} draws, expected {want:.1} +- {:.1}", 4.0 * sigma);
    }
}

#[test]
fn retained_draws_are_proportional_to_difficulty() {
    // Retained means 0, 0.15, 0.4, 0 -> difficulties 10, 4, 2, 10 (smoothing 0.1).
    let mut s = after_phase_zero(json!({"retain_threshold": 0.5, "retained_share": 0.5}));
    s.begin_phase(1, &items(10..20)).unwrap();
    let c = counts(&mut s, 1000, 10);
    let retained_total: usize = c.iter().filter(|(i, _)| **i < 10).map(|(_, n)| n).sum();
    assert_eq!(retained_total, 5000);
    assert_proportional(&c, &[(0, 10.0), (1, 4.0), (2, 2.0), (4, 10.0)], 5000);
    // The new half is shuffled epochs: each new example exactly 500 times.
    assert!((10..20).all(|i| c[&i] == 500), "{c:?}");
    assert_eq!(s.epochs_completed().unwrap(), 500);
}

#[test]
fn new_examples_can_be_weighted_too() {
    let mut s = sampler(json!({"weight_new_by_difficulty": true, "smoothing": 0.25}));
    s.begin_phase(0, &items(0..3)).unwrap();
    // Means 0, 0.75, unobserved -> difficulties 4, 1, and the observed mean 2.5.
    s.observe(0, &[0.0]).unwrap();
    s.observe(1, &[0.5, 1.0]).unwrap();
    let c = counts(&mut s, 400, 10);
    assert_proportional(&c, &[(0, 4.0), (1, 1.0), (2, 2.5)], 4000);
    assert_eq!(s.epochs_completed().unwrap(), 4000 / 3);
}

#[test]
fn difficulties_follow_observations() {
    let mut s = sampler(json!({"retained_share": 1.0, "retain_threshold": 1.0}));
    s.begin_phase(0, &items(0..2)).unwrap();
    s.observe(0, &[0.0]).unwrap();
    s.observe(1, &[0.0]).unwrap();
    s.begin_phase(1, &items(5..6)).unwrap();
    // Example 1 is solved during phase 1: its difficulty falls from 10 to 1/(0.5 + 0.1).
    s.observe(1, &[1.0, 1.0]).unwrap();
    let c = counts(&mut s, 600, 10);
    assert_proportional(&c, &[(0, 10.0), (1, 1.0 / 0.6)], 6000);
}

#[test]
fn offline_file_seeds_difficulty_by_id() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "{}", json!({"id": "ex1", "difficulty": 10.0, "mean_reward": 0.0})).unwrap();
    writeln!(f, "{}", json!({"id": "ex2", "difficulty": 1.0, "mean_reward": 0.9})).unwrap();
    writeln!(f, "{}", json!({"id": "not-in-data", "difficulty": 10.0, "mean_reward": 0.0})).unwrap();
    let mut s = sampler(json!({"difficulty_file": f.path()}));
    s.begin_phase(0, &items(0..4)).unwrap();
    // No online observation at all: the offline scores alone decide what phase 1 keeps.
    s.begin_phase(1, &items(10..12)).unwrap();
    assert_eq!(retained(&s), vec![1]);
    let e = RetrospectiveSampler::create(&json!({"difficulty_file": "/nope/d.jsonl"}), &ComponentContext::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("/nope/d.jsonl"), "{e}");
}

#[test]
fn save_restore_continues_identically() {
    let config = json!({"retain_threshold": 0.5, "retained_share": 0.3});
    let mut a = after_phase_zero(config.clone());
    a.begin_phase(1, &items(10..17)).unwrap();
    a.next_batch(5).unwrap();
    a.observe(1, &[0.1, 0.2]).unwrap();
    let saved = a.save_state().unwrap();
    let mut b = RetrospectiveSampler::create(&config, &ComponentContext { seed: 12345, ..Default::default() }).unwrap();
    b.load_state(&saved).unwrap();
    b.begin_phase(1, &items(10..17)).unwrap(); // a resuming trainer may re-announce the phase
    let rewards = |i: u32, step: u32| vec![((i * 7 + step) % 3) as f32 / 2.0, 0.0];
    testing::assert_continue_alike(&mut a, &mut b, 20, 7, rewards, 2, &items(30..40));
    assert_eq!(a.retained, b.retained);
}

#[test]
fn misuse_and_bad_config_are_errors() {
    let mut s = sampler(json!({}));
    testing::assert_refuses_misuse(&mut s, b"{}");
    s.begin_phase(0, &items(0..2)).unwrap();
    assert!(s.observe(0, &[]).is_err());
    assert!(s.observe(0, &[f32::NAN]).unwrap_err().to_string().contains("non-finite"));
    for (config, key) in [
        (json!({"smoothing": 0.0}), "smoothing"),
        (json!({"retained_share": 1.5}), "retained_share"),
        (json!({"share": 0.5}), "share"),
    ] {
        let e = RetrospectiveSampler::create(&config, &ComponentContext::default()).err().unwrap().to_string();
        assert!(e.contains(key), "{config}: {e}");
    }
}
