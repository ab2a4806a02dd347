//! The plugin ABI: FFI-safe types, one `sabi_trait` per component kind, the root module a plugin
//! library exports, the declaration read before a library is opened, and the adapters on each side.
//! Authors and host code use [`crate::api`]. Per-kind boilerplate comes from one table,
//! [`component_kinds!`](crate::component_kinds).

mod declaration;
mod host_side;
mod kinds;
pub mod logging;
mod module;
mod plugin_side;
mod tensor;
mod traits;
mod types;

pub use declaration::{DECLARATION_LEN, DECLARATION_MAGIC, DECLARATION_SECTION, DECLARATION_SYMBOL, PluginDeclaration};
pub use host_side::*;
pub use logging::LogSink;
pub use module::{__root_module, Component, PluginModule, PluginModuleRef, Registry};
pub use plugin_side::*;
pub use tensor::TensorHandle;
pub use traits::*;
pub use types::*;
