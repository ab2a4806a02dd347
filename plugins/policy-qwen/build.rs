//! Compiles `csrc/recompute.cpp`, the libtorch autograd function behind `src/recompute.rs`,
//! `csrc/attention.cpp`, the merged multi-part attention behind `src/attention.rs`,
//! `csrc/device.cpp`, the accelerator memory statistics behind `src/device.rs`, and
//! `csrc/onednn.cpp`, the packed-weight oneDNN linear behind `src/onednn.rs`,
//! against the same libtorch as torch-sys (the `LIBTORCH` directory that `.cargo/config.toml`
//! sets), with the flags torch-sys and torch.utils.cpp_extension use: the libtorch's C++11 ABI
//! setting (`LIBTORCH_CXX11_ABI`, default 1, as torch-sys) and C++20, which torch 2.13's headers
//! expect.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/recompute.cpp");
    println!("cargo:rerun-if-changed=csrc/onednn.cpp");
    println!("cargo:rerun-if-changed=csrc/attention.cpp");
    println!("cargo:rerun-if-changed=csrc/device.cpp");
    println!("cargo:rerun-if-changed=csrc/ffi_guard.h");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let Some(libtorch) = env::var_os("LIBTORCH").map(PathBuf::from) else {
        panic!("LIBTORCH is not set: run `cargo xtask setup` (it links .libtorch into the project's .venv)");
    };
    let include = libtorch.join("include");
    if !include.join("torch/csrc/autograd/custom_function.h").exists() {
        panic!("{} has no libtorch headers: run `cargo xtask setup`", include.display());
    }
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    let lib = libtorch.join("lib");
    cc::Build::new()
        .cpp(true)
        .file("csrc/recompute.cpp")
        .file("csrc/onednn.cpp")
        .file("csrc/attention.cpp")
        .file("csrc/device.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .std("c++20")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .define("GLOG_USE_GLOG_EXPORT", None)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-declarations")
        .compile("longrl_recompute");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
