//! longrl-core: the tensor core shared by the host and every plugin, and the plugin ABI.
//!
//! - [`api`]: the component traits (policy, algorithm, curriculum, sampler, reward) in plain Rust.
//! - [`abi`]: their FFI-safe form (abi_stable), the root module and the boundary adapters.
//! - [`sdk`]: what plugin authors use: `export_plugin!`, config parsing and documentation.

pub mod abi;
pub mod api;
mod build_info;
pub mod device;
mod error;
pub mod memory;
pub mod sdk;

pub use build_info::{ABI_VERSION, BuildInfo, CORE_VERSION, LIBTORCH_VERSION, TCH_VERSION, c_strings};
pub use error::{Error, Result};
pub use tch;

#[doc(hidden)]
pub mod __private {
    pub use abi_stable;
}
