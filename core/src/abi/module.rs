//! The root module every plugin library exports and the registry behind it.

use std::sync::OnceLock;

use abi_stable::library::RootModule;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RStr, RString};
use abi_stable::{StableAbi, declare_root_module_statics, package_version_strings};

use super::logging::LogSink;
use super::plugin_side::*;
use super::traits::*;
use crate::api::{self, ComponentContext, ComponentInfo, ComponentKind};
use crate::{Error, Result};

/// How a component type describes and builds itself. Implement it next to the component trait.
pub trait Component: Sized + 'static {
    fn info() -> ComponentInfo;
    fn create(config: &serde_json::Value, context: &ComponentContext) -> Result<Self>;
}

/// Makes a component, already behind its FFI guard, from its config table and the run context.
type Factory<B> = Box<dyn Fn(&serde_json::Value, &ComponentContext) -> Result<B> + Send + Sync>;

fn check_kind<C: Component>(kind: ComponentKind) -> ComponentInfo {
    let info = C::info();
    assert_eq!(info.kind, kind, "component {} is registered as a {kind}", info.name);
    info
}

fn find<'a, B>(list: &'a [(String, Factory<B>)], kind: ComponentKind, name: &str) -> Result<&'a Factory<B>> {
    list.iter().find(|(n, _)| n == name).map(|(_, f)| f).ok_or_else(|| {
        let known: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
        let mut message = format!("this library has no {kind} named `{name}` (it has: {})", known.join(", "));
        if !cfg!(feature = "tensor") && matches!(kind, ComponentKind::Policy | ComponentKind::Algorithm) {
            message.push_str(&format!(
                "; {kind}s need longrl-core's `tensor` feature, which this library was built without"
            ));
        }
        Error::msg(message)
    })
}

fn parse_inputs(config: RStr<'_>, context: RStr<'_>) -> Result<(serde_json::Value, ComponentContext)> {
    let config: serde_json::Value = serde_json::from_str(config.as_str())?;
    let context: ComponentContext = serde_json::from_str(context.as_str())?;
    Ok((config, context))
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

fn registry() -> &'static Registry {
    REGISTRY.get().expect("longrl plugin registry used before the root module was loaded")
}

extern "C" fn components() -> RString {
    match guard(|| Ok(RString::from(serde_json::to_string(registry().infos())?))) {
        RResult::ROk(json) => json,
        RResult::RErr(_) => "[]".into(),
    }
}

extern "C" fn set_log_sink(sink: LogSink) {
    super::logging::install_plugin_logger(sink);
}

macro_rules! root_module {
    ($($(#[$gate:meta])* $kind:ident: $api:ident => $abi:ident, $boxed:ident, $guard:ident, $host:ident, $factory:ident;)*) => {
        /// The abi_stable root module: one factory per kind, the component listing and the log sink.
        ///
        /// Its fields exist whatever the library's features: a library without tensor support has
        /// policy and algorithm factories that only say so.
        #[repr(C)]
        #[derive(StableAbi)]
        #[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
        #[sabi(missing_field(panic))]
        pub struct PluginModule {
            $(
                #[doc = concat!("Make a ", stringify!($kind), " from (name, config JSON, context JSON).")]
                pub $factory: extern "C" fn(RStr<'_>, RStr<'_>, RStr<'_>) -> RResult<$boxed, RString>,
            )*
            /// JSON array of [`ComponentInfo`].
            pub components: extern "C" fn() -> RString,
            /// Route the plugin's `tracing` events to the host.
            #[sabi(last_prefix_field)]
            pub set_log_sink: extern "C" fn(LogSink),
        }

        /// The components of one plugin library. Built by `export_plugin!`.
        #[derive(Default)]
        pub struct Registry {
            infos: Vec<ComponentInfo>,
            $( $kind: Vec<(String, Factory<$boxed>)>, )*
        }

        impl Registry {
            $(
                $(#[$gate])*
                #[doc = concat!("Register a ", stringify!($kind), " type.")]
                pub fn $kind<C: Component + api::$api>(mut self) -> Self {
                    let info = check_kind::<C>(ComponentKind::$api);
                    let make: Factory<$boxed> = Box::new(|config, context| {
                        let component: Box<dyn api::$api> = Box::new(C::create(config, context)?);
                        Ok($abi::from_value($guard(component), TD_Opaque))
                    });
                    self.$kind.push((info.name.clone(), make));
                    self.infos.push(info);
                    self
                }
            )*
        }

        $(
            extern "C" fn $factory(name: RStr<'_>, config: RStr<'_>, context: RStr<'_>) -> RResult<$boxed, RString> {
                guard(|| {
                    let (config, context) = parse_inputs(config, context)?;
                    find(&registry().$kind, ComponentKind::$api, name.as_str())?(&config, &context)
                })
            }
        )*

        /// Called by the `export_plugin!` root-module function: installs the registry and builds the module.
        #[doc(hidden)]
        pub fn __root_module(make_registry: fn() -> Registry) -> PluginModuleRef {
            REGISTRY.get_or_init(make_registry);
            use abi_stable::prefix_type::PrefixTypeTrait;
            PluginModule { $( $factory, )* components, set_log_sink }.leak_into_prefix()
        }
    };
}
crate::component_kinds!(root_module);

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "longrl_plugin";
    const NAME: &'static str = "longrl_plugin";
    const VERSION_STRINGS: abi_stable::sabi_types::VersionStrings = package_version_strings!();
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn infos(&self) -> &[ComponentInfo] {
        &self.infos
    }
}
