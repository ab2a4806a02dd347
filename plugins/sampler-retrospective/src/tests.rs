//! The paper's mode (Eq. 10 from the base model's file, retained examples joining the pool, draws
//! without replacement by difficulty), the other measures, the DAPO warning, the online and
//! fixed-share options, and save/restore continuing the same draws.

use std::io::Write;
use std::sync::{Arc, Mutex};

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

/// A difficulty file with one line per `(index, fields)`.
fn difficulty_file(lines: &[(u32, serde_json::Value)]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for (i, fields) in lines {
        let mut line = fields.clone();
        line["id"] = json!(format!("ex{i}"));
        writeln!(f, "{line}").unwrap();
    }
    f
}

/// Base-model mean rewards (G = 8): phase 0 over 0..6, phase 1 over 10..14.
fn base_model_file() -> tempfile::NamedTempFile {
    let means =
        [(0, 0.0), (1, 0.125), (2, 0.5), (3, 1.0), (4, 0.0), (5, 0.25), (10, 0.5), (11, 0.0), (12, 1.0), (13, 0.25)];
    let lines: Vec<(u32, serde_json::Value)> =
        means.iter().map(|&(i, m)| (i, json!({"mean_reward": m, "difficulty": 1.0 / (m + 0.1)}))).collect();
    difficulty_file(&lines)
}

fn paper(file: &tempfile::NamedTempFile, extra: serde_json::Value) -> RetrospectiveSampler {
    let mut config = json!({ "difficulty_file": file.path() });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    sampler(config)
}

/// `n` binomial draws with probability `p` landed `got` times: within 4 standard deviations.
fn assert_binomial(got: usize, n: usize, p: f64, what: &str) {
    let want = n as f64 * p;
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    assert!((got as f64 - want).abs() < 4.0 * sigma, "{what}: {got} of {n}, expected {want:.1} +- {:.1}", 4.0 * sigma);
}

#[test]
fn the_paper_default_needs_the_base_model_file() {
    let e = RetrospectiveSampler::create(&json!({}), &ComponentContext::default()).err().unwrap().to_string();
    assert!(e.contains("difficulty_file") && e.contains("longrl difficulty") && e.contains("online"), "{e}");
    // A file that does not exist yet is the one the trainer writes at RL start: read when the
    // first phase begins, and an error naming it if it is still missing then.
    let mut s = sampler(json!({"difficulty_file": "/nope/d.jsonl"}));
    let e = s.begin_phase(0, &items(0..6)).unwrap_err().to_string();
    assert!(e.contains("/nope/d.jsonl"), "{e}");
}

#[test]
fn a_difficulty_file_written_after_creation_is_read_when_the_first_phase_begins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("base_difficulty.jsonl");
    let mut s = sampler(json!({ "difficulty_file": path }));
    std::fs::copy(base_model_file().path(), &path).unwrap();
    s.begin_phase(0, &items(0..6)).unwrap();
    let m = s.metrics().unwrap();
    assert_eq!(m["pool_size"], 6.0);
    // Saved and restored into a sampler created once the file exists: the same state.
    let state = s.save_state().unwrap();
    let mut t = sampler(json!({ "difficulty_file": path }));
    t.load_state(&state).unwrap();
    assert_eq!(t.next_batch(6).unwrap(), s.next_batch(6).unwrap());
}

#[test]
fn unsolved_examples_join_the_next_phase_pool_drawn_without_replacement() {
    let f = base_model_file();
    let mut s = paper(&f, json!({}));
    s.begin_phase(0, &items(0..6)).unwrap();
    assert!(s.retained.is_empty(), "phase 0 retains nothing");
    s.next_batch(4).unwrap();
    s.begin_phase(1, &items(10..14)).unwrap();
    // The base model never solved 0 and 4 (mean 0 <= threshold 0): they join phase 1's pool.
    assert_eq!(s.retained, vec![0, 4]);
    let m = s.metrics().unwrap();
    assert_eq!((m["pool_size"], m["retained_count"]), (4.0, 2.0));
    assert_eq!(m["retained_mean_difficulty"], 10.0, "mean 0 gets the cap, max_difficulty");
    // The pool is a dataset of 6: every epoch draws each of them exactly once.
    for epoch in 0..50u64 {
        assert_eq!(s.epochs_completed().unwrap(), epoch);
        let mut drawn = s.next_batch(6).unwrap();
        drawn.sort();
        assert_eq!(drawn, vec![0, 4, 10, 11, 12, 13]);
    }
    assert_eq!(s.epochs_completed().unwrap(), 50);
    // The threshold picks what joins: <= 0.3 adds example 5 (0.25); 1 (0.125) too.
    let mut s = paper(&f, json!({"retain_threshold": 0.3}));
    s.begin_phase(0, &items(0..6)).unwrap();
    s.begin_phase(1, &items(10..14)).unwrap();
    assert_eq!(s.retained, vec![0, 1, 4, 5]);
    // Retention follows the base model, not what the policy did in phase 0.
    let mut s = paper(&f, json!({}));
    s.begin_phase(0, &items(0..6)).unwrap();
    s.observe(0, &[1.0; 8]).unwrap();
    s.observe(2, &[0.0; 8]).unwrap();
    s.begin_phase(1, &items(10..14)).unwrap();
    assert_eq!(s.retained, vec![0, 4]);
    // A retained example stays while still unsolved by the base model: phase 2 keeps 0, 4 and 11.
    s.begin_phase(2, &items(20..21)).unwrap_err(); // 20 has no line in the file
    let mut s = paper(&f, json!({}));
    s.begin_phase(0, &items(0..6)).unwrap();
    s.begin_phase(1, &items(10..13)).unwrap();
    s.begin_phase(2, &items([13])).unwrap();
    assert_eq!(s.retained, vec![0, 4, 11]);
}

#[test]
fn draws_are_proportional_to_eq10_difficulty() {
    // Base means 0, 0.125, 0.5, 1 -> Eq. 10 difficulties 10 (the cap), 8, 2, 1.
    let f = base_model_file();
    let mut s = paper(&f, json!({}));
    s.begin_phase(0, &items(0..4)).unwrap();
    let weights = [10.0, 8.0, 2.0, 1.0];
    let total: f64 = weights.iter().sum();
    let passes = 4000;
    let mut first = [0usize; 4];
    let mut second_after_0 = [0usize; 4];
    for _ in 0..passes {
        let pass = s.next_batch(4).unwrap(); // a pool of 4: one batch is one pass
        first[pass[0] as usize] += 1;
        if pass[0] == 0 {
            second_after_0[pass[1] as usize] += 1;
        }
    }
    for (i, w) in weights.iter().enumerate() {
        assert_binomial(first[i], passes, w / total, &format!("first draw of example {i}"));
    }
    // Without replacement: after 0 is drawn, the next is proportional among 1, 2, 3.
    let after_0: usize = second_after_0.iter().sum();
    assert_eq!(second_after_0[0], 0);
    for i in 1..4 {
        assert_binomial(second_after_0[i], after_0, weights[i] / (total - 10.0), &format!("second draw of {i}"));
    }
    assert_eq!(s.epochs_completed().unwrap(), passes as u64);
}

#[test]
fn other_measures_weigh_by_their_column() {
    let f = difficulty_file(&[
        (0, json!({"mean_reward": 0.0, "reference_loss": 4.0, "reasoning_steps": 1})),
        (1, json!({"mean_reward": 0.5, "reference_loss": 2.0, "reasoning_steps": 3})),
        (2, json!({"mean_reward": 1.0, "reference_loss": 1.0, "reasoning_steps": 4})),
    ]);
    for (measure, weights) in [("reference_loss", [4.0, 2.0, 1.0]), ("reasoning_steps", [1.0, 3.0, 4.0])] {
        let mut s = paper(&f, json!({ "measure": measure }));
        s.begin_phase(0, &items(0..3)).unwrap();
        let passes = 3000;
        let mut first = [0usize; 3];
        for _ in 0..passes {
            first[s.next_batch(3).unwrap()[0] as usize] += 1;
        }
        let total: f64 = weights.iter().sum();
        for (i, w) in weights.iter().enumerate() {
            assert_binomial(first[i], passes, w / total, &format!("{measure}: example {i}"));
        }
    }
    // A measure the file does not state is an error naming the column and the examples.
    let partial = difficulty_file(&[(0, json!({"mean_reward": 0.0})), (1, json!({"reasoning_steps": 2}))]);
    let mut s = paper(&partial, json!({"measure": "reasoning_steps"}));
    let e = s.begin_phase(0, &items(0..2)).unwrap_err().to_string();
    assert!(e.contains("reasoning_steps") && e.contains("`ex0`") && !e.contains("`ex1`"), "{e}");
    // Online difficulty learns only Eq. 10.
    let e = RetrospectiveSampler::create(
        &json!({"difficulty": "online", "measure": "reference_loss"}),
        &ComponentContext::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("measure"), "{e}");
}

#[test]
fn examples_missing_from_the_file_are_named() {
    let f = base_model_file();
    let mut s = paper(&f, json!({}));
    let e = s.begin_phase(0, &items([0, 1, 7, 8])).unwrap_err().to_string();
    assert!(e.contains("`ex7`, `ex8`") && e.contains("2 of phase 0's 4") && e.contains("mean_reward"), "{e}");
    assert!(e.contains(&f.path().display().to_string()), "{e}");
}

/// Log lines written while `f` runs.
fn logs_of(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    tracing::subscriber::with_default(subscriber, f);
    String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
}

#[test]
fn warns_when_dynamic_sampling_would_drop_most_retained_groups() {
    let f = base_model_file();
    let mut s = paper(&f, json!({}));
    s.begin_phase(0, &items(0..6)).unwrap();
    s.observe(1, &[0.0; 8]).unwrap(); // G = 8 seen
    let logs = logs_of(|| s.begin_phase(1, &items(10..14)).unwrap());
    // Both retained examples have base mean 0: all their groups would score all 0.
    assert_eq!(s.metrics().unwrap()["retained_zero_variance_share"], 1.0);
    assert!(logs.contains("WARN") && logs.contains("dynamic sampling") && logs.contains("100%"), "{logs}");
    // Retained examples solved half the time rarely give equal groups with G = 8: no warning.
    let mut s = paper(&f, json!({"retain_threshold": 0.5}));
    s.begin_phase(0, &items([2, 5])).unwrap();
    s.observe(2, &[0.0; 8]).unwrap();
    let logs = logs_of(|| s.begin_phase(1, &items([12])).unwrap());
    assert_eq!(s.retained, vec![2, 5]);
    let share = (0.5f64.powi(8) * 2.0 + 0.25f64.powi(8) + 0.75f64.powi(8)) / 2.0;
    assert!((s.metrics().unwrap()["retained_zero_variance_share"] - share).abs() < 1e-12);
    assert!(!logs.contains("dynamic sampling"), "{logs}");
}

/// Online / fixed share (the old default): phase 0 over 0..6 with observed mean rewards
/// [0, 0.15, 0.4, 0.9, 0 (two groups: 0 then 0), unobserved].
fn online_after_phase_zero(extra: serde_json::Value) -> RetrospectiveSampler {
    let mut config = json!({"difficulty": "online", "mixing": "fixed_share", "smoothing": 0.1});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
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

#[test]
fn online_keeps_only_observed_unsolved_examples() {
    let mut s = online_after_phase_zero(json!({}));
    s.begin_phase(1, &items(10..20)).unwrap();
    // Examples 0 and 4 never earned a reward; 5 was never observed, so there is no evidence it is hard.
    assert_eq!(s.retained, vec![0, 4]);
    let m = s.metrics().unwrap();
    assert_eq!((m["pool_size"], m["retained_count"]), (10.0, 2.0));
    assert!((m["retained_mean_difficulty"] - 10.0).abs() < 1e-12);
    // Cumulative phase: 0..3 are in the new pool again, so they are not retained twice.
    let mut s = online_after_phase_zero(json!({"retain_threshold": 0.5}));
    s.begin_phase(1, &items([0, 1, 2, 10, 11])).unwrap();
    assert_eq!(s.retained, vec![4]);
    // Solved retained examples leave; new unsolved ones join.
    let mut s = online_after_phase_zero(json!({}));
    s.begin_phase(1, &items(10..13)).unwrap();
    s.observe(0, &[1.0, 0.0]).unwrap();
    s.observe(10, &[0.0, 0.0]).unwrap();
    s.observe(11, &[1.0, 1.0]).unwrap();
    s.begin_phase(2, &items(20..25)).unwrap();
    assert_eq!(s.retained, vec![4, 10]);
}

#[test]
fn fixed_share_batches_mix_exactly_the_share() {
    let mut s = online_after_phase_zero(json!({"retained_share": 0.25}));
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
        assert_binomial(*c.get(&i).unwrap_or(&0), total, w / sum, &format!("index {i}"));
    }
}

#[test]
fn fixed_share_draws_are_proportional_to_difficulty() {
    // Retained means 0, 0.15, 0.4, 0 -> difficulties 10, 4, 2, 10 (smoothing 0.1).
    let mut s = online_after_phase_zero(json!({"retain_threshold": 0.5, "retained_share": 0.5}));
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
fn online_difficulties_follow_observations() {
    let mut s = sampler(
        json!({"difficulty": "online", "mixing": "fixed_share", "smoothing": 0.25, "weight_new_by_difficulty": true}),
    );
    s.begin_phase(0, &items(0..3)).unwrap();
    // Means 0, 0.75, unobserved -> difficulties 4, 1, and the observed mean 2.5.
    s.observe(0, &[0.0]).unwrap();
    s.observe(1, &[0.5, 1.0]).unwrap();
    let c = counts(&mut s, 400, 10);
    assert_proportional(&c, &[(0, 4.0), (1, 1.0), (2, 2.5)], 4000);
    assert_eq!(s.epochs_completed().unwrap(), 4000 / 3);
    // Pool mixing with online difficulty: the weights of a pass are those known when it starts.
    let mut s = sampler(json!({"difficulty": "online"}));
    s.begin_phase(0, &items(0..2)).unwrap();
    s.observe(0, &[0.0]).unwrap(); // cap 10
    s.observe(1, &[1.0]).unwrap(); // 1
    let mut first = [0usize; 2];
    for _ in 0..2000 {
        first[s.next_batch(2).unwrap()[0] as usize] += 1;
    }
    assert_binomial(first[0], 2000, 10.0 / 11.0, "online pool");
}

#[test]
fn online_difficulty_is_seeded_by_the_file() {
    let f = base_model_file();
    let mut s = sampler(json!({"difficulty": "online", "difficulty_file": f.path()}));
    s.begin_phase(0, &items(0..4)).unwrap();
    // No observation at all: the offline scores alone decide what phase 1 keeps.
    s.begin_phase(1, &items(10..12)).unwrap();
    assert_eq!(s.retained, vec![0]);
}

#[test]
fn save_restore_continues_identically() {
    let f = base_model_file();
    let online =
        json!({"difficulty": "online", "mixing": "fixed_share", "retain_threshold": 0.5, "retained_share": 0.3});
    for config in [json!({"difficulty_file": f.path()}), online] {
        let mut a = sampler(config.clone());
        a.begin_phase(0, &items(0..6)).unwrap();
        a.next_batch(4).unwrap();
        a.observe(1, &[0.0, 0.0]).unwrap();
        a.observe(2, &[0.0, 0.0]).unwrap();
        a.begin_phase(1, &items(10..14)).unwrap();
        a.next_batch(5).unwrap();
        a.observe(1, &[0.1, 0.2]).unwrap();
        let saved = a.save_state().unwrap();
        let mut b =
            RetrospectiveSampler::create(&config, &ComponentContext { seed: 12345, ..Default::default() }).unwrap();
        b.load_state(&saved).unwrap();
        b.begin_phase(1, &items(10..14)).unwrap(); // a resuming trainer may re-announce the phase
        let rewards = |i: u32, step: u32| vec![((i * 7 + step) % 3) as f32 / 2.0, 0.0];
        testing::assert_continue_alike(&mut a, &mut b, 20, 7, rewards, 2, &items([5, 11, 12]));
        assert_eq!(a.retained, b.retained, "{config}");
    }
}

#[test]
fn misuse_and_bad_config_are_errors() {
    let mut s = sampler(json!({"difficulty": "online"}));
    testing::assert_refuses_misuse(&mut s, b"{}");
    s.begin_phase(0, &items(0..2)).unwrap();
    assert!(s.observe(0, &[]).is_err());
    assert!(s.observe(0, &[f32::NAN]).unwrap_err().to_string().contains("non-finite"));
    for (config, key) in [
        (json!({"difficulty": "online", "smoothing": -1.0}), "smoothing"),
        (json!({"difficulty": "online", "max_difficulty": 0.0}), "max_difficulty"),
        (json!({"difficulty": "online", "retained_share": 1.5}), "retained_share"),
        (json!({"difficulty": "online", "share": 0.5}), "share"),
        (json!({"difficulty": "offline"}), "offline"),
        (json!({"mixing": "half"}), "half"),
    ] {
        let e = RetrospectiveSampler::create(&config, &ComponentContext::default()).err().unwrap().to_string();
        assert!(e.contains(key), "{config}: {e}");
    }
}
