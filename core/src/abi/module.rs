//! The root module every plugin library exports, the plain-C declaration read before it, and the
//! registry behind both.

use std::ffi::{CStr, c_char};
use std::sync::OnceLock;

use abi_stable::library::RootModule;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, RResult, RStr, RString};
use abi_stable::{StableAbi, declare_root_module_statics, package_version_strings};

use super::logging::LogSink;
use super::plugin_side::*;
use super::traits::*;
use crate::api::{self, ComponentContext, ComponentInfo, ComponentKind};
use crate::{BuildInfo, Error, Result};

/// Name of the plain-C symbol every longrl plugin exports (read with libloading before anything else).
pub const DECLARATION_SYMBOL: &str = "LONGRL_PLUGIN_DECLARATION";
/// First field of the declaration: tells a longrl plugin from any other library exporting the name.
pub const DECLARATION_MAGIC: u64 = 0x4c4f_4e47_524c_504c; // "LONGRLPL"

/// A C-layout record of what the plugin was built with. Its layout never changes, so a host of any
/// version can read it and explain a mismatch before touching the abi_stable module.
#[repr(C)]
pub struct PluginDeclaration {
    pub magic: u64,
    pub abi_version: u32,
    pub core_version: *const c_char,
    pub tch_version: *const c_char,
    pub libtorch_version: *const c_char,
}

// SAFETY: the pointers are to 'static nul-terminated string literals.
unsafe impl Sync for PluginDeclaration {}

impl PluginDeclaration {
    /// # Safety
    /// The pointers must be valid nul-terminated strings (true for declarations made by `export_plugin!`).
    pub unsafe fn build_info(&self) -> BuildInfo {
        let text = |p: *const c_char| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        BuildInfo {
            abi_version: self.abi_version,
            core_version: text(self.core_version),
            tch_version: text(self.tch_version),
            libtorch_version: text(self.libtorch_version),
        }
    }
}

/// The abi_stable root module: component listing and factories.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// JSON array of [`ComponentInfo`].
    pub components: extern "C" fn() -> RString,
    /// Route the plugin's `tracing` events to the host.
    pub set_log_sink: extern "C" fn(LogSink),
    pub create_policy: extern "C" fn(RStr<'_>, RStr<'_>, RStr<'_>) -> RResult<PolicyBox, RString>,
    pub create_algorithm: extern "C" fn(RStr<'_>, RStr<'_>, RStr<'_>) -> RResult<AlgorithmBox, RString>,
    pub create_curriculum: extern "C" fn(RStr<'_>, RStr<'_>, RStr<'_>) -> RResult<CurriculumBox, RString>,
    pub create_sampler: extern "C" fn(RStr<'_>, RStr<'_>, RStr<'_>) -> RResult<SamplerBox, RString>,
    #[sabi(last_prefix_field)]
    pub create_reward: extern "C" fn(RStr<'_>, RStr<'_>, RStr<'_>) -> RResult<RewardBox, RString>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "longrl_plugin";
    const NAME: &'static str = "longrl_plugin";
    const VERSION_STRINGS: abi_stable::sabi_types::VersionStrings = package_version_strings!();
}

type Factory<T> = Box<dyn Fn(&serde_json::Value, &ComponentContext) -> Result<T> + Send + Sync>;

/// The components of one plugin library. Built by `export_plugin!`.
#[derive(Default)]
pub struct Registry {
    infos: Vec<ComponentInfo>,
    policies: Vec<(String, Factory<Box<dyn api::Policy>>)>,
    algorithms: Vec<(String, Factory<Box<dyn api::Algorithm>>)>,
    curricula: Vec<(String, Factory<Box<dyn api::Curriculum>>)>,
    samplers: Vec<(String, Factory<Box<dyn api::Sampler>>)>,
    rewards: Vec<(String, Factory<Box<dyn api::Reward>>)>,
}

/// How a component type describes and builds itself. Implement it next to the component trait.
pub trait Component: Sized + 'static {
    fn info() -> ComponentInfo;
    fn create(config: &serde_json::Value, context: &ComponentContext) -> Result<Self>;
}

fn check_kind<C: Component>(kind: ComponentKind) -> ComponentInfo {
    let info = C::info();
    assert_eq!(info.kind, kind, "component {} is registered as a {kind}", info.name);
    info
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn policy<C: Component + api::Policy>(mut self) -> Self {
        let info = check_kind::<C>(ComponentKind::Policy);
        self.policies.push((info.name.clone(), Box::new(|c, x| Ok(Box::new(C::create(c, x)?)))));
        self.infos.push(info);
        self
    }
    pub fn algorithm<C: Component + api::Algorithm>(mut self) -> Self {
        let info = check_kind::<C>(ComponentKind::Algorithm);
        self.algorithms.push((info.name.clone(), Box::new(|c, x| Ok(Box::new(C::create(c, x)?)))));
        self.infos.push(info);
        self
    }
    pub fn curriculum<C: Component + api::Curriculum>(mut self) -> Self {
        let info = check_kind::<C>(ComponentKind::Curriculum);
        self.curricula.push((info.name.clone(), Box::new(|c, x| Ok(Box::new(C::create(c, x)?)))));
        self.infos.push(info);
        self
    }
    pub fn sampler<C: Component + api::Sampler>(mut self) -> Self {
        let info = check_kind::<C>(ComponentKind::Sampler);
        self.samplers.push((info.name.clone(), Box::new(|c, x| Ok(Box::new(C::create(c, x)?)))));
        self.infos.push(info);
        self
    }
    pub fn reward<C: Component + api::Reward>(mut self) -> Self {
        let info = check_kind::<C>(ComponentKind::Reward);
        self.rewards.push((info.name.clone(), Box::new(|c, x| Ok(Box::new(C::create(c, x)?)))));
        self.infos.push(info);
        self
    }
    pub fn infos(&self) -> &[ComponentInfo] {
        &self.infos
    }
}

fn find<'a, T>(list: &'a [(String, Factory<T>)], kind: &str, name: &str) -> Result<&'a Factory<T>> {
    list.iter().find(|(n, _)| n == name).map(|(_, f)| f).ok_or_else(|| {
        let known: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
        Error::msg(format!("this library has no {kind} named `{name}` (it has: {})", known.join(", ")))
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

macro_rules! factory_fn {
    ($fn_name:ident, $field:ident, $kind:literal, $boxty:ty, $guard:ident, $to:ident) => {
        extern "C" fn $fn_name(name: RStr<'_>, config: RStr<'_>, context: RStr<'_>) -> RResult<$boxty, RString> {
            guard(|| {
                let (config, context) = parse_inputs(config, context)?;
                let make = find(&registry().$field, $kind, name.as_str())?;
                let component = make(&config, &context)?;
                Ok($to::from_value($guard(component), TD_Opaque))
            })
        }
    };
}

factory_fn!(create_policy, policies, "policy", PolicyBox, PolicyGuard, PolicyAbi_TO);
factory_fn!(create_algorithm, algorithms, "algorithm", AlgorithmBox, AlgorithmGuard, AlgorithmAbi_TO);
factory_fn!(create_curriculum, curricula, "curriculum", CurriculumBox, CurriculumGuard, CurriculumAbi_TO);
factory_fn!(create_sampler, samplers, "sampler", SamplerBox, SamplerGuard, SamplerAbi_TO);
factory_fn!(create_reward, rewards, "reward", RewardBox, RewardGuard, RewardAbi_TO);

/// Called by the `export_plugin!` root-module function: installs the registry and builds the module.
#[doc(hidden)]
pub fn __root_module(make_registry: fn() -> Registry) -> PluginModuleRef {
    REGISTRY.get_or_init(make_registry);
    use abi_stable::prefix_type::PrefixTypeTrait;
    PluginModule {
        components,
        set_log_sink,
        create_policy,
        create_algorithm,
        create_curriculum,
        create_sampler,
        create_reward,
    }
    .leak_into_prefix()
}

// Keep RBox in scope for the generated `_TO` aliases above.
#[allow(dead_code)]
type _KeepRBox = RBox<()>;
