//! `cargo xtask setup`: the project-local Python environment and the `.libtorch` link.
//!
//! Idempotent: a stamp records what was installed; when it matches, set-up takes milliseconds.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// torch is pinned to what tch 0.26 links against; the rest are test oracles.
const REQUIREMENTS: &[&str] =
    &["torch==2.13.0", "transformers>=4.49", "numpy", "openai>=1.0", "safetensors", "tokenizers"];
const STAMP: &str = ".longrl-setup";

pub fn venv_python(root: &Path) -> PathBuf {
    root.join(".venv/bin/python")
}

pub fn run(root: &Path) -> Result<()> {
    let venv = root.join(".venv");
    let python = venv_python(root);
    let stamp = venv.join(STAMP);
    let wanted = REQUIREMENTS.join("\n");
    let link = root.join(".libtorch");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) && link.join("lib").is_dir() {
        return Ok(());
    }
    if !python.exists() {
        eprintln!("xtask setup: creating {}", venv.display());
        let base = find_base_python()?;
        status(Command::new(&base).args(["-m", "venv"]).arg(&venv)).context("creating the virtual environment")?;
    }
    eprintln!("xtask setup: installing {} (first time only; torch is large)", REQUIREMENTS.join(" "));
    status(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(REQUIREMENTS),
    )
    .context("pip install")?;
    let out = Command::new(&python)
        .args(["-c", "import torch, pathlib; print(pathlib.Path(torch.__file__).parent)"])
        .output()
        .context("importing torch")?;
    if !out.status.success() {
        bail!("torch does not import: {}", String::from_utf8_lossy(&out.stderr));
    }
    let torch_dir = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    let target = torch_dir.strip_prefix(root).map(Path::to_path_buf).unwrap_or(torch_dir);
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(&link).with_context(|| format!("replacing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(&target, &link).with_context(|| format!("linking {}", link.display()))?;
    std::fs::write(&stamp, wanted)?;
    eprintln!("xtask setup: libtorch linked at {} -> {}", link.display(), target.display());
    Ok(())
}

fn find_base_python() -> Result<PathBuf> {
    for candidate in ["python3", "python"] {
        let ok = Command::new(candidate)
            .args(["-c", "import sys, venv; sys.exit(0 if sys.version_info >= (3, 10) else 1)"])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(PathBuf::from(candidate));
        }
    }
    bail!("set-up needs Python 3.10 or newer with the venv module (python3 -m venv)")
}

fn status(cmd: &mut Command) -> Result<()> {
    let s = cmd.status().with_context(|| format!("could not start {cmd:?}"))?;
    if !s.success() {
        bail!("{cmd:?} failed ({s})");
    }
    Ok(())
}
