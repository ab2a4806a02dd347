//! The plugin ABI: FFI-safe types, one `sabi_trait` per component kind, the root module a plugin
//! library exports, and the adapters on each side. Authors and host code use [`crate::api`].

mod host_side;
pub mod logging;
mod module;
mod plugin_side;
mod tensor;
mod traits;
mod types;

pub use host_side::{HostAlgorithm, HostCurriculum, HostPolicy, HostReward, HostSampler};
pub use logging::LogSink;
pub use module::{
    __root_module, Component, DECLARATION_MAGIC, DECLARATION_SYMBOL, PluginDeclaration, PluginModule, PluginModuleRef,
    Registry,
};
pub use plugin_side::guard;
pub use tensor::TensorHandle;
pub use traits::*;
pub use types::*;

impl HostPolicy {
    pub fn new(inner: PolicyBox, label: String) -> Self {
        HostPolicy { inner, label }
    }
}
impl HostAlgorithm {
    pub fn new(inner: AlgorithmBox, label: String) -> Self {
        HostAlgorithm { inner, label }
    }
}
impl HostCurriculum {
    pub fn new(inner: CurriculumBox, label: String) -> Self {
        HostCurriculum { inner, label }
    }
}
impl HostSampler {
    pub fn new(inner: SamplerBox, label: String) -> Self {
        HostSampler { inner, label }
    }
}
impl HostReward {
    pub fn new(inner: RewardBox, label: String) -> Self {
        HostReward { inner, label }
    }
}
