//! The trainer's optimizer: AdamW with float32 master weights and moments per parameter group.
//!
//! - [`AdamW`]: `torch.optim.AdamW` semantics; bfloat16/float16 parameters get float32 master
//!   weights (the update and the weight decay apply there, the cast is written back), float32
//!   parameters are their own master. Global-norm clipping; a step costs one host synchronisation
//!   (libtorch's foreach and fused AdamW kernels through a small C++ shim, `csrc/kernels.cpp`).
//! - [`ParamGroup`], [`GroupLayout`]: groups with their own lr multiplier and weight decay, each
//!   group's state in flat float32 buffers, so a sharded optimizer can own elements `[a, b)` of a
//!   group.
//! - Checkpoints: safetensors written and read one tensor at a time, names and shapes checked.
//!
//! Sharding (ZeRO-2/3) builds on the flat layout: a rank that owns elements `[a, b)` of group `g`
//! keeps buffers of `b - a` elements (moments, master, float32 gradient: what a reduce-scatter of
//! the group's gradients writes), runs the same fused step on them, and all-gathers the cast
//! shards back into the parameters; [`GroupLayout::segments`] maps `[a, b)` to the pieces of
//! parameters it covers (for the gather/scatter views and for per-parameter checkpoint names).
//! Pad each group's flat space to a multiple of the world size when sharding.

mod adamw;
mod groups;
mod kernels;
mod state_file;

pub use adamw::{AdamW, AdamWConfig, StepOutcome, state_bytes_per_element};
pub use groups::{GroupLayout, ParamGroup, Segment};
