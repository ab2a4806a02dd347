//! One plugin library: its declaration, checked against this host, and its root module.

use std::path::{Path, PathBuf};

use abi_stable::library::{LibraryError, lib_header_from_path};
use abi_stable::std_types::RResult;
use longrl_core::BuildInfo;
use longrl_core::abi::{DECLARATION_MAGIC, DECLARATION_SYMBOL, LogSink, PluginDeclaration, PluginModuleRef};
use longrl_core::api::{ComponentContext, ComponentInfo, ComponentKind};

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
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let path = path.to_path_buf();
        let build = read_declaration(&path)?;
        if let Some(reason) = BuildInfo::current().incompatibility(&build) {
            return Err(if reason.contains("libtorch") {
                LoadError::LibtorchMismatch { path, reason }
            } else {
                LoadError::VersionMismatch { path, reason }
            });
        }
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

/// Read the C-layout declaration with libloading, before abi_stable touches the library.
fn read_declaration(path: &Path) -> Result<BuildInfo, LoadError> {
    // SAFETY: opening a shared library runs its initialisers; plugin paths are chosen by the user.
    let library = unsafe { libloading::Library::new(path) }
        .map_err(|e| LoadError::Open { path: path.to_path_buf(), reason: e.to_string() })?;
    let symbol = format!("{DECLARATION_SYMBOL}\0");
    // SAFETY: the symbol, when present, is the static `PluginDeclaration` made by `export_plugin!`.
    let declaration: *const PluginDeclaration =
        match unsafe { library.get::<*const PluginDeclaration>(symbol.as_bytes()) } {
            Ok(sym) => *sym,
            Err(_) => {
                return Err(LoadError::NotAPlugin {
                    path: path.to_path_buf(),
                    reason: format!(
                        "it exports no `{DECLARATION_SYMBOL}` symbol; plugins are made with longrl_core::export_plugin!"
                    ),
                });
            }
        };
    // SAFETY: the pointer is the address of the static; the magic check guards against a foreign
    // library that happens to export the same name.
    let declaration = unsafe { &*declaration };
    if declaration.magic != DECLARATION_MAGIC {
        return Err(LoadError::NotAPlugin {
            path: path.to_path_buf(),
            reason: format!("`{DECLARATION_SYMBOL}` has the wrong magic number"),
        });
    }
    // SAFETY: a declaration with the right magic was made by export_plugin!, with valid C strings.
    let build = unsafe { declaration.build_info() };
    // Plugins are never unloaded: their code may still be referenced by tensors or log callbacks.
    std::mem::forget(library);
    Ok(build)
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
