//! `[dist]`: how the ranks of a distributed run talk and shard (docs/distributed.md). The process
//! group layer (core/dist) reads `backend` and `timeout_s`; `zero_stage` and `offload` are for the
//! sharded trainer. Without launcher variables a run is one process and these keys change nothing.

use serde::{Deserialize, Serialize};

/// The c10d backend: `auto` picks NCCL for a CUDA build on a machine with CUDA, else Gloo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DistBackend {
    Auto,
    Gloo,
    Nccl,
}

impl DistBackend {
    /// The name the process group layer parses (`longrl_dist::BackendChoice`).
    pub fn as_str(self) -> &'static str {
        match self {
            DistBackend::Auto => "auto",
            DistBackend::Gloo => "gloo",
            DistBackend::Nccl => "nccl",
        }
    }
}

/// What ZeRO shards across the ranks (DeepSpeed's stages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum ZeroStage {
    /// Optimizer state and gradients; every rank keeps the full parameters (small models).
    Two,
    /// Parameters too, gathered per layer when used (FSDP's full sharding).
    Three,
}

impl TryFrom<u8> for ZeroStage {
    type Error = String;
    fn try_from(stage: u8) -> Result<Self, String> {
        match stage {
            2 => Ok(ZeroStage::Two),
            3 => Ok(ZeroStage::Three),
            other => Err(format!(
                "ZeRO stage {other} is not offered: use 2 (optimizer state and gradients) or 3 (also parameters)"
            )),
        }
    }
}

impl From<ZeroStage> for u8 {
    fn from(stage: ZeroStage) -> u8 {
        match stage {
            ZeroStage::Two => 2,
            ZeroStage::Three => 3,
        }
    }
}

/// What lives in host memory instead of on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Offload {
    None,
    /// The fp32 master weights and AdamW moments of the local shard (the AdamW step runs on the CPU).
    Optimizer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistConfig {
    /// `auto`, `gloo` (CPU tensors) or `nccl` (CUDA tensors).
    pub backend: DistBackend,
    /// Limit of every collective and of the rendezvous, in seconds: past it a rank reports the
    /// collective and the lost ranks instead of waiting for ever.
    pub timeout_s: u64,
    /// 2 or 3 (see `ZeroStage`).
    pub zero_stage: ZeroStage,
    /// `none` or `optimizer`.
    pub offload: Offload,
}

impl Default for DistConfig {
    /// Ten minutes (torch's NCCL default); ZeRO-3, which the 14B and 32B layouts need.
    fn default() -> Self {
        DistConfig { backend: DistBackend::Auto, timeout_s: 600, zero_stage: ZeroStage::Three, offload: Offload::None }
    }
}

impl DistConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.timeout_s == 0 {
            anyhow::bail!("config key `dist.timeout_s`: must be at least 1 second");
        }
        Ok(())
    }
}
