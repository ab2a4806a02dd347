//! Where plugin libraries are looked for: the config's `plugins.paths`, then `LONGRL_PLUGIN_PATH`
//! (a `:`-separated list), then the directory of the running `longrl` binary.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub struct Candidate {
    pub path: PathBuf,
    /// Found by scanning a directory (not named by the user).
    pub scanned: bool,
}

/// The search path, in order, without duplicates.
pub fn search_paths(configured: &[PathBuf]) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = configured.to_vec();
    if let Some(env) = std::env::var_os("LONGRL_PLUGIN_PATH") {
        paths.extend(std::env::split_paths(&env).filter(|p| !p.as_os_str().is_empty()));
    }
    if let Some(dir) = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf)) {
        paths.push(dir.clone());
        // Test binaries live in target/<profile>/deps; the plugin libraries one level up.
        if dir.file_name().is_some_and(|n| n == "deps") {
            if let Some(parent) = dir.parent() {
                paths.push(parent.to_path_buf());
            }
        }
    }
    let mut seen = BTreeSet::new();
    paths.retain(|p| seen.insert(p.canonicalize().unwrap_or_else(|_| p.clone())));
    paths
}

fn is_library(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == std::env::consts::DLL_EXTENSION)
}

/// Library files to try: explicit files as given, and the shared libraries of each directory.
pub fn candidates(paths: &[PathBuf]) -> Vec<Candidate> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut push = |path: PathBuf, scanned: bool, out: &mut Vec<Candidate>| {
        let key = path.canonicalize().unwrap_or_else(|_| path.clone());
        if seen.insert(key) {
            out.push(Candidate { path, scanned });
        }
    };
    for path in paths {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = match std::fs::read_dir(path) {
                Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_library(p)).collect(),
                Err(error) => {
                    tracing::warn!("cannot read plugin directory {}: {error}", path.display());
                    continue;
                }
            };
            files.sort();
            // The test suite's deliberately broken plugins are built beside the binary; never pick
            // them up by scanning (tests load them by path).
            files.retain(|f| !f.file_name().is_some_and(|n| n.to_string_lossy().starts_with("liblongrl_fixture_")));
            for file in files {
                push(file, true, &mut out);
            }
        } else if path.exists() {
            push(path.clone(), false, &mut out);
        } else {
            tracing::debug!("plugin path {} does not exist", path.display());
        }
    }
    out
}
