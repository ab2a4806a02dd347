//! `cargo xtask setup`: what building and testing need on a fresh machine, without root.
//!
//! - `.venv` with torch 2.13.0 and the test oracles, and the `.libtorch` link to its torch.
//! - `.deps/gloo`: the gloo headers of Debian's libgloo-dev, which torch's ProcessGroupGloo.hpp
//!   includes and the wheel lacks (headers only: libgloo is never linked, libtorch carries gloo).
//!   Where apt cannot deliver them, the shim builds with core/dist/csrc/gloo-decls instead.
//! - `.deps/cuda-headers` (with `--cuda`, or when an NVIDIA driver is present): the CUDA headers
//!   the runtime wheel lacks (`crt/` from nvidia-cuda-crt, `nv/target` from nvidia-cuda-cccl),
//!   which the NCCL build of core/dist needs beside the wheel's nccl.h and cuda_runtime.h.
//!
//! Idempotent: each part records what it installed in a stamp; when every stamp matches, set-up
//! takes milliseconds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// torch is pinned to what tch 0.26 links against; the rest are test oracles.
const REQUIREMENTS: &[&str] =
    &["torch==2.13.0", "transformers>=4.49", "numpy", "openai>=1.0", "safetensors", "tokenizers"];
const STAMP: &str = ".longrl-setup";
/// The Debian package with gloo's headers (bookworm: 0.0~git20220518.5b14351-3).
const GLOO_PACKAGE: &str = "libgloo-dev";
/// For the CUDA 13.0 headers of torch 2.13's wheels: `crt/host_config.h` (included by
/// cuda_runtime.h) and libcu++'s `nv/target` (included by cuda_fp16.h), the versions cuda-toolkit
/// 13.0 lists.
const CUDA_HEADERS: &[&str] = &["nvidia-cuda-crt==13.0.88.*", "nvidia-cuda-cccl==13.0.85"];

#[derive(Debug, Default, Clone, Copy)]
pub struct Options {
    /// Install the CUDA build's headers even without an NVIDIA driver on this machine.
    pub cuda: bool,
}

pub fn venv_python(root: &Path) -> PathBuf {
    root.join(".venv/bin/python")
}

pub fn run(root: &Path) -> Result<()> {
    run_with(root, Options::default())
}

pub fn run_with(root: &Path, options: Options) -> Result<()> {
    python_env(root)?;
    gloo_headers(root)?;
    if options.cuda || nvidia_driver_present() {
        cuda_headers(root)?;
    }
    Ok(())
}

fn python_env(root: &Path) -> Result<()> {
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
    let torch_dir = torch_dir(root)?;
    let target = torch_dir.strip_prefix(root).map(Path::to_path_buf).unwrap_or(torch_dir);
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(&link).with_context(|| format!("replacing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(&target, &link).with_context(|| format!("linking {}", link.display()))?;
    std::fs::write(&stamp, wanted)?;
    eprintln!("xtask setup: libtorch linked at {} -> {}", link.display(), target.display());
    Ok(())
}

fn torch_dir(root: &Path) -> Result<PathBuf> {
    let out = Command::new(venv_python(root))
        .args(["-c", "import torch, pathlib; print(pathlib.Path(torch.__file__).parent)"])
        .output()
        .context("importing torch")?;
    if !out.status.success() {
        bail!("torch does not import: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// Fetches libgloo-dev with apt and unpacks its headers into `.deps/gloo/usr/include`, as any
/// user: `apt-get download` needs no root when the package lists are present; without lists it
/// reads apt's configured sources into a private list directory (`.deps/apt`, no root either).
/// Any failure leaves the declarations fallback in place and says so; it never fails set-up.
fn gloo_headers(root: &Path) -> Result<()> {
    let deps = root.join(".deps");
    let dest = deps.join("gloo");
    let stamp = dest.join(".longrl-stamp");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == GLOO_PACKAGE)
        && dest.join("usr/include/gloo/rendezvous/store.h").exists()
    {
        return Ok(());
    }
    match fetch_gloo(&deps, &dest) {
        Ok(version) => {
            std::fs::write(&stamp, GLOO_PACKAGE)?;
            eprintln!("xtask setup: gloo headers of {GLOO_PACKAGE} {version} in {}", dest.display());
        }
        Err(e) => eprintln!(
            "xtask setup: note: could not fetch {GLOO_PACKAGE} ({e:#}); core/dist builds with its own gloo \
             declarations (core/dist/csrc/gloo-decls), which is all it needs"
        ),
    }
    Ok(())
}

fn fetch_gloo(deps: &Path, dest: &Path) -> Result<String> {
    for tool in ["apt-get", "dpkg-deb"] {
        if !on_path(tool) {
            bail!("{tool} is not installed (not a Debian-based system)");
        }
    }
    let work = deps.join("gloo.download");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let downloaded = quiet(Command::new("apt-get").current_dir(&work).args(["download", GLOO_PACKAGE]));
    if let Err(first) = downloaded {
        eprintln!(
            "xtask setup: apt-get download {GLOO_PACKAGE} failed ({first:#}); reading apt's sources into .deps/apt"
        );
        let lists = deps.join("apt/lists");
        let cache = deps.join("apt/cache");
        std::fs::create_dir_all(lists.join("partial"))?;
        std::fs::create_dir_all(cache.join("archives/partial"))?;
        let private = [format!("-oDir::State::Lists={}", lists.display()), format!("-oDir::Cache={}", cache.display())];
        quiet(Command::new("apt-get").args(&private).arg("update")).context("apt-get update into .deps/apt")?;
        quiet(Command::new("apt-get").current_dir(&work).args(&private).args(["download", GLOO_PACKAGE]))
            .context("apt-get download with the private lists")?;
        // The lists served their one purpose; 25 MB less in the checkout.
        let _ = std::fs::remove_dir_all(deps.join("apt"));
    }
    let deb = std::fs::read_dir(&work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download left no .deb")?;
    let unpacked = deps.join("gloo.unpacked");
    let _ = std::fs::remove_dir_all(&unpacked);
    quiet(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked)).context("dpkg-deb -x")?;
    if !unpacked.join("usr/include/gloo/rendezvous/store.h").exists() {
        bail!("{} has no usr/include/gloo", deb.display());
    }
    // Headers only: no libgloo.so within reach of the linker.
    let _ = std::fs::remove_dir_all(unpacked.join("usr/lib"));
    let _ = std::fs::remove_dir_all(dest);
    std::fs::rename(&unpacked, dest)?;
    let _ = std::fs::remove_dir_all(&work);
    let name = deb.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(name.split('_').nth(1).unwrap_or("?").replace("%3a", ":"))
}

/// The CUDA headers missing beside the wheel's nccl.h and CUDA runtime headers, installed with pip
/// into `.deps/cuda-headers` (not into .venv, which stays exactly what the requirements say).
fn cuda_headers(root: &Path) -> Result<()> {
    let dest = root.join(".deps/cuda-headers");
    let stamp = dest.join(".longrl-stamp");
    let wanted = CUDA_HEADERS.join("\n");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(());
    }
    let torch = torch_dir(root)?;
    let nccl = torch.join("../nvidia/nccl/include/nccl.h");
    if !torch.join("lib/libtorch_cuda.so").exists() || !nccl.exists() {
        bail!(
            "the NCCL build needs torch's CUDA wheel (libtorch_cuda.so and nvidia-nccl's nccl.h beside {})",
            torch.display()
        );
    }
    eprintln!("xtask setup: installing {} into {}", CUDA_HEADERS.join(" "), dest.display());
    let _ = std::fs::remove_dir_all(&dest);
    status(
        Command::new(venv_python(root))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--target"])
            .arg(&dest)
            .args(CUDA_HEADERS),
    )
    .context("pip install of the CUDA headers")?;
    for header in ["crt/host_config.h", "nv/target"] {
        if !dest.join("nvidia/cu13/include").join(header).exists() {
            bail!("{} did not provide nvidia/cu13/include/{header} in {}", CUDA_HEADERS.join(" "), dest.display());
        }
    }
    std::fs::write(&stamp, wanted)?;
    Ok(())
}

fn nvidia_driver_present() -> bool {
    Path::new("/proc/driver/nvidia/version").exists()
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
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

/// Runs a command whose output matters only when it fails (then its last lines are the error).
fn quiet(cmd: &mut Command) -> Result<()> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("could not start {cmd:?}"))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        bail!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    Ok(())
}
