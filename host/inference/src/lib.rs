//! Rollouts on vLLM or SGLang inference servers for the longrl trainer.
//!
//! - [`config`]: the `[rollout]` section (backend, servers, concurrency, deadlines, retries, weight
//!   sync, off-policy correction);
//! - [`client`]: the async rollout client over [`vllm`]'s `/v1/completions` or [`sglang`]'s `/generate`
//!   (token-id prompts in, sampled token ids and their log-probs out, no re-tokenising);
//! - [`weights`]: weight sync after every step (an atomically published HF directory, then each
//!   server's reload), behind the [`weights::WeightTransport`] trait an NCCL transport slots into;
//! - [`correction`]: mismatch metrics between server and trainer log-probs, truncated importance weights;
//! - [`remote::RemoteRollout`]: the blocking handle the trainer holds;
//! - [`serve`]: the server side of the weight-transfer API, for `longrl serve --weight-transfer`.
//!
//! Supported servers: vLLM with the weight-transfer API's `disk` backend (vLLM main after v0.32; see
//! docs/rollout.md), vLLM versions with the weight-transfer routes but no disk backend through
//! `vllm_reload = "collective-rpc"`, SGLang with `/pause_generation`, `/update_weights_from_disk` and
//! `/continue_generation`, and `longrl serve --weight-transfer`.

pub mod client;
pub mod config;
pub mod correction;
pub mod remote;
pub mod request;
pub mod retry;
pub mod serve;
pub mod sglang;
pub mod vllm;
pub mod weights;

pub use client::{RolloutClient, RolloutError};
pub use config::{Backend, IsLevel, RolloutConfig};
pub use remote::RemoteRollout;
pub use request::{GroupOutput, GroupRequest, Sampling, WeightVersion};
