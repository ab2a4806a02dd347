//! The host loads real plugin libraries: the example plugin, and the failure modes users hit.

use std::path::PathBuf;

use longrl_core::api::{ComponentContext, ComponentKind, RewardInput};
use longrl_plugins::{LoadError, PluginLibrary, PluginSet};
use longrl_tests::{artifact_dir, plugin_library, redact_paths};

fn example() -> PathBuf {
    plugin_library("longrl-reward-contains")
}

#[test]
fn example_plugin_loads_with_its_config_passed_through() {
    let set = PluginSet::load(&[example()]).unwrap();
    let info = set.info(ComponentKind::Reward, "contains").expect("contains is listed");
    assert_eq!(info.version, "0.1.0");
    assert!(info.config.iter().any(|k| k.key == "phrase" && k.default == "the answer is"));

    let reward = set
        .reward("contains", &serde_json::json!({"phrase": "Lyon", "score": 0.25}), &ComponentContext::default())
        .unwrap();
    let inputs = [
        RewardInput { response: "<think>Paris</think>The answer is Lyon".into(), ..Default::default() },
        RewardInput { response: "<think>Lyon</think>The answer is Paris".into(), ..Default::default() },
    ];
    let scores = reward.score(&inputs).unwrap();
    assert_eq!(scores.iter().map(|s| s.score).collect::<Vec<_>>(), vec![0.25, 0.0]);
    assert_eq!(scores[0].details["answer"], "The answer is Lyon");
}

#[test]
fn bad_component_config_is_an_error_naming_plugin_and_key() {
    let set = PluginSet::load(&[example()]).unwrap();
    let err = set
        .reward("contains", &serde_json::json!({"phrasing": "x"}), &ComponentContext::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("reward/contains") && err.contains("phrasing"), "{err}");
}

#[test]
fn scanning_the_binary_directory_finds_the_example() {
    let set = PluginSet::load(&[artifact_dir()]).unwrap();
    let names: Vec<String> = set.components().iter().map(|(c, _)| c.label()).collect();
    assert!(names.contains(&"reward/contains".to_string()), "{names:?}");
    // Deliberately broken fixtures are never picked up by scanning.
    assert!(!names.iter().any(|n| n == "reward/old" || n == "reward/panics"), "{names:?}");
}

#[test]
fn unknown_component_names_what_is_available() {
    let set = PluginSet::load(&[example()]).unwrap();
    let err = set.reward("nope", &serde_json::json!({}), &ComponentContext::default()).err().unwrap().to_string();
    assert!(err.contains("no reward plugin named `nope`") && err.contains("contains"), "{err}");
}

#[test]
fn a_library_that_is_not_a_plugin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A real shared library that is not a longrl plugin: libtorch's own small helper library.
    let lib = artifact_dir().join("../../.libtorch/lib/libtorch_global_deps.so");
    let copy = dir.path().join("libnot_a_plugin.so");
    std::fs::copy(&lib, &copy).unwrap();
    let err = PluginLibrary::load(&copy).err().unwrap();
    assert!(matches!(err, LoadError::NotAPlugin { .. }), "{err}");
    insta::assert_snapshot!("not_a_plugin", redact_paths(&err.to_string(), &[&copy]));
    // ... but it is silently ignored when found by scanning a directory.
    let set = PluginSet::load(&[dir.path().to_path_buf()]).unwrap();
    assert!(set.libraries().is_empty());
}

#[test]
fn a_plugin_built_for_another_abi_version_is_refused_with_a_readable_message() {
    let old = plugin_library("longrl-fixture-old-abi");
    let err = PluginLibrary::load(&old).err().unwrap();
    assert!(matches!(err, LoadError::VersionMismatch { .. }), "{err}");
    insta::assert_snapshot!("old_abi", redact_paths(&err.to_string(), &[&old]));

    // Found by scanning: skipped with the reason kept for the "not found" error.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&old, dir.path().join("libold_plugin.so")).unwrap();
    let set = PluginSet::load(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(set.skipped().len(), 1);
    let err = set.reward("old", &serde_json::json!({}), &ComponentContext::default()).err().unwrap().to_string();
    assert!(err.contains("skipped") && err.contains("ABI v0"), "{err}");
}

#[test]
fn two_libraries_with_the_same_component_are_an_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("libcontains_copy.so");
    std::fs::copy(example(), &copy).unwrap();
    let err = PluginSet::load(&[example(), copy.clone()]).err().unwrap();
    let text = err.to_string();
    assert!(matches!(err, LoadError::Duplicate { .. }), "{text}");
    assert!(text.contains("reward `contains`") && text.contains("libcontains_copy.so"), "{text}");
}

#[test]
fn a_panic_inside_a_plugin_comes_back_as_an_error() {
    let set = PluginSet::load(&[plugin_library("longrl-fixture-faulty")]).unwrap();
    let reward = set.reward("panics", &serde_json::json!({}), &ComponentContext::default()).unwrap();
    let err = reward.score(&[RewardInput::default()]).err().unwrap().to_string();
    assert!(err.contains("reward/panics") && err.contains("score") && err.contains("boom in score"), "{err}");
    // The plugin is still usable after the panic.
    let err = reward.score(&[RewardInput::default()]).err().unwrap().to_string();
    assert!(err.contains("boom in score"), "{err}");
}

#[test]
fn a_libtorch_error_inside_a_plugin_comes_back_as_an_error() {
    let set = PluginSet::load(&[plugin_library("longrl-fixture-faulty")]).unwrap();
    let reward = set.reward("torch-error", &serde_json::json!({}), &ComponentContext::default()).unwrap();
    // Through tch's fallible API (an error returned)...
    let err = reward.check_sources(&[]).err().unwrap().to_string();
    assert!(err.contains("reward/torch-error") && err.contains("check_sources"), "{err}");
    assert!(err.contains("shapes cannot be multiplied"), "{err}");
    assert!(!err.contains("Exception raised from"), "libtorch's C++ backtrace is cut: {err}");
    // ...and through its panicking API (a panic caught at the boundary).
    let err = reward.score(&[RewardInput::default()]).err().unwrap().to_string();
    assert!(err.contains("reward/torch-error") && err.contains("panicked"), "{err}");
    assert!(err.contains("shapes cannot be multiplied") && !err.contains("Exception raised from"), "{err}");
}
