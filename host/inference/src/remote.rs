//! The trainer's handle on its rollout servers: draw groups, push weights, keep the version.
//! Blocking: it owns the tokio runtime its HTTP calls run on, so the (synchronous) trainer needs none.

use std::path::Path;

use anyhow::Context;
use longrl_core::api::{Generation, GenerationParams};

use crate::client::{RolloutClient, RolloutError};
use crate::config::{RolloutConfig, TransportKind};
use crate::request::{GroupOutput, GroupRequest, Sampling, WeightVersion};
use crate::weights::control::{Control, SyncReport, WeightSync};
use crate::weights::{DiskTransport, WeightSource, WeightStore, WeightTransport};

pub struct RemoteRollout {
    runtime: tokio::runtime::Runtime,
    client: RolloutClient,
    sync: WeightSync,
    version: Option<WeightVersion>,
}

impl RemoteRollout {
    /// Connect to the servers of `config` (nothing is sent yet). Weights are published under
    /// `rollout.weight_sync.dir`, else `run_dir/weights`.
    pub fn new(config: &RolloutConfig, run_dir: &Path) -> anyhow::Result<Self> {
        let client = RolloutClient::new(config)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("longrl-rollout")
            .enable_all()
            .build()?;
        let transport: Box<dyn WeightTransport> = match config.weight_sync.transport {
            TransportKind::Disk => {
                let dir = config.weight_sync.dir.clone().unwrap_or_else(|| run_dir.join("weights"));
                let store = WeightStore::open(&dir, config.weight_sync.keep as usize)
                    .context("config key `rollout.weight_sync.dir`")?;
                Box::new(DiskTransport::new(store))
            }
            TransportKind::Nccl => anyhow::bail!(
                "config key `rollout.weight_sync.transport`: \"nccl\" needs the process-group shim's NCCL \
                 communicator, which is not wired yet; use \"disk\""
            ),
        };
        let sync = WeightSync::new(Control::new(config)?, config.servers(), transport);
        Ok(RemoteRollout { runtime, client, sync, version: None })
    }

    pub fn servers(&self) -> &[String] {
        self.client.servers()
    }

    /// The version the servers hold (the last one pushed), `None` before the first push.
    pub fn version(&self) -> Option<WeightVersion> {
        self.version
    }

    /// Make `source`'s current weights the servers' weights, as version `version`.
    pub fn push_weights(&mut self, version: WeightVersion, source: &dyn WeightSource) -> anyhow::Result<SyncReport> {
        if let Some(current) = self.version
            && version < current
        {
            anyhow::bail!("weight version {version} is older than the servers' {current}");
        }
        self.version = None; // until the servers confirm it
        let report = self.sync.push(&self.runtime, version, source)?;
        self.version = Some(version);
        tracing::info!(
            version,
            stage_s = report.stage_seconds,
            load_s = report.load_seconds,
            "weights synced to {} server(s)",
            self.servers().len()
        );
        Ok(report)
    }

    /// Draw every group with the current weights; each output is tagged with their version.
    pub fn generate(&self, groups: Vec<GroupRequest>) -> anyhow::Result<Vec<GroupOutput>> {
        let version = self
            .version
            .context("rollouts asked for before the trainer pushed its weights to the servers (push_weights)")?;
        let outputs: Vec<GroupOutput> =
            self.runtime.block_on(self.client.generate(groups, Some(version))).map_err(anyhow::Error::from)?;
        if let Some(stale) = outputs.iter().find(|o| o.weight_version != version) {
            return Err(RolloutError::VersionMismatch {
                url: stale.server.clone(),
                expected: version,
                found: Some(stale.weight_version.to_string()),
            }
            .into());
        }
        Ok(outputs)
    }

    /// `Policy::generate`'s contract over the servers: `params.rollouts` generations per prompt, sample `j` of
    /// prompt `i` at `i * n + j`; `seeds[i]` is prompt `i`'s seed (derived by the trainer from the run
    /// seed, the step and the prompt, so the samples do not depend on batch layout or server).
    pub fn generate_like_policy(
        &self,
        prompts: &[Vec<u32>],
        params: &GenerationParams,
        seeds: &[u64],
    ) -> anyhow::Result<Vec<Generation>> {
        if seeds.len() != prompts.len() {
            anyhow::bail!("{} seeds for {} prompts", seeds.len(), prompts.len());
        }
        let sampling = Sampling {
            max_tokens: params.max_new_tokens,
            temperature: params.temperature,
            top_p: params.top_p,
            top_k: params.top_k,
            stop: params.stop.clone(),
        };
        let groups = prompts
            .iter()
            .zip(seeds)
            .map(|(prompt, &seed)| GroupRequest {
                prompt: prompt.clone(),
                n: params.rollouts,
                seed,
                sampling: sampling.clone(),
            })
            .collect();
        Ok(self.generate(groups)?.into_iter().flat_map(|group| group.generations).collect())
    }
}
