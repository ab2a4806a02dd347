//! Weight sync after every step: the trainer makes the new weights available (the data plane, a
//! [`WeightTransport`]) while [`control`] drives each server's reload over HTTP (the control plane).
//!
//! One update, for every server at once:
//!
//! 1. `transport.stage`: the disk transport writes `DIR/vNNNNNN/` atomically (see [`store`]);
//! 2. pause the servers (vLLM `/pause?mode=wait`, then `/start_weight_update`; SGLang `/pause_generation`);
//! 3. ask every server to load (`/update_weights` with `update_info`, SGLang `/update_weights_from_disk`)
//!    and, while those calls are in flight, `transport.send` (nothing for disk; the NCCL broadcasts);
//! 4. finish (vLLM `/finish_weight_update {weight_version}`, `/reset_prefix_cache`, `/resume`; SGLang
//!    `/continue_generation`, its cache flushed by the load) and check the server reports the new version.
//!
//! ## Adding the NCCL transport
//!
//! vLLM's NCCL backend puts the trainer at rank 0 of a group with every inference worker (rank offset 1).
//! A `NcclTransport` implements [`WeightTransport`] as follows, with the process-group shim (`longrl-dist`)
//! creating the NCCL unique id and communicator on trainer rank 0:
//!
//! - `init_info(i, servers)`: `{"master_address", "master_port", "rank_offset", "world_size", ...}` or,
//!   torch-free, `{"nccl_unique_id_b64": base64(ncclGetUniqueId()), "rank_offset", "world_size"}`; the shim
//!   then joins with `ncclCommInitRank` and matches the workers' one-element float32 `all_reduce` warm-up;
//! - `stage`: gathers nothing on disk; returns [`Staged::Broadcast`] with the HF names, dtypes and shapes in
//!   broadcast order (vLLM's `update_info` `{names, dtype_names, shapes}`);
//! - `send`: broadcasts each tensor from rank 0 in that order, on the current CUDA stream, while the servers'
//!   `/update_weights` calls are in flight (both sides rendezvous inside the same NCCL calls).
//!
//! The control plane needs no change for vLLM. SGLang's equivalent is `/init_weights_update_group` and
//! `/update_weights_from_distributed`; [`control`] rejects a broadcast for SGLang until that is written.

pub mod control;
pub mod store;

use std::path::{Path, PathBuf};

use longrl_core::api::Policy;

use crate::config::TransportKind;
use crate::request::WeightVersion;
pub use store::{MARKER, WeightStore, read_marker};

/// Where a transport gets the weights from (the trained policy).
pub trait WeightSource {
    /// Write the model as an HF directory (config.json, `*.safetensors`, tokenizer files) into `dir`.
    fn write_hf(&self, dir: &Path) -> anyhow::Result<()>;
}

/// A policy as a weight source: its `save` writes the HF layout.
pub struct PolicyWeights<'a>(pub &'a dyn Policy);

impl WeightSource for PolicyWeights<'_> {
    fn write_hf(&self, dir: &Path) -> anyhow::Result<()> {
        Ok(self.0.save(dir)?)
    }
}

/// What one staged update asks of the servers.
#[derive(Debug, Clone, PartialEq)]
pub enum Staged {
    /// Load this absolute directory (vLLM `update_info: {"path"}`, SGLang `model_path`).
    Directory(PathBuf),
    /// Receive these tensors by broadcast, in this order (vLLM `update_info: {names, dtype_names, shapes}`).
    Broadcast { names: Vec<String>, dtype_names: Vec<String>, shapes: Vec<Vec<i64>> },
}

/// How weight bytes travel from the trainer to the inference servers (the data plane).
pub trait WeightTransport: Send {
    fn kind(&self) -> TransportKind;
    /// vLLM's `init_info` for `/init_weight_transfer_engine`, sent once to server `index` of `servers`.
    fn init_info(&self, index: usize, servers: usize) -> serde_json::Value;
    /// Make version `version` of the weights available before the servers are asked to load it.
    fn stage(&mut self, version: WeightVersion, source: &dyn WeightSource) -> anyhow::Result<Staged>;
    /// Runs on the trainer while every server's load call is in flight (NCCL: the broadcasts).
    fn send(&mut self, staged: &Staged, source: &dyn WeightSource) -> anyhow::Result<()>;
}

/// The weights as an HF safetensors directory on storage the servers share.
pub struct DiskTransport {
    store: WeightStore,
}

impl DiskTransport {
    pub fn new(store: WeightStore) -> Self {
        DiskTransport { store }
    }

    pub fn store(&self) -> &WeightStore {
        &self.store
    }
}

impl WeightTransport for DiskTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Disk
    }

    fn init_info(&self, _index: usize, _servers: usize) -> serde_json::Value {
        // The disk backend needs no rendezvous.
        serde_json::json!({})
    }

    fn stage(&mut self, version: WeightVersion, source: &dyn WeightSource) -> anyhow::Result<Staged> {
        Ok(Staged::Directory(self.store.publish(version, |dir| source.write_hf(dir))?))
    }

    fn send(&mut self, _staged: &Staged, _source: &dyn WeightSource) -> anyhow::Result<()> {
        Ok(())
    }
}
