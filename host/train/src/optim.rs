//! The trainer's optimizer: `longrl-optim`'s AdamW (`torch.optim.AdamW` semantics, float32 master
//! weights and moments for bfloat16/float16 parameters, global-norm clipping, non-finite steps
//! skipped and counted), configured from the optimizer keys of `[sft]` and `[train]`.

use tch::Tensor;

use longrl_config::OptimConfig;
pub(crate) use longrl_optim::{AdamW, StepOutcome};

/// AdamW over `params` (the policy's, sharing storage and `.grad`) with the section's betas, eps
/// and weight decay (on every parameter, as verl's actor optimizer).
pub(crate) fn adamw(params: Vec<(String, Tensor)>, optim: &OptimConfig) -> anyhow::Result<AdamW> {
    let config = longrl_optim::AdamWConfig {
        beta1: optim.beta1,
        beta2: optim.beta2,
        eps: optim.eps,
        weight_decay: optim.weight_decay,
        ..longrl_optim::AdamWConfig::default()
    };
    AdamW::new(params, &config)
}
