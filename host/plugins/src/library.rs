//! One plugin library: its declaration, checked against this host, and its root module.

use std::path::{Path, PathBuf};

use abi_stable::library::{LibraryError, lib_header_from_path};
use abi_stable::std_types::RResult;
use longrl_core::BuildInfo;
use longrl_core::abi::{DECLARATION_SYMBOL, LogSink, PluginModuleRef};
use longrl_core::api::{ComponentContext, ComponentInfo, ComponentKind};

use super::declaration::{self, Declared};

/// Why a library could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot open library: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("{path}: not a longrl plugin ({reason})")]
    NotAPlugin { path: PathBuf, reason: String },
    #[error("{path}: incompatible plugin: {reason}")]
    VersionMismatch { path: PathBuf, reason: String },
    #[error("{path}: incompatible plugin: {reason}")]
    LibtorchMismatch { path: PathBuf, reason: String },
    #[error(
        "{path}: plugin ABI layout mismatch (the plugin's types differ from this host's; rebuild it against the same longrl-core): {reason}"
    )]
    LayoutMismatch { path: PathBuf, reason: String },
    #[error("two plugins provide {kind} `{name}`: {first} and {second}")]
    Duplicate { kind: ComponentKind, name: String, first: PathBuf, second: PathBuf },
    #[error("{path}: the plugin's component list is malformed: {reason}")]
    BadComponents { path: PathBuf, reason: String },
}

pub struct PluginLibrary {
    path: PathBuf,
    build: BuildInfo,
    module: PluginModuleRef,
    components: Vec<ComponentInfo>,
}

fn short(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

impl PluginLibrary {
    /// Check the library's declaration (see [`check`]), then open it and read its root module.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let build = check(path)?;
        let path = path.to_path_buf();
        // Opening runs the library's initialisers: only a declared, compatible plugin gets here.
        let module = lib_header_from_path(&path)
            .and_then(|header| header.init_root_module::<PluginModuleRef>())
            .map_err(|error| classify(&path, error))?;
        (module.set_log_sink())(LogSink::to_host());
        let json = (module.components())();
        let components: Vec<ComponentInfo> = serde_json::from_str(&json)
            .map_err(|e| LoadError::BadComponents { path: path.clone(), reason: e.to_string() })?;
        tracing::debug!("loaded {} ({} components)", path.display(), components.len());
        Ok(PluginLibrary { path, build, module, components })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn build_info(&self) -> &BuildInfo {
        &self.build
    }

    pub fn components(&self) -> &[ComponentInfo] {
        &self.components
    }

    /// Call a factory of the root module with the component's JSON config, labelling errors.
    pub(super) fn create<T>(
        &self,
        kind: ComponentKind,
        name: &str,
        config: &serde_json::Value,
        ctx: &ComponentContext,
        factory: impl FnOnce(
            PluginModuleRef,
            abi_stable::std_types::RStr<'_>,
            abi_stable::std_types::RStr<'_>,
            abi_stable::std_types::RStr<'_>,
        ) -> RResult<T, abi_stable::std_types::RString>,
    ) -> anyhow::Result<(T, String)> {
        let label = format!("{kind}/{name} ({})", short(&self.path));
        let config = serde_json::to_string(config)?;
        let ctx = serde_json::to_string(ctx)?;
        match factory(self.module, name.into(), config.as_str().into(), ctx.as_str().into()) {
            RResult::ROk(component) => Ok((component, label)),
            RResult::RErr(message) => anyhow::bail!("plugin {label}: create: {message}"),
        }
    }
}

/// Read the library's declaration from its file and check it against this host: nothing of the
/// library runs before it has shown it is a longrl plugin this host can use.
pub fn check(path: &Path) -> Result<BuildInfo, LoadError> {
    let path = path.to_path_buf();
    let build = match declaration::read(&path) {
        Ok(Declared::Plugin(build)) => build,
        Ok(Declared::NotAPlugin(reason)) => return Err(LoadError::NotAPlugin { path, reason }),
        Ok(Declared::LegacyPlugin) => {
            let host = BuildInfo::current();
            let reason = format!(
                "built against longrl plugin ABI v1 or older (it declares itself with the `{DECLARATION_SYMBOL}` symbol only, not a section), but this host speaks ABI v{} (longrl-core {}); rebuild the plugin against longrl-core {}",
                host.abi_version, host.core_version, host.core_version
            );
            return Err(LoadError::VersionMismatch { path, reason });
        }
        Err(reason) => return Err(LoadError::Open { path, reason }),
    };
    match BuildInfo::current().incompatibility(&build) {
        None => Ok(build),
        Some(reason) if reason.contains("libtorch") => Err(LoadError::LibtorchMismatch { path, reason }),
        Some(reason) => Err(LoadError::VersionMismatch { path, reason }),
    }
}

fn classify(path: &Path, error: LibraryError) -> LoadError {
    let path = path.to_path_buf();
    match error {
        LibraryError::AbiInstability(reason) => {
            LoadError::LayoutMismatch { path, reason: first_line(&reason.to_string()) }
        }
        LibraryError::IncompatibleVersionNumber { library_name, expected_version, actual_version } => {
            LoadError::VersionMismatch {
                path,
                reason: format!(
                    "{library_name}: host expects interface {expected_version}, plugin has {actual_version}"
                ),
            }
        }
        other => LoadError::NotAPlugin { path, reason: first_line(&other.to_string()) },
    }
}

fn first_line(text: &str) -> String {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or(text).trim().to_string()
}
