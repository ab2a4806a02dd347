//! Helpers for the cross-crate integration tests: where the built binary and plugin libraries are.

use std::path::PathBuf;

/// `target/<profile>`, the directory holding the `longrl` binary and every plugin library.
pub fn artifact_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("test binaries live in target/<profile>/deps");
    deps.parent().expect("target/<profile>").to_path_buf()
}

/// A plugin library built by `cargo xtask test` (or `cargo build --workspace`), by crate name.
pub fn plugin_library(crate_name: &str) -> PathBuf {
    let file = format!("lib{}.{}", crate_name.replace('-', "_"), std::env::consts::DLL_EXTENSION);
    let path = artifact_dir().join(&file);
    assert!(
        path.exists(),
        "{} is missing: build the plugin libraries first (`cargo xtask test` does, or `cargo build --workspace`)",
        path.display()
    );
    path
}

/// The `longrl` binary.
pub fn longrl_binary() -> PathBuf {
    let path = artifact_dir().join("longrl");
    assert!(path.exists(), "{} is missing: run `cargo build -p longrl` first", path.display());
    path
}

/// Replace an absolute path in a message by its file name, for stable snapshots.
pub fn redact_paths(message: &str, paths: &[&std::path::Path]) -> String {
    let mut out = message.to_string();
    for path in paths {
        if let Some(name) = path.file_name() {
            out = out.replace(&path.display().to_string(), &format!("<dir>/{}", name.to_string_lossy()));
        }
    }
    out
}
