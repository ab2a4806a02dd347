//! The host loads real plugin libraries: the example plugin, and the failure modes users hit.

use std::path::{Path, PathBuf};

use longrl_core::abi::{DECLARATION_LEN, DECLARATION_SECTION};
use longrl_core::api::{ComponentContext, ComponentKind, RewardInput};
use longrl_plugins::{LoadError, PluginLibrary, PluginSet};
use longrl_tests::{artifact_dir, longrl_binary, plugin_library, redact_paths};
use object::{Object, ObjectSection};

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

/// A copy of `library` in `dir` with the bytes of its declaration record changed by `patch`.
fn with_patched_declaration(library: &Path, dir: &Path, patch: impl FnOnce(&mut [u8])) -> PathBuf {
    let mut bytes = std::fs::read(library).unwrap();
    let (start, size) = {
        let file = object::File::parse(&*bytes).unwrap();
        let section = file.section_by_name(DECLARATION_SECTION).expect("plugins carry a declaration section");
        section.file_range().unwrap()
    };
    assert!(size as usize >= DECLARATION_LEN);
    patch(&mut bytes[start as usize..start as usize + DECLARATION_LEN]);
    let copy = dir.join(library.file_name().unwrap());
    std::fs::write(&copy, bytes).unwrap();
    copy
}

#[test]
fn a_tensor_plugin_built_against_another_libtorch_is_refused_before_it_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    // The faulty fixture handles tensors (it builds a loss with tch), so it declares its libtorch.
    let plugin = plugin_library("longrl-fixture-faulty");
    let copy = with_patched_declaration(&plugin, dir.path(), |record| {
        let libtorch = &mut record[DECLARATION_LEN - 64..];
        libtorch.fill(0);
        libtorch[..5].copy_from_slice(b"1.0.0");
    });
    let err = PluginLibrary::load(&copy).err().unwrap();
    assert!(matches!(err, LoadError::LibtorchMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("built against libtorch 1.0.0") && text.contains("cannot cross"), "{text}");
}

#[test]
fn a_plugin_of_abi_v1_without_a_declaration_section_is_refused_with_a_readable_message() {
    // ABI v1 plugins exported `LONGRL_PLUGIN_DECLARATION` but had no declaration section: hide the
    // section's name to make one.
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(example()).unwrap();
    let name = format!("{DECLARATION_SECTION}\0");
    let renamed = format!("{}x\0", &DECLARATION_SECTION[..DECLARATION_SECTION.len() - 1]);
    let mut found = 0;
    for at in 0..bytes.len() - name.len() {
        if bytes[at..].starts_with(name.as_bytes()) {
            bytes[at..at + name.len()].copy_from_slice(renamed.as_bytes());
            found += 1;
        }
    }
    assert!(found > 0, "the section name is in the section header string table");
    let old = dir.path().join("libv1_plugin.so");
    std::fs::write(&old, bytes).unwrap();
    let err = PluginLibrary::load(&old).err().unwrap();
    assert!(matches!(err, LoadError::VersionMismatch { .. }), "{err}");
    insta::assert_snapshot!("v1_abi", redact_paths(&err.to_string(), &[&old]));
}

/// The fixture library whose initialiser writes `<its path>.opened` whenever it is loaded.
#[cfg(target_os = "linux")]
fn not_a_plugin() -> PathBuf {
    let path = artifact_dir().join("liblongrl_test_not_a_plugin.so");
    assert!(path.exists(), "{} is missing: build the workspace first (`cargo build --workspace`)", path.display());
    path
}

#[cfg(target_os = "linux")]
fn opened_mark(library: &Path) -> PathBuf {
    PathBuf::from(format!("{}.opened", library.display()))
}

#[test]
#[cfg(target_os = "linux")]
fn a_library_that_does_not_declare_itself_a_plugin_is_never_opened() {
    let dir = tempfile::tempdir().unwrap();
    let library = dir.path().join("libsomething_else.so");
    std::fs::copy(not_a_plugin(), &library).unwrap();
    std::fs::copy(example(), dir.path().join("libcontains.so")).unwrap();

    // Scanned beside a real plugin: the plugin loads, the other library is not even opened.
    let set = PluginSet::load(&[dir.path().to_path_buf()]).unwrap();
    assert!(set.info(ComponentKind::Reward, "contains").is_some());
    assert_eq!(set.libraries().len(), 1);
    assert!(set.skipped().is_empty(), "a library that is not a plugin is ignored, not skipped with a warning");
    // Named explicitly: a clear error, and still never opened.
    let err = PluginLibrary::load(&library).err().unwrap();
    assert!(matches!(err, LoadError::NotAPlugin { .. }), "{err}");
    assert!(err.to_string().contains(DECLARATION_SECTION), "{err}");
    assert!(!opened_mark(&library).exists(), "the host opened a library that is not a plugin");

    // The control: opening the library does leave the mark, so its absence above means something.
    // SAFETY: the fixture's initialiser only writes its mark file.
    let opened = unsafe { libloading::Library::new(&library) }.unwrap();
    drop(opened);
    assert!(opened_mark(&library).exists(), "the fixture's initialiser leaves a mark when it is opened");
}

#[test]
#[cfg(target_os = "linux")]
fn the_binary_never_opens_the_other_libraries_beside_it() {
    let library = not_a_plugin();
    let mark = opened_mark(&library);
    let _ = std::fs::remove_file(&mark);
    let output = std::process::Command::new(longrl_binary())
        .args(["plugins", "list"])
        .env_remove("LONGRL_PLUGIN_PATH")
        .current_dir(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("contains"), "the scan found the plugins beside the binary: {stdout}");
    assert!(!mark.exists(), "`longrl plugins list` opened {}", library.display());
}
