//! Where rollouts come from: today the policy in this process; a remote engine (vLLM, SGLang) is
//! another [`Generator`], so the pipeline and its callers do not change when one is slotted in.

use longrl_core::api::{GenerateOutput, GenerationParams, Policy};

/// Generates `params.rollouts` responses per token prompt, prompt after prompt.
pub trait Generator {
    /// Names the generator in errors, e.g. ``policy `qwen` ``.
    fn name(&self) -> &str;
    fn generate(&mut self, prompts: &[Vec<u32>], params: &GenerationParams) -> anyhow::Result<GenerateOutput>;
}

/// A policy of this process (the trained one, or a model under evaluation).
pub struct LocalPolicy<'a> {
    policy: &'a mut dyn Policy,
    name: String,
}

impl<'a> LocalPolicy<'a> {
    /// `plugin` is the policy's component name (the `policy.name` config key).
    pub fn new(policy: &'a mut dyn Policy, plugin: &str) -> Self {
        LocalPolicy { policy, name: format!("policy `{plugin}`") }
    }
}

impl Generator for LocalPolicy<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn generate(&mut self, prompts: &[Vec<u32>], params: &GenerationParams) -> anyhow::Result<GenerateOutput> {
        self.policy.generate(prompts, params).map_err(|e| anyhow::anyhow!("{}: {e}", self.name))
    }
}
