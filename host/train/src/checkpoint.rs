//! Checkpoint directories `RUN_DIR/checkpoints/step-XXXXXX/`: written under a temporary name and
//! renamed when complete (a crash never leaves a half checkpoint that looks whole), the last K kept.
//! Saving a step again (a phase that ends on a periodic checkpoint's step) moves the old directory
//! aside before the new one takes its name, so a crash at any point leaves one whole checkpoint of
//! that step: the next listing puts back a set-aside one that was not replaced.

use std::path::{Path, PathBuf};

use anyhow::Context;

const PREFIX: &str = "step-";
const TEMP_PREFIX: &str = ".tmp-";
/// A checkpoint being replaced by a new one of the same step: `.replaced-step-XXXXXX-<pid>`.
const REPLACED_PREFIX: &str = ".replaced-";
/// Written last inside a checkpoint; its presence marks the directory complete.
pub const COMPLETE_MARKER: &str = "trainer.json";

pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

pub fn name_for(step: u64) -> String {
    format!("{PREFIX}{step:06}")
}

/// Write a checkpoint: `fill` writes every file into a temporary directory, which is then renamed
/// to `step-XXXXXX` (replacing an older one of the same step) and older checkpoints beyond `keep`
/// are deleted. Returns the final directory.
pub fn write_atomic(
    run_dir: &Path,
    step: u64,
    keep: usize,
    fill: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    let root = checkpoints_dir(run_dir);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let name = name_for(step);
    let temp = root.join(format!("{TEMP_PREFIX}{name}-{}", std::process::id()));
    if temp.exists() {
        std::fs::remove_dir_all(&temp)?;
    }
    std::fs::create_dir_all(&temp)?;
    if let Err(error) = fill(&temp) {
        let _ = std::fs::remove_dir_all(&temp);
        return Err(error.context(format!("writing checkpoint {name}")));
    }
    if !temp.join(COMPLETE_MARKER).exists() {
        let _ = std::fs::remove_dir_all(&temp);
        anyhow::bail!("checkpoint {name}: {COMPLETE_MARKER} was not written");
    }
    let target = root.join(&name);
    let replaced = root.join(format!("{REPLACED_PREFIX}{name}-{}", std::process::id()));
    if target.exists() {
        std::fs::rename(&target, &replaced)
            .with_context(|| format!("moving {} aside to replace it", target.display()))?;
    }
    std::fs::rename(&temp, &target).with_context(|| format!("renaming {} to {}", temp.display(), target.display()))?;
    if replaced.exists() {
        std::fs::remove_dir_all(&replaced).with_context(|| format!("deleting {}", replaced.display()))?;
    }
    prune(run_dir, keep)?;
    Ok(target)
}

/// Complete checkpoints, oldest first (after putting back a checkpoint whose replacement a crash
/// interrupted).
pub fn list(run_dir: &Path) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    let root = checkpoints_dir(run_dir);
    if !root.exists() {
        return Ok(Vec::new());
    }
    restore_interrupted_replacements(&root)?;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&root).with_context(|| format!("listing {}", root.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(step) = name.strip_prefix(PREFIX).and_then(|s| s.parse::<u64>().ok()) else { continue };
        if entry.path().join(COMPLETE_MARKER).exists() {
            out.push((step, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

pub fn latest(run_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    Ok(list(run_dir)?.pop().map(|(_, p)| p))
}

/// A `.replaced-step-N-*` directory is the old checkpoint of step N set aside while a new one took
/// its name: deleted when `step-N` is complete, else renamed back to `step-N`.
fn restore_interrupted_replacements(root: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(root).with_context(|| format!("listing {}", root.display()))? {
        let entry = entry?;
        let file_name = entry.file_name().to_string_lossy().to_string();
        let Some(rest) = file_name.strip_prefix(REPLACED_PREFIX) else { continue };
        let Some((name, _pid)) = rest.rsplit_once('-') else { continue };
        let target = root.join(name);
        if target.join(COMPLETE_MARKER).exists() {
            std::fs::remove_dir_all(entry.path()).with_context(|| format!("deleting {}", entry.path().display()))?;
        } else if entry.path().join(COMPLETE_MARKER).exists() {
            tracing::warn!("restoring {} (its replacement was interrupted)", target.display());
            if target.exists() {
                std::fs::remove_dir_all(&target)?;
            }
            std::fs::rename(entry.path(), &target)
                .with_context(|| format!("restoring {} from {}", target.display(), entry.path().display()))?;
        }
    }
    Ok(())
}

/// Delete complete checkpoints beyond the newest `keep`, and leftovers of interrupted writes.
pub fn prune(run_dir: &Path, keep: usize) -> anyhow::Result<()> {
    let all = list(run_dir)?;
    let excess = all.len().saturating_sub(keep.max(1));
    for (_, path) in &all[..excess] {
        std::fs::remove_dir_all(path).with_context(|| format!("deleting old checkpoint {}", path.display()))?;
    }
    let root = checkpoints_dir(run_dir);
    for entry in std::fs::read_dir(&root)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            tracing::warn!("removing incomplete checkpoint {}", entry.path().display());
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(run: &Path, step: u64, keep: usize) -> anyhow::Result<PathBuf> {
        write_atomic(run, step, keep, |dir| {
            std::fs::write(dir.join("payload"), step.to_string())?;
            std::fs::write(dir.join(COMPLETE_MARKER), "{}")?;
            Ok(())
        })
    }

    #[test]
    fn keeps_the_last_k_in_step_order() {
        let run = tempfile::tempdir().unwrap();
        for step in [5, 10, 15, 20] {
            write(run.path(), step, 2).unwrap();
        }
        let steps: Vec<u64> = list(run.path()).unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, vec![15, 20]);
        let latest = latest(run.path()).unwrap().unwrap();
        assert_eq!(latest.file_name().unwrap(), "step-000020");
        assert_eq!(std::fs::read_to_string(latest.join("payload")).unwrap(), "20");
    }

    #[test]
    fn a_failed_write_leaves_nothing_that_looks_whole() {
        let run = tempfile::tempdir().unwrap();
        write(run.path(), 1, 3).unwrap();
        let err = write_atomic(run.path(), 2, 3, |dir| {
            std::fs::write(dir.join("payload"), "half")?;
            anyhow::bail!("disk full")
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("disk full"));
        // Missing marker is refused too.
        assert!(write_atomic(run.path(), 3, 3, |dir| Ok(std::fs::write(dir.join("payload"), "x")?)).is_err());
        let steps: Vec<u64> = list(run.path()).unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, vec![1]);
        let names: Vec<String> = std::fs::read_dir(checkpoints_dir(run.path()))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, vec!["step-000001".to_string()]);
    }

    #[test]
    fn a_crashed_writer_leftover_is_ignored_then_removed() {
        let run = tempfile::tempdir().unwrap();
        let root = checkpoints_dir(run.path());
        // A writer killed after creating its temp dir, and a step dir without its marker.
        std::fs::create_dir_all(root.join(".tmp-step-000009-1")).unwrap();
        std::fs::create_dir_all(root.join("step-000009")).unwrap();
        assert!(latest(run.path()).unwrap().is_none());
        write(run.path(), 4, 2).unwrap();
        assert!(!root.join(".tmp-step-000009-1").exists());
        assert_eq!(latest(run.path()).unwrap().unwrap().file_name().unwrap(), "step-000004");
    }

    #[test]
    fn saving_a_step_again_replaces_it_and_a_crash_midway_keeps_one_whole() {
        let run = tempfile::tempdir().unwrap();
        let root = checkpoints_dir(run.path());
        write(run.path(), 7, 2).unwrap();
        std::fs::write(root.join("step-000007/payload"), "old").unwrap();
        write(run.path(), 7, 2).unwrap();
        assert_eq!(std::fs::read_to_string(root.join("step-000007/payload")).unwrap(), "7");
        let names = |root: &Path| -> Vec<String> {
            let mut n: Vec<String> = std::fs::read_dir(root)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(&root), vec!["step-000007".to_string()], "nothing is left beside the new one");

        // Killed after moving the old one aside, before the new one took its name: the old one comes back.
        std::fs::rename(root.join("step-000007"), root.join(".replaced-step-000007-42")).unwrap();
        std::fs::create_dir_all(root.join(".tmp-step-000007-42")).unwrap();
        let steps: Vec<u64> = list(run.path()).unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, vec![7]);
        assert_eq!(std::fs::read_to_string(root.join("step-000007/payload")).unwrap(), "7");
        // Killed after the new one took its name: the set-aside old one goes.
        std::fs::create_dir_all(root.join(".replaced-step-000007-43")).unwrap();
        std::fs::write(root.join(".replaced-step-000007-43").join(COMPLETE_MARKER), "{}").unwrap();
        assert_eq!(latest(run.path()).unwrap().unwrap().file_name().unwrap(), "step-000007");
        assert!(!root.join(".replaced-step-000007-43").exists());
    }
}
