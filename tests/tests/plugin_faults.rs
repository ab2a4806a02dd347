//! No silent defaults across the plugin boundary: every failing plugin method reaches its caller as
//! an error naming the plugin and the call (the fixture's `faulty` components fail on purpose).

use longrl_core::api::{ComponentContext, PoolItem, RewardInput};
use longrl_plugins::PluginSet;
use longrl_tests::{longrl_binary, plugin_library};

fn faulty() -> PluginSet {
    PluginSet::load(&[plugin_library("longrl-fixture-faulty")]).unwrap()
}

/// The error names the component, its library, the call, and carries the plugin's own message.
fn assert_names_plugin(error: impl std::fmt::Display, label: &str, call: &str) {
    let text = error.to_string();
    assert!(
        text.contains(&format!("plugin {label} (liblongrl_fixture_faulty.so): {call}: {call} fails on purpose")),
        "{text}"
    );
}

#[test]
fn every_failing_method_reaches_the_caller_naming_the_plugin() {
    let set = faulty();
    let ctx = ComponentContext::default();

    let algorithm = set.algorithm("faulty", &serde_json::json!({}), &ctx).unwrap();
    assert_names_plugin(algorithm.settings().unwrap_err(), "algorithm/faulty", "settings");
    assert_names_plugin(algorithm.shape_reward(1.0, 10, 20).unwrap_err(), "algorithm/faulty", "shape_reward");
    assert_names_plugin(algorithm.keep_group(&[0.0, 1.0]).unwrap_err(), "algorithm/faulty", "keep_group");
    // What works still works.
    assert_eq!(algorithm.advantages(&[1.0, 0.0], &[2]).unwrap(), vec![1.0, 0.0]);

    let curriculum = set.curriculum("faulty", &serde_json::json!({}), &ctx).unwrap();
    assert_names_plugin(curriculum.phases().unwrap_err(), "curriculum/faulty", "phases");
    assert_names_plugin(curriculum.current_phase().unwrap_err(), "curriculum/faulty", "current_phase");

    let mut sampler = set.sampler("faulty", &serde_json::json!({}), &ctx).unwrap();
    let pool = [PoolItem { index: 7, id: "a".into(), prompt_tokens: 3, data_source: "x".into() }];
    sampler.begin_phase(0, &pool).unwrap();
    assert_eq!(sampler.next_batch(2).unwrap(), vec![7, 7]);
    assert_names_plugin(sampler.epochs_completed().unwrap_err(), "sampler/faulty", "epochs_completed");
    assert_names_plugin(sampler.metrics().unwrap_err(), "sampler/faulty", "metrics");

    let reward = set.reward("faulty", &serde_json::json!({}), &ctx).unwrap();
    assert_eq!(reward.score(&[RewardInput::default()]).unwrap()[0].score, 0.0);
    assert_names_plugin(reward.take_metrics().unwrap_err(), "reward/faulty", "take_metrics");
}

/// `train --dry-run` with one faulty component swapped into the tiny recipe.
fn dry_run(component: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let fixture = plugin_library("longrl-fixture-faulty");
    let output = std::process::Command::new(longrl_binary())
        .current_dir(root)
        .args(["train", "--dry-run", "--config", "configs/tiny.toml"])
        .args(["--set", &format!("{component}.name=\"faulty\"")])
        .args(["--set", &format!("plugins.paths=[{:?}]", fixture.display().to_string())])
        .output()
        .unwrap();
    assert!(!output.status.success(), "a faulty {component} must stop the run");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn train_stops_on_a_failing_algorithm_or_curriculum_instead_of_guessing() {
    // Before: a failing `settings` became the defaults (dynamic sampling off, one prompt per step)
    // and failing `phases` an empty curriculum; both now stop `train` with the plugin's error.
    assert_names_plugin(dry_run("algorithm"), "algorithm/faulty", "settings");
    assert_names_plugin(dry_run("curriculum"), "curriculum/faulty", "phases");
}
