//! RL rollouts on vLLM or SGLang servers (`[rollout] backend = "vllm" | "sglang"`, see
//! docs/rollout.md): the trainer pushes its weights to the servers before the first step and after
//! every step, draws each step's groups from them, and compares their log-probs with its own.

use std::collections::BTreeMap;

use longrl_config::RolloutConfig;
use longrl_core::api::{GenerateOutput, GenerationParams};
use longrl_inference::config::{CorrectionConfig, IsLevel};
use longrl_inference::correction::correct;
use longrl_inference::weights::PolicyWeights;
use longrl_inference::{RemoteRollout, WeightVersion};
use longrl_rollout::Generator;

use crate::trainer::Trainer;
use crate::{checkpoint, seeds};

pub struct RolloutServers {
    pub(crate) remote: RemoteRollout,
    pub(crate) correction: CorrectionConfig,
}

impl Trainer<'_> {
    /// Draw RL rollouts from the servers of `config` instead of the policy.
    pub fn use_rollout_servers(&mut self, config: &RolloutConfig) -> anyhow::Result<()> {
        if config.correction.tis == IsLevel::Token {
            anyhow::bail!(
                "config key `rollout.correction.tis`: \"token\" needs per-token weights in the algorithm's loss, \
                 which `LossInputs` cannot carry yet; use \"sequence\" or \"off\""
            );
        }
        let remote = RemoteRollout::new(config, &self.opts.run_dir)?;
        tracing::info!(backend = config.backend.name(), servers = ?remote.servers(), "RL rollouts on inference servers");
        self.servers = Some(RolloutServers { remote, correction: config.correction.clone() });
        Ok(())
    }

    pub(crate) fn uses_servers(&self) -> bool {
        self.servers.is_some()
    }

    /// Make the servers hold the policy's weights as `version` (a no-op without servers or when they
    /// already do), recording the cost in `values`.
    pub(crate) fn sync_servers(
        &mut self,
        version: WeightVersion,
        values: &mut BTreeMap<String, f64>,
    ) -> anyhow::Result<()> {
        let Some(servers) = &mut self.servers else { return Ok(()) };
        if servers.remote.version() == Some(version) {
            return Ok(());
        }
        let pushed = servers.remote.push_weights(version, &PolicyWeights(self.c.policy.as_ref()));
        let report = pushed.map_err(|e| self.servers_failed(e))?;
        values.insert("weights/version".into(), version as f64);
        values.insert("time/weight_write".into(), report.stage_seconds);
        values.insert("time/weight_load".into(), report.load_seconds);
        Ok(())
    }

    /// Mismatch metrics of the servers' log-probs against the trainer's (`old`), and the sequence-level
    /// importance weight of each response when asked for (`None` otherwise).
    pub(crate) fn off_policy_correction(
        &self,
        server: &[Vec<f32>],
        old: &[Vec<f32>],
        values: &mut BTreeMap<String, f64>,
    ) -> anyhow::Result<Option<Vec<f32>>> {
        let Some(servers) = &self.servers else { return Ok(None) };
        let correction =
            correct(server, old, &servers.correction).map_err(|e| anyhow::anyhow!("off-policy correction: {e}"))?;
        values.extend(correction.metrics);
        Ok((servers.correction.tis == IsLevel::Sequence)
            .then(|| correction.weights.iter().map(|w| w.first().copied().unwrap_or(1.0)).collect()))
    }

    /// A server error, with where the run stands: the last completed step and its checkpoint.
    pub(crate) fn servers_failed(&self, error: anyhow::Error) -> anyhow::Error {
        let checkpoint = match checkpoint::latest(&self.opts.run_dir) {
            Ok(Some(dir)) => format!("the latest checkpoint, {}, is intact", dir.display()),
            _ => "no checkpoint was written yet".to_string(),
        };
        error.context(format!(
            "rollout servers failed after step {} (the last completed step); {checkpoint}",
            self.counters.global_step
        ))
    }
}

/// The rollout servers as the pipeline's [`Generator`]: one seed per prompt, derived from the call's
/// seed and the prompt's place in the call, so the samples do not depend on which server drew them.
pub(crate) struct ServerGenerator<'a> {
    remote: &'a RemoteRollout,
}

impl<'a> ServerGenerator<'a> {
    pub(crate) fn new(remote: &'a RemoteRollout) -> Self {
        ServerGenerator { remote }
    }
}

impl Generator for ServerGenerator<'_> {
    fn name(&self) -> &str {
        "rollout servers"
    }

    fn generate(&mut self, prompts: &[Vec<u32>], params: &GenerationParams) -> anyhow::Result<GenerateOutput> {
        let prompt_seeds: Vec<u64> =
            (0..prompts.len()).map(|i| seeds::derive(params.seed, "generate-prompt", 0, i as u64)).collect();
        let generations = self.remote.generate_like_policy(prompts, params, &prompt_seeds)?;
        Ok(GenerateOutput { generations, ..Default::default() })
    }
}
