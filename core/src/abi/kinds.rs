//! The one table of component kinds. Everything that exists once per kind and differs only in names
//! (the FFI box, the plugin-side guard, the host-side adapter, the root module's factory, the
//! registry's list and method, the host's `PluginSet` method) is generated from it; what differs in
//! substance (each kind's `sabi_trait` and the method bodies of its guard and adapter) is written out.

/// Calls `$callback! { ... }` with one row per kind:
///
/// `#[gate]* method: ApiTrait => SabiTraitObject, FfiBox, PluginGuard, HostAdapter, factory_field;`
///
/// `method` names the registry and `PluginSet` methods; `ApiTrait` is the `api` trait and the
/// `ComponentKind` variant. The gates apply inside longrl-core only (policies and algorithms need
/// its `tensor` feature); a callback in another crate ignores them.
#[doc(hidden)]
#[macro_export]
macro_rules! component_kinds {
    ($callback:ident) => {
        $callback! {
            #[cfg(feature = "tensor")]
            policy: Policy => PolicyAbi_TO, PolicyBox, PolicyGuard, HostPolicy, create_policy;
            #[cfg(feature = "tensor")]
            algorithm: Algorithm => AlgorithmAbi_TO, AlgorithmBox, AlgorithmGuard, HostAlgorithm, create_algorithm;
            curriculum: Curriculum => CurriculumAbi_TO, CurriculumBox, CurriculumGuard, HostCurriculum, create_curriculum;
            sampler: Sampler => SamplerAbi_TO, SamplerBox, SamplerGuard, HostSampler, create_sampler;
            reward: Reward => RewardAbi_TO, RewardBox, RewardGuard, HostReward, create_reward;
        }
    };
}
