//! Host side of the boundary: the plain-Rust component traits implemented over FFI handles.
//! Every error is re-labelled with the component and the call, so users see who failed.

use std::collections::BTreeMap;

use abi_stable::std_types::{RResult, RSlice, RString};
use serde::de::DeserializeOwned;
#[cfg(feature = "tensor")]
use {abi_stable::std_types::RVec, std::path::Path};

use super::traits::*;
use super::types::*;
use crate::{Error, Result, api};

macro_rules! adapters {
    ($($(#[$gate:meta])* $kind:ident: $api:ident => $abi:ident, $boxed:ident, $guard:ident, $host:ident, $factory:ident;)*) => {
        $(
            $(#[$gate])*
            #[doc = concat!("A ", stringify!($kind), " living in a plugin library, as the host calls it.")]
            pub struct $host {
                inner: $boxed,
                /// `kind/name (library file)`: every error names it.
                label: String,
            }

            $(#[$gate])*
            impl $host {
                pub fn new(inner: $boxed, label: String) -> Self {
                    $host { inner, label }
                }
            }
        )*
    };
}
crate::component_kinds!(adapters);

fn lift<T>(component: &str, call: &str, result: FfiResult<T>) -> Result<T> {
    match result {
        RResult::ROk(value) => Ok(value),
        RResult::RErr(message) => Err(Error::Plugin {
            component: component.to_string(),
            call: call.to_string(),
            message: message.into_string(),
        }),
    }
}

fn parse<T: DeserializeOwned>(component: &str, call: &str, json: RString) -> Result<T> {
    serde_json::from_str(&json).map_err(|e| Error::Plugin {
        component: component.to_string(),
        call: call.to_string(),
        message: format!("returned malformed data: {e}"),
    })
}

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    Ok(serde_json::to_string(value)?)
}

#[cfg(feature = "tensor")]
fn path_str(dir: &Path) -> Result<&str> {
    dir.to_str().ok_or_else(|| Error::msg(format!("path is not UTF-8: {}", dir.display())))
}

#[cfg(feature = "tensor")]
impl api::Policy for HostPolicy {
    fn describe(&self) -> Result<api::PolicyDescription> {
        let json = lift(&self.label, "describe", self.inner.describe())?;
        parse(&self.label, "describe", json)
    }
    fn tokenize(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        Ok(lift(&self.label, "tokenize", self.inner.tokenize(text.into(), add_special_tokens))?.into_vec())
    }
    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        Ok(lift(&self.label, "decode", self.inner.decode(ids.into(), skip_special_tokens))?.into_string())
    }
    fn apply_chat_template(&self, messages: &[api::ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let messages = json(&messages)?;
        let text = self.inner.apply_chat_template(messages.as_str().into(), add_generation_prompt);
        Ok(lift(&self.label, "apply_chat_template", text)?.into_string())
    }
    fn generate(&mut self, prompts: &[Vec<u32>], params: &api::GenerationParams) -> Result<api::GenerateOutput> {
        let prompts: Vec<RVec<u32>> = prompts.iter().map(|p| p.as_slice().into()).collect();
        let params = json(params)?;
        let out = self.inner.generate(RSlice::from_slice(&prompts), params.as_str().into());
        Ok(lift(&self.label, "generate", out)?.into())
    }
    fn logprobs(&mut self, batch: &[api::Sequence], options: &api::LogprobOptions) -> Result<api::LogprobOutput> {
        let batch: Vec<FfiSequence> = batch.iter().map(Into::into).collect();
        let options = json(options)?;
        let out = self.inner.logprobs(RSlice::from_slice(&batch), options.as_str().into());
        Ok(lift(&self.label, "logprobs", out)?.into())
    }
    fn parameters(&self) -> Result<Vec<(String, tch::Tensor)>> {
        let params = lift(&self.label, "parameters", self.inner.parameters())?;
        Ok(params.into_iter().map(|p| (p.name.into_string(), p.tensor.into_tensor())).collect())
    }
    fn save(&self, dir: &Path) -> Result<()> {
        lift(&self.label, "save", self.inner.save(path_str(dir)?.into()))
    }
    fn load_weights(&mut self, dir: &Path) -> Result<()> {
        lift(&self.label, "load_weights", self.inner.load_weights(path_str(dir)?.into()))
    }
}

#[cfg(feature = "tensor")]
impl api::Algorithm for HostAlgorithm {
    fn settings(&self) -> Result<api::AlgorithmSettings> {
        let json = lift(&self.label, "settings", self.inner.settings())?;
        parse(&self.label, "settings", json)
    }
    fn shape_reward(&self, reward: f32, response_len: u32, max_response_len: u32) -> Result<f32> {
        lift(&self.label, "shape_reward", self.inner.shape_reward(reward, response_len, max_response_len))
    }
    fn keep_group(&self, rewards: &[f32]) -> Result<bool> {
        lift(&self.label, "keep_group", self.inner.keep_group(rewards.into()))
    }
    fn advantages(&self, rewards: &[f32], group_sizes: &[u32]) -> Result<Vec<f32>> {
        Ok(lift(&self.label, "advantages", self.inner.advantages(rewards.into(), group_sizes.into()))?.into_vec())
    }
    fn loss(&self, inputs: &api::LossInputs) -> Result<api::LossOutput> {
        let out = lift(&self.label, "loss", self.inner.loss(&FfiLossInputs::from(inputs)))?;
        let metrics: BTreeMap<String, f64> = parse(&self.label, "loss", out.metrics_json)?;
        Ok(api::LossOutput { loss: out.loss.into_tensor(), metrics })
    }
    fn save_state(&self) -> Result<Vec<u8>> {
        Ok(lift(&self.label, "save_state", self.inner.save_state())?.into_vec())
    }
    fn load_state(&mut self, state: &[u8]) -> Result<()> {
        lift(&self.label, "load_state", self.inner.load_state(state.into()))
    }
}

impl api::Curriculum for HostCurriculum {
    fn phases(&self) -> Result<Vec<api::PhaseSpec>> {
        let json = lift(&self.label, "phases", self.inner.phases())?;
        parse(&self.label, "phases", json)
    }
    fn current_phase(&self) -> Result<usize> {
        let phase = lift(&self.label, "current_phase", self.inner.current_phase())?;
        usize::try_from(phase).map_err(|_| Error::Plugin {
            component: self.label.clone(),
            call: "current_phase".into(),
            message: format!("returned phase {phase}, beyond this machine's address range"),
        })
    }
    fn advance(&mut self, progress: api::PhaseProgress) -> Result<api::PhaseTransition> {
        let progress = json(&progress)?;
        let reply = lift(&self.label, "advance", self.inner.advance(progress.as_str().into()))?;
        parse(&self.label, "advance", reply)
    }
    fn save_state(&self) -> Result<Vec<u8>> {
        Ok(lift(&self.label, "save_state", self.inner.save_state())?.into_vec())
    }
    fn load_state(&mut self, state: &[u8]) -> Result<()> {
        lift(&self.label, "load_state", self.inner.load_state(state.into()))
    }
}

impl api::Sampler for HostSampler {
    fn begin_phase(&mut self, phase: usize, pool: &[api::PoolItem]) -> Result<()> {
        let pool: Vec<FfiPoolItem> = pool.iter().map(Into::into).collect();
        lift(&self.label, "begin_phase", self.inner.begin_phase(phase as u64, RSlice::from_slice(&pool)))
    }
    fn next_batch(&mut self, n: usize) -> Result<Vec<u32>> {
        Ok(lift(&self.label, "next_batch", self.inner.next_batch(n as u64))?.into_vec())
    }
    fn observe(&mut self, index: u32, rewards: &[f32]) -> Result<()> {
        lift(&self.label, "observe", self.inner.observe(index, rewards.into()))
    }
    fn epochs_completed(&self) -> Result<u64> {
        lift(&self.label, "epochs_completed", self.inner.epochs_completed())
    }
    fn metrics(&self) -> Result<BTreeMap<String, f64>> {
        let json = lift(&self.label, "metrics", self.inner.metrics())?;
        parse(&self.label, "metrics", json)
    }
    fn save_state(&self) -> Result<Vec<u8>> {
        Ok(lift(&self.label, "save_state", self.inner.save_state())?.into_vec())
    }
    fn load_state(&mut self, state: &[u8]) -> Result<()> {
        lift(&self.label, "load_state", self.inner.load_state(state.into()))
    }
}

impl api::Reward for HostReward {
    fn check_sources(&self, sources: &[String]) -> Result<()> {
        let sources: Vec<RString> = sources.iter().map(|s| s.as_str().into()).collect();
        lift(&self.label, "check_sources", self.inner.check_sources(RSlice::from_slice(&sources)))
    }
    fn score(&self, batch: &[api::RewardInput]) -> Result<Vec<api::RewardScore>> {
        let inputs: Vec<FfiRewardInput> = batch.iter().map(Into::into).collect();
        let scores = lift(&self.label, "score", self.inner.score(RSlice::from_slice(&inputs)))?;
        if scores.len() != batch.len() {
            return Err(Error::Plugin {
                component: self.label.clone(),
                call: "score".into(),
                message: format!("returned {} scores for {} inputs", scores.len(), batch.len()),
            });
        }
        Ok(scores.into_iter().map(Into::into).collect())
    }
    fn take_metrics(&self) -> Result<BTreeMap<String, f64>> {
        let json = lift(&self.label, "take_metrics", self.inner.take_metrics())?;
        parse(&self.label, "take_metrics", json)
    }
}
