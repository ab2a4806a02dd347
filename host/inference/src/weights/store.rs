//! Published weight directories: `DIR/v000012/` holds version 12 as an HF directory (config.json,
//! `*.safetensors`, tokenizer files). It is written under `DIR/.tmp-v000012-PID/`, completed with a
//! marker file, and renamed into place, so a server never sees half a checkpoint under a final name.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::request::WeightVersion;

/// Written last inside a published directory: its version and files (name, bytes).
pub const MARKER: &str = "longrl-weights.json";
const TEMP_PREFIX: &str = ".tmp-";

pub struct WeightStore {
    root: PathBuf,
    keep: usize,
}

impl WeightStore {
    /// `root` is made absolute (servers need an absolute path); leftovers of interrupted writes are removed.
    pub fn open(root: &Path, keep: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root).with_context(|| format!("creating the weight directory {}", root.display()))?;
        let root = root.canonicalize().with_context(|| format!("resolving {}", root.display()))?;
        for entry in std::fs::read_dir(&root).with_context(|| format!("listing {}", root.display()))? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                std::fs::remove_dir_all(entry.path())
                    .with_context(|| format!("removing the leftover {}", entry.path().display()))?;
            }
        }
        Ok(WeightStore { root, keep: keep.max(1) })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir_for(&self, version: WeightVersion) -> PathBuf {
        self.root.join(name_for(version))
    }

    /// Write version `version` through `write` (which fills an empty directory), mark it complete,
    /// rename it into place and delete versions beyond the newest `keep`. Returns its absolute path.
    pub fn publish(
        &self,
        version: WeightVersion,
        write: impl FnOnce(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<PathBuf> {
        let name = name_for(version);
        let temp = self.root.join(format!("{TEMP_PREFIX}{name}-{}", std::process::id()));
        if temp.exists() {
            std::fs::remove_dir_all(&temp)?;
        }
        std::fs::create_dir_all(&temp).with_context(|| format!("creating {}", temp.display()))?;
        let filled = write(&temp).and_then(|()| mark_complete(&temp, version));
        if let Err(error) = filled {
            let _ = std::fs::remove_dir_all(&temp);
            return Err(error.context(format!("publishing weight version {version} in {}", self.root.display())));
        }
        let target = self.root.join(&name);
        if target.exists() {
            std::fs::remove_dir_all(&target).with_context(|| format!("replacing {}", target.display()))?;
        }
        std::fs::rename(&temp, &target)
            .with_context(|| format!("renaming {} to {}", temp.display(), target.display()))?;
        self.prune()?;
        Ok(target)
    }

    /// Complete published versions, oldest first.
    pub fn versions(&self) -> anyhow::Result<Vec<WeightVersion>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.root).with_context(|| format!("listing {}", self.root.display()))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(version) = name.strip_prefix('v').and_then(|v| v.parse().ok())
                && entry.path().join(MARKER).exists()
            {
                out.push(version);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn prune(&self) -> anyhow::Result<()> {
        let versions = self.versions()?;
        let excess = versions.len().saturating_sub(self.keep);
        for &version in &versions[..excess] {
            let dir = self.dir_for(version);
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing the old weights {}", dir.display()))?;
        }
        Ok(())
    }
}

fn name_for(version: WeightVersion) -> String {
    format!("v{version:06}")
}

/// Check the writer left safetensors behind, then write the marker listing the files.
fn mark_complete(dir: &Path, version: WeightVersion) -> anyhow::Result<()> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push((entry.file_name().to_string_lossy().to_string(), entry.metadata()?.len()));
        }
    }
    files.sort();
    if !files.iter().any(|(name, _)| name.ends_with(".safetensors")) {
        anyhow::bail!("the policy's save wrote no .safetensors file into {}", dir.display());
    }
    let listing: Vec<serde_json::Value> =
        files.iter().map(|(name, bytes)| serde_json::json!({"name": name, "bytes": bytes})).collect();
    let marker = serde_json::json!({"version": version, "files": listing});
    std::fs::write(dir.join(MARKER), serde_json::to_vec_pretty(&marker)?)?;
    Ok(())
}

/// The version a published directory holds, read from its marker.
pub fn read_marker(dir: &Path) -> anyhow::Result<WeightVersion> {
    let path = dir.join(MARKER);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: not a complete weight directory (no {MARKER})", dir.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    value.get("version").and_then(|v| v.as_u64()).with_context(|| format!("{}: no `version`", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_save(dir: &Path) -> anyhow::Result<()> {
        std::fs::write(dir.join("model.safetensors"), b"weights")?;
        std::fs::write(dir.join("config.json"), b"{}")?;
        Ok(())
    }

    #[test]
    fn publishes_atomically_and_keeps_the_newest() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join(".tmp-v000003-1")).unwrap();
        let store = WeightStore::open(tmp.path(), 2).unwrap();
        assert!(!tmp.path().join(".tmp-v000003-1").exists(), "leftovers are removed");
        for version in [1, 2, 3] {
            let dir = store.publish(version, fake_save).unwrap();
            assert!(dir.is_absolute());
            assert_eq!(read_marker(&dir).unwrap(), version);
        }
        assert_eq!(store.versions().unwrap(), vec![2, 3]);
        let names: Vec<String> =
            std::fs::read_dir(store.root()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert!(names.iter().all(|n| !n.starts_with(".tmp-")), "{names:?}");
        // Publishing a version again replaces it.
        store.publish(3, fake_save).unwrap();
        assert_eq!(store.versions().unwrap(), vec![2, 3]);
    }

    #[test]
    fn a_failed_or_empty_write_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = WeightStore::open(tmp.path(), 2).unwrap();
        let error = store.publish(1, |_| anyhow::bail!("disk full")).unwrap_err();
        assert!(format!("{error:#}").contains("disk full"));
        let error = store.publish(2, |dir| Ok(std::fs::write(dir.join("config.json"), b"{}")?)).unwrap_err();
        assert!(format!("{error:#}").contains("no .safetensors"), "{error:#}");
        assert_eq!(std::fs::read_dir(store.root()).unwrap().count(), 0);
        assert!(read_marker(&store.dir_for(1)).is_err());
    }
}
