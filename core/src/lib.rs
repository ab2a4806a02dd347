//! longrl-core: the tensor core shared by the host and every plugin, and the plugin ABI.
//!
//! - [`api`]: the component traits (policy, algorithm, curriculum, sampler, reward) in plain Rust.
//! - [`abi`]: their FFI-safe form (abi_stable), the root module and the boundary adapters.
//! - [`sdk`]: what plugin authors use: `export_plugin!`, config parsing and documentation.
//!
//! The `tensor` feature (on by default) brings tch and libtorch: policies and algorithms need it.
//! Samplers, curricula and rewards build without it (`default-features = false`), and such a
//! plugin loads into a host of any libtorch.

pub mod abi;
pub mod api;
mod build_info;
#[cfg(feature = "tensor")]
pub mod device;
mod error;
pub mod memory;
pub mod sdk;

#[cfg(feature = "tensor")]
pub use build_info::LIBTORCH_VERSION;
pub use build_info::{ABI_VERSION, BuildInfo, CORE_VERSION, TCH_VERSION, TensorBuild};
pub use error::{Error, Result};
#[cfg(feature = "tensor")]
pub use tch;

#[doc(hidden)]
pub mod __private {
    pub use abi_stable;
}
