//! The plugin SDK as an outside author meets it: `longrl plugins new` scaffolds a crate outside the
//! workspace, plain `cargo build` builds it without libtorch, and the host loads it. And every
//! plugin of this repository documents each of its config keys.

use std::path::{Path, PathBuf};
use std::process::Command;

use longrl_core::api::{ComponentContext, ComponentKind, RewardInput};
use longrl_core::sdk::UNDOCUMENTED;
use longrl_plugins::PluginSet;
use longrl_tests::{artifact_dir, longrl_binary};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn scaffold(name: &str, kind: &str, parent: &Path) -> PathBuf {
    let out = parent.join(name);
    let output = Command::new(longrl_binary())
        .args(["plugins", "new", name, "--kind", kind, "--out"])
        .arg(&out)
        .arg("--core-path")
        .arg(repo_root().join("core"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // The workspace's lock file pins the same dependency versions the workspace builds with, all of
    // them already in the local registry cache: the build below needs no network.
    std::fs::copy(repo_root().join("Cargo.lock"), out.join("Cargo.lock")).unwrap();
    out
}

/// Where the scaffolded crates build: it persists under the workspace's target directory, so later
/// runs reuse their dependencies.
fn sdk_target() -> PathBuf {
    artifact_dir().join("../plugin-sdk-test")
}

/// `cargo <args>` in `dir` the way a plugin author runs it, with no libtorch in the environment.
fn cargo(dir: &Path, args: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(dir).args(args).args(["--offline", "--quiet", "--target-dir"]).arg(sdk_target());
    for key in ["LIBTORCH", "LIBTORCH_USE_PYTORCH", "LIBTORCH_INCLUDE", "LIBTORCH_LIB", "CARGO_TARGET_DIR"] {
        command.env_remove(key);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "cargo {args:?} in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_scaffolded_reward_builds_outside_the_workspace_without_libtorch_and_loads() {
    let parent = tempfile::tempdir().unwrap();
    let crate_dir = scaffold("my-exact", "reward", parent.path());
    for file in ["Cargo.toml", "README.md", "src/lib.rs"] {
        assert!(crate_dir.join(file).exists(), "{file}");
    }
    cargo(&crate_dir, &["test"]);
    cargo(&crate_dir, &["build"]);
    let library = sdk_target().join("debug").join(format!("libmy_exact.{}", std::env::consts::DLL_EXTENSION));

    let set = PluginSet::load(&[library.clone()]).unwrap();
    let plugin = &set.libraries()[0];
    assert_eq!(plugin.build_info().tensor, None, "built without tch: it declares no libtorch");
    let info = set.info(ComponentKind::Reward, "my-exact").expect("the component is listed");
    assert!(info.config.iter().any(|k| k.key == "score" && k.doc.contains("matching answer")), "{:?}", info.config);
    let reward = set.reward("my-exact", &serde_json::json!({"score": 0.5}), &ComponentContext::default()).unwrap();
    let input =
        |response: &str| RewardInput { response: response.into(), ground_truth: "Paris".into(), ..Default::default() };
    let scores = reward.score(&[input("<think>Lyon?</think> paris"), input("Lyon")]).unwrap();
    assert_eq!(scores.iter().map(|s| s.score).collect::<Vec<_>>(), vec![0.5, 0.0]);
}

#[test]
fn the_other_scaffolds_without_tensors_build_and_pass_their_tests() {
    let parent = tempfile::tempdir().unwrap();
    for (name, kind) in [("my-walk", "sampler"), ("my-phases", "curriculum")] {
        let crate_dir = scaffold(name, kind, parent.path());
        cargo(&crate_dir, &["test"]);
    }
}

#[test]
fn every_config_key_of_every_plugin_is_documented() {
    let set = PluginSet::load(&[artifact_dir()]).unwrap();
    let mut checked = 0;
    for (info, library) in set.components() {
        for key in &info.config {
            assert_ne!(
                key.doc,
                UNDOCUMENTED,
                "{} ({}): key `{}` has no doc comment",
                info.label(),
                library.display(),
                key.key
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} keys found: are the plugins built?");
}
