//! The component traits in plain Rust: what plugin authors implement and what the host calls.
//!
//! The FFI layer ([`crate::abi`]) carries these across the cdylib boundary; neither side sees it.

mod algorithm;
mod component;
mod curriculum;
mod policy;
mod reward;
mod sampler;

pub use algorithm::*;
pub use component::*;
pub use curriculum::*;
pub use policy::*;
pub use reward::*;
pub use sampler::*;
