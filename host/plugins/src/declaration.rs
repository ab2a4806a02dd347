//! Reading a library's plugin declaration from its file, without opening (and so running) it.

use std::fs::File;
use std::path::Path;

use longrl_core::BuildInfo;
use longrl_core::abi::{DECLARATION_SECTION, DECLARATION_SYMBOL, PluginDeclaration};
use object::read::ReadCache;
use object::{Object, ObjectSection, ObjectSymbol};

/// What the file says about itself.
pub enum Declared {
    /// A longrl plugin (of any ABI version from 2 on) built with this.
    Plugin(BuildInfo),
    /// A longrl plugin from before plugins declared themselves in a section (ABI v1 or older).
    LegacyPlugin,
    /// A shared library that does not declare itself a longrl plugin.
    NotAPlugin(String),
}

/// Read the declaration section of the object file at `path`. Only the headers, the section and
/// (when there is no section) the dynamic symbol table are read; the library is never loaded.
pub fn read(path: &Path) -> Result<Declared, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let cache = ReadCache::new(file);
    let object = object::File::parse(&cache).map_err(|e| format!("not a shared library ({e})"))?;
    if let Some(section) = object.section_by_name(DECLARATION_SECTION) {
        let data = section.data().map_err(|e| format!("cannot read its `{DECLARATION_SECTION}` section: {e}"))?;
        return Ok(match PluginDeclaration::parse(data) {
            Ok(build) => Declared::Plugin(build),
            Err(reason) => Declared::NotAPlugin(reason),
        });
    }
    if object.dynamic_symbols().any(|s| s.name() == Ok(DECLARATION_SYMBOL)) {
        return Ok(Declared::LegacyPlugin);
    }
    Ok(Declared::NotAPlugin(format!(
        "it has no `{DECLARATION_SECTION}` section declaring it one; plugins are made with longrl_core::export_plugin!"
    )))
}
