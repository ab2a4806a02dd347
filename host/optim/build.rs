//! Compiles `csrc/kernels.cpp`, the libtorch calls behind `src/kernels.rs` (foreach and fused
//! AdamW operators tch has no binding for), against the same libtorch as torch-sys (the `LIBTORCH`
//! directory), with the flags torch-sys and torch.utils.cpp_extension use: the libtorch's C++11
//! ABI setting (`LIBTORCH_CXX11_ABI`, default 1, as torch-sys) and C++20, which torch 2.13's
//! headers expect. The operators dispatch at run time, so the CUDA kernels are used whenever the
//! tensors are on CUDA without this shim linking libtorch_cuda.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/kernels.cpp");
    println!("cargo:rerun-if-changed=csrc/ffi_guard.h");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let Some(libtorch) = env::var_os("LIBTORCH").map(PathBuf::from) else {
        panic!("LIBTORCH is not set: run `cargo xtask setup` (it links .libtorch into the project's .venv)");
    };
    let include = libtorch.join("include");
    if !include.join("ATen/ops/_fused_adamw.h").exists() {
        panic!("{} has no libtorch headers with `_fused_adamw_`: run `cargo xtask setup`", include.display());
    }
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    let lib = libtorch.join("lib");
    cc::Build::new()
        .cpp(true)
        .file("csrc/kernels.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .std("c++20")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .define("GLOG_USE_GLOG_EXPORT", None)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-declarations")
        .compile("longrl_optim_kernels");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
