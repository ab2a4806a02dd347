//! Compiles the c10d shim (`csrc/`) against the same libtorch as torch-sys (`LIBTORCH`), with the
//! flags plugins/policy-qwen/build.rs uses (C++20, the libtorch's C++11 ABI setting).
//!
//! Gloo (always): torch's `ProcessGroupGloo.hpp` is guarded by `USE_C10D_GLOO` and includes gloo
//! headers the wheel lacks. They come from Debian's libgloo-dev, which `cargo xtask setup`
//! extracts into `.deps/gloo` (headers only: libgloo is never linked, libtorch_cpu carries gloo),
//! or, where set-up could not fetch it, from `csrc/gloo-decls`, the few declarations the header
//! needs. `LONGRL_GLOO_INCLUDE` overrides both.
//!
//! NCCL (feature `cuda`): `USE_C10D_NCCL`, nccl.h from the nvidia-nccl wheel beside torch, the
//! CUDA runtime headers of the nvidia wheels plus what they include and lack, `crt/` and
//! `nv/target` (`cargo xtask setup --cuda` puts them in `.deps/cuda-headers`), and libtorch_cuda.

use std::env;
use std::path::{Path, PathBuf};

const SOURCES: &[&str] = &["group.cpp", "collectives.cpp", "autograd.cpp", "gloo.cpp", "ffi.cpp"];
const HEADERS: &[&str] = &["group.h", "ffi_guard.h"];

fn main() {
    for file in SOURCES.iter().chain(HEADERS).chain(&["nccl.cpp"]) {
        println!("cargo:rerun-if-changed=csrc/{file}");
    }
    println!("cargo:rerun-if-changed=csrc/gloo-decls");
    for var in [
        "LIBTORCH",
        "LIBTORCH_CXX11_ABI",
        "LONGRL_GLOO_INCLUDE",
        "LONGRL_NCCL_INCLUDE",
        "LONGRL_CUDA_INCLUDE",
        "LONGRL_CUDA_EXTRA_INCLUDE",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let Some(libtorch) = env::var_os("LIBTORCH").map(PathBuf::from) else {
        fail("LIBTORCH is not set: run `cargo xtask setup` (it links .libtorch into the project's .venv)");
    };
    let include = libtorch.join("include");
    if !include.join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp").exists() {
        fail(&format!("{} has no c10d headers: run `cargo xtask setup`", include.display()));
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..").canonicalize().unwrap_or_else(|_| manifest.join("../.."));
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .files(SOURCES.iter().map(|f| manifest.join("csrc").join(f)))
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(gloo_include(&root, &manifest))
        .std("c++20")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .define("GLOG_USE_GLOG_EXPORT", None)
        .define("USE_C10D_GLOO", None)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-declarations")
        .flag_if_supported("-Wno-interference-size");
    let cuda = env::var_os("CARGO_FEATURE_CUDA").is_some();
    if cuda {
        build.file(manifest.join("csrc/nccl.cpp")).define("USE_C10D_NCCL", None).define("LONGRL_DIST_NCCL", None);
        for dir in cuda_includes(&root, &libtorch) {
            build.include(dir);
        }
    }
    build.compile("longrl_dist");

    let lib = libtorch.join("lib");
    println!("cargo:rustc-link-search=native={}", lib.display());
    if cuda {
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
    }
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

fn gloo_include(root: &Path, manifest: &Path) -> PathBuf {
    if let Some(dir) = env::var_os("LONGRL_GLOO_INCLUDE") {
        return PathBuf::from(dir);
    }
    let extracted = root.join(".deps/gloo/usr/include");
    let probe = extracted.join("gloo/rendezvous/store.h");
    if probe.exists() {
        // Watched only while present: a missing path would rerun this script on every build. A
        // later `cargo xtask setup` is not noticed, which is harmless: both header sets give the
        // same object code (the shim only passes gloo pointers through).
        println!("cargo:rerun-if-changed={}", probe.display());
        return extracted;
    }
    println!(
        "cargo:warning=no gloo headers in .deps/gloo (`cargo xtask setup` fetches them); building with csrc/gloo-decls"
    );
    manifest.join("csrc/gloo-decls")
}

/// nccl.h, the CUDA runtime headers, and crt/ and nv/ (missing from the runtime wheel).
fn cuda_includes(root: &Path, libtorch: &Path) -> Vec<PathBuf> {
    let site = libtorch.join("..");
    let pick = |var: &str, default: PathBuf, probe: &str| -> PathBuf {
        let dir = env::var_os(var).map(PathBuf::from).unwrap_or(default);
        if !dir.join(probe).exists() {
            fail(&format!(
                "the `cuda` feature needs {probe} in {} (set {var}, or run `cargo xtask setup --cuda`)",
                dir.display()
            ));
        }
        dir
    };
    vec![
        pick("LONGRL_NCCL_INCLUDE", site.join("nvidia/nccl/include"), "nccl.h"),
        pick("LONGRL_CUDA_INCLUDE", site.join("nvidia/cu13/include"), "cuda_runtime_api.h"),
        pick("LONGRL_CUDA_EXTRA_INCLUDE", root.join(".deps/cuda-headers/nvidia/cu13/include"), "nv/target"),
    ]
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
