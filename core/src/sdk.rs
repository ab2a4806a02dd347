//! The plugin author SDK: config helpers and the `export_plugin!` macro.
//!
//! A plugin crate is its component types (each implementing one component trait of [`crate::api`]
//! and [`Component`](crate::abi::Component)) plus one line:
//!
//! ```ignore
//! longrl_core::export_plugin!(reward: [KeywordReward]);
//! ```

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::ConfigKey;
use crate::{Error, Result};

/// Parse a component's config table into its config struct (use `#[serde(deny_unknown_fields,
/// default)]` on it): unknown keys and bad values become errors naming the component and the
/// key's path inside its table (`reward/rule.routes[0].rule`).
pub fn parse_config<T: DeserializeOwned>(component: &str, config: &serde_json::Value) -> Result<T> {
    let config = if config.is_null() { serde_json::Value::Object(Default::default()) } else { config.clone() };
    serde_path_to_error::deserialize(config).map_err(|e| {
        let path = e.path().to_string();
        let key = if path.is_empty() || path == "." { component.to_string() } else { format!("{component}.{path}") };
        Error::config(key, e.into_inner())
    })
}

/// What [`config_keys`] reports for a key whose field has no doc comment (a test of the
/// workspace's plugins keeps it from shipping).
pub const UNDOCUMENTED: &str = "(undocumented)";

/// Document a config struct: every key of `T::default()` with its default value and the doc
/// comment of its field (`#[derive(JsonSchema)]` reads the doc comments; nothing else to keep in step).
pub fn config_keys<T: JsonSchema + Serialize + Default>() -> Vec<ConfigKey> {
    let defaults = serde_json::to_value(T::default()).unwrap_or_default();
    let serde_json::Value::Object(map) = defaults else { return Vec::new() };
    let schema = schemars::schema_for!(T);
    let properties = schema.get("properties");
    map.into_iter()
        .map(|(key, default)| {
            let doc = properties.and_then(|p| p.get(&key)).map(field_doc).filter(|d| !d.is_empty());
            ConfigKey { key, default, doc: doc.unwrap_or_else(|| UNDOCUMENTED.to_string()) }
        })
        .collect()
}

/// A field's doc comment on one line (schemars may split it into a title and a description).
fn field_doc(property: &serde_json::Value) -> String {
    let part = |name: &str| property.get(name).and_then(|v| v.as_str()).unwrap_or_default();
    let text = format!("{} {}", part("title"), part("description"));
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The symbol abi_stable looks up for the root module (checked against abi_stable by a unit test).
#[doc(hidden)]
pub const ROOT_MODULE_LOADER_NAME: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// Export a plugin library's components: `export_plugin!(reward: [A, B], sampler: [C]);`
///
/// Kinds: `policy`, `algorithm`, `curriculum`, `sampler`, `reward`. Each type implements the kind's
/// trait and [`Component`](crate::abi::Component).
#[macro_export]
macro_rules! export_plugin {
    ($($kind:ident : [$($component:ty),* $(,)?]),* $(,)?) => {
        $crate::export_plugin!(@abi_version $crate::ABI_VERSION; $($kind: [$($component),*]),*);
    };
    // Hidden: lets the host's tests build a plugin that declares another ABI version.
    (@abi_version $abi:expr; $($kind:ident : [$($component:ty),* $(,)?]),* $(,)?) => {
        #[doc(hidden)]
        fn __longrl_registry() -> $crate::abi::Registry {
            $crate::abi::Registry::new() $($( .$kind::<$component>() )*)*
        }

        /// What this library was built with, in a section of its own: the longrl host reads it from
        /// the file and opens only libraries that carry one (see `longrl_core::abi::PluginDeclaration`).
        /// Exported, so that no linker drops it.
        #[used]
        #[unsafe(no_mangle)]
        #[cfg_attr(target_vendor = "apple", unsafe(link_section = "__DATA,__longrl_plugin"))]
        #[cfg_attr(windows, unsafe(link_section = ".lrlplug"))]
        #[cfg_attr(not(any(target_vendor = "apple", windows)), unsafe(link_section = ".longrl_plugin"))]
        pub static LONGRL_PLUGIN_DECLARATION: $crate::abi::PluginDeclaration =
            $crate::abi::PluginDeclaration::new($abi);

        #[doc(hidden)]
        fn __longrl_root_module() -> $crate::abi::PluginModuleRef {
            $crate::abi::__root_module(__longrl_registry)
        }

        #[doc(hidden)]
        #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
        pub static __LONGRL_ROOT_MODULE_LOADER: $crate::__private::abi_stable::library::LibHeader = {
            extern "C" fn erased() -> $crate::__private::abi_stable::library::RootModuleResult {
                $crate::__private::abi_stable::library::__call_root_module_loader(__longrl_root_module)
            }
            // SAFETY: this is what abi_stable's `export_root_module` expands to, with the paths
            // routed through longrl-core so plugin crates need no direct abi_stable dependency.
            unsafe {
                $crate::__private::abi_stable::library::LibHeader::from_constructor::<$crate::abi::PluginModuleRef>(
                    erased,
                    $crate::__private::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, serde::Deserialize, JsonSchema, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Demo {
        /// The phrase
        /// to look for.
        phrase: String,
        weight: f32,
    }

    #[test]
    fn root_module_symbol_matches_abi_stable() {
        assert_eq!(ROOT_MODULE_LOADER_NAME, abi_stable::library::ROOT_MODULE_LOADER_NAME);
    }

    #[test]
    fn unknown_config_key_is_named() {
        let err = parse_config::<Demo>("reward/demo", &serde_json::json!({"phrasee": "x"})).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("reward/demo") && text.contains("phrasee"), "{text}");
    }

    #[test]
    fn bad_config_value_names_the_key_and_component() {
        let err =
            parse_config::<Demo>("reward/demo", &serde_json::json!({"phrase": "x", "weight": "heavy"})).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`reward/demo.weight`") && text.contains("heavy"), "{text}");
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Nested {
            #[allow(dead_code)]
            inner: Vec<Demo>,
        }
        let err =
            parse_config::<Nested>("algorithm/x", &serde_json::json!({"inner": [{}, {"weight": true}]})).unwrap_err();
        assert!(err.to_string().contains("`algorithm/x.inner[1].weight`"), "{err}");
    }

    #[test]
    fn config_docs_come_from_doc_comments() {
        let keys = config_keys::<Demo>();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].key, "phrase");
        assert_eq!(keys[0].doc, "The phrase to look for.");
        assert_eq!(keys[0].default, "");
        assert_eq!(keys[1].doc, UNDOCUMENTED);
    }
}
