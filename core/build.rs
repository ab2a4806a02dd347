//! With the `tensor` feature: records the libtorch version this crate (and so every plugin built
//! with it) links against, and fails with one clear sentence when `cargo xtask setup` has not been
//! run. Without it the crate needs no libtorch at all.

use std::path::{Path, PathBuf};

fn main() {
    if std::env::var_os("CARGO_FEATURE_TENSOR").is_none() {
        return;
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let libtorch = std::env::var_os("LIBTORCH").map(PathBuf::from);
    let version = libtorch.as_deref().and_then(read_libtorch_version);
    match version {
        Some(version) => println!("cargo:rustc-env=LONGRL_LIBTORCH_VERSION={version}"),
        None => {
            let shown = libtorch.map(|p| p.display().to_string()).unwrap_or_else(|| "<unset>".into());
            eprintln!(
                "error: libtorch was not found at {shown}: run `cargo xtask setup` once (it installs torch into the project's .venv and links it as .libtorch)."
            );
            std::process::exit(1);
        }
    }
}

/// PyTorch wheels carry `version.py`; standalone libtorch archives carry `build-version`.
fn read_libtorch_version(dir: &Path) -> Option<String> {
    let version_py = dir.join("version.py");
    println!("cargo:rerun-if-changed={}", version_py.display());
    if let Ok(text) = std::fs::read_to_string(&version_py) {
        for line in text.lines() {
            if line.starts_with("__version__") {
                let (_, value) = line.split_once('=')?;
                return Some(value.trim().trim_matches(['\'', '"']).to_string());
            }
        }
    }
    std::fs::read_to_string(dir.join("build-version")).ok().map(|s| s.trim().to_string())
}
