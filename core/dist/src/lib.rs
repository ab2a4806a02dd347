//! longrl-dist: process groups over PyTorch's c10d, the engine torch.distributed runs on.
//!
//! - [`DistEnv`] reads where this process stands from the launcher's variables (torchrun and its
//!   agent store, Slurm, Kubeflow PyTorchJob); none means one process.
//! - [`ProcessGroup`] forms the world group from it (TCPStore → PrefixStore → Gloo on CPU or NCCL
//!   on CUDA), splits sub-groups, and runs all-reduce, broadcast, all-gather, reduce-scatter,
//!   all-to-all and barrier, plus autograd-aware all-gather, reduce-scatter and all-to-all.
//! - Every collective is bounded by the group's timeout; a failure comes back as
//!   [`DistError::Collective`] naming this rank, the operation and, when a peer died, the lost
//!   ranks (from a store heartbeat), never as an abort.
//!
//! The C++ half is `csrc/` (see `build.rs`); docs/distributed.md shows the launch lines.

mod env;
mod ffi;
mod group;
pub mod nodelist;

pub use env::{DEFAULT_MASTER_PORT, DistEnv, EnvError, Launcher, StoreHost};
pub use group::{GroupOptions, ProcessGroup, StoreServer};

use std::fmt;
use std::str::FromStr;

/// A failure of the process-group layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DistError {
    /// The launcher's variables are missing or malformed.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// A collective, split or rendezvous failed; the message names the rank and the operation.
    #[error("{0}")]
    Collective(String),
    /// A call that cannot work on this rank (a bad argument, a backend this build lacks).
    #[error("{0}")]
    Usage(String),
}

/// The reductions of `all_reduce` and `reduce_scatter`. `Avg` is the sum divided by the group size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ReduceOp {
    Sum = 0,
    Avg = 1,
    Max = 2,
    Min = 3,
}

/// The c10d backend a group runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Backend {
    /// CPU tensors.
    Gloo = 1,
    /// CUDA tensors (the crate's `cuda` feature).
    Nccl = 2,
}

/// The `dist.backend` setting: `auto` picks NCCL when this build has it and CUDA is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    #[default]
    Auto,
    Gloo,
    Nccl,
}

impl BackendChoice {
    pub fn resolve(self) -> Result<Backend, DistError> {
        match self {
            BackendChoice::Gloo => Ok(Backend::Gloo),
            BackendChoice::Nccl if !nccl_built() => Err(DistError::Usage(
                "dist.backend = \"nccl\" needs longrl built with the `cuda` feature (after `cargo xtask setup --cuda`)"
                    .into(),
            )),
            BackendChoice::Nccl => Ok(Backend::Nccl),
            BackendChoice::Auto if nccl_built() && tch::Cuda::is_available() => Ok(Backend::Nccl),
            BackendChoice::Auto => Ok(Backend::Gloo),
        }
    }
}

impl FromStr for BackendChoice {
    type Err = DistError;
    fn from_str(s: &str) -> Result<Self, DistError> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "gloo" => Ok(BackendChoice::Gloo),
            "nccl" => Ok(BackendChoice::Nccl),
            other => {
                Err(DistError::Usage(format!("dist.backend = {other:?}: expected \"auto\", \"gloo\" or \"nccl\"")))
            }
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Gloo => "gloo",
            BackendChoice::Nccl => "nccl",
        })
    }
}

/// Whether this build has the NCCL backend (feature `cuda`).
pub const fn nccl_built() -> bool {
    cfg!(feature = "cuda")
}
