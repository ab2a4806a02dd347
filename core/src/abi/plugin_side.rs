//! Plugin side of the boundary: adapters that implement the FFI traits over the plain-Rust
//! component traits, catching panics (and so tch's panicking methods) and turning them into errors.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec};
#[cfg(feature = "tensor")]
use {super::TensorHandle, std::path::Path};

use super::traits::*;
use super::types::*;
use crate::api;

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// libtorch appends a C++ stack trace to its messages; users need the sentence before it.
pub(crate) fn without_cpp_backtrace(message: &str) -> String {
    // Panics from tch's `unwrap` show the error's Debug form, where the newline is escaped.
    let cut = ["\nException raised from", "\\nException raised from"]
        .iter()
        .filter_map(|marker| message.find(marker))
        .min()
        .unwrap_or(message.len());
    message[..cut].trim_end().to_string()
}

/// Run `f`, returning its error or its panic as a message: nothing unwinds into an FFI shim.
pub fn guard<T>(f: impl FnOnce() -> crate::Result<T>) -> FfiResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => RResult::ROk(value),
        Ok(Err(error)) => RResult::RErr(without_cpp_backtrace(&error.to_string()).into()),
        Err(payload) => {
            RResult::RErr(format!("panicked: {}", without_cpp_backtrace(&panic_message(payload.as_ref()))).into())
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> crate::Result<RString> {
    Ok(serde_json::to_string(value)?.into())
}

macro_rules! guards {
    ($($(#[$gate:meta])* $kind:ident: $api:ident => $abi:ident, $boxed:ident, $guard:ident, $($_:ident),*;)*) => {
        $(
            $(#[$gate])*
            #[doc = concat!("A plugin's ", stringify!($kind), " seen through its `sabi_trait`: no error or panic escapes.")]
            pub struct $guard(pub Box<dyn api::$api>);
        )*
    };
}
crate::component_kinds!(guards);

#[cfg(feature = "tensor")]
impl PolicyAbi for PolicyGuard {
    fn describe(&self) -> FfiResult<RString> {
        guard(|| to_json(&self.0.describe()?))
    }
    fn tokenize(&self, text: RStr<'_>, add_special_tokens: bool) -> FfiResult<RVec<u32>> {
        guard(|| Ok(self.0.tokenize(text.as_str(), add_special_tokens)?.into()))
    }
    fn decode(&self, ids: RSlice<'_, u32>, skip_special_tokens: bool) -> FfiResult<RString> {
        guard(|| Ok(self.0.decode(ids.as_slice(), skip_special_tokens)?.into()))
    }
    fn apply_chat_template(&self, messages_json: RStr<'_>, add_generation_prompt: bool) -> FfiResult<RString> {
        guard(|| {
            let messages: Vec<api::ChatMessage> = serde_json::from_str(messages_json.as_str())?;
            Ok(self.0.apply_chat_template(&messages, add_generation_prompt)?.into())
        })
    }
    fn generate(&mut self, prompts: RSlice<'_, RVec<u32>>, params_json: RStr<'_>) -> FfiResult<FfiGenerateOutput> {
        guard(|| {
            let params: api::GenerationParams = serde_json::from_str(params_json.as_str())?;
            let prompts: Vec<Vec<u32>> = prompts.iter().map(|p| p.to_vec()).collect();
            Ok(self.0.generate(&prompts, &params)?.into())
        })
    }
    fn logprobs(&mut self, batch: RSlice<'_, FfiSequence>, options_json: RStr<'_>) -> FfiResult<FfiLogprobOutput> {
        guard(|| {
            let options: api::LogprobOptions = serde_json::from_str(options_json.as_str())?;
            let batch: Vec<api::Sequence> = batch.iter().map(Into::into).collect();
            Ok(self.0.logprobs(&batch, &options)?.into())
        })
    }
    fn parameters(&self) -> FfiResult<RVec<FfiNamedTensor>> {
        guard(|| {
            Ok(self
                .0
                .parameters()?
                .into_iter()
                .map(|(name, tensor)| FfiNamedTensor { name: name.into(), tensor: TensorHandle::owned(tensor) })
                .collect())
        })
    }
    fn save(&self, dir: RStr<'_>) -> FfiResult<()> {
        guard(|| self.0.save(Path::new(dir.as_str())))
    }
    fn load_weights(&mut self, dir: RStr<'_>) -> FfiResult<()> {
        guard(|| self.0.load_weights(Path::new(dir.as_str())))
    }
}

#[cfg(feature = "tensor")]
impl AlgorithmAbi for AlgorithmGuard {
    fn settings(&self) -> FfiResult<RString> {
        guard(|| to_json(&self.0.settings()?))
    }
    fn shape_reward(&self, reward: f32, response_len: u32, max_response_len: u32) -> FfiResult<f32> {
        guard(|| self.0.shape_reward(reward, response_len, max_response_len))
    }
    fn keep_group(&self, rewards: RSlice<'_, f32>) -> FfiResult<bool> {
        guard(|| self.0.keep_group(rewards.as_slice()))
    }
    fn advantages(&self, rewards: RSlice<'_, f32>, group_sizes: RSlice<'_, u32>) -> FfiResult<RVec<f32>> {
        guard(|| Ok(self.0.advantages(rewards.as_slice(), group_sizes.as_slice())?.into()))
    }
    fn loss(&self, inputs: &FfiLossInputs) -> FfiResult<FfiLossOutput> {
        guard(|| {
            let out = self.0.loss(&api::LossInputs::from(inputs))?;
            Ok(FfiLossOutput { loss: TensorHandle::owned(out.loss), metrics_json: to_json(&out.metrics)? })
        })
    }
    fn save_state(&self) -> FfiResult<RVec<u8>> {
        guard(|| Ok(self.0.save_state()?.into()))
    }
    fn load_state(&mut self, state: RSlice<'_, u8>) -> FfiResult<()> {
        guard(|| self.0.load_state(state.as_slice()))
    }
}

impl CurriculumAbi for CurriculumGuard {
    fn phases(&self) -> FfiResult<RString> {
        guard(|| to_json(&self.0.phases()?))
    }
    fn current_phase(&self) -> FfiResult<u64> {
        guard(|| Ok(self.0.current_phase()? as u64))
    }
    fn advance(&mut self, progress_json: RStr<'_>) -> FfiResult<RString> {
        guard(|| {
            let progress: api::PhaseProgress = serde_json::from_str(progress_json.as_str())?;
            to_json(&self.0.advance(progress)?)
        })
    }
    fn save_state(&self) -> FfiResult<RVec<u8>> {
        guard(|| Ok(self.0.save_state()?.into()))
    }
    fn load_state(&mut self, state: RSlice<'_, u8>) -> FfiResult<()> {
        guard(|| self.0.load_state(state.as_slice()))
    }
}

impl SamplerAbi for SamplerGuard {
    fn begin_phase(&mut self, phase: u64, pool: RSlice<'_, FfiPoolItem>) -> FfiResult<()> {
        guard(|| {
            let pool: Vec<api::PoolItem> = pool.iter().map(Into::into).collect();
            self.0.begin_phase(phase as usize, &pool)
        })
    }
    fn next_batch(&mut self, n: u64) -> FfiResult<RVec<u32>> {
        guard(|| Ok(self.0.next_batch(n as usize)?.into()))
    }
    fn observe(&mut self, index: u32, rewards: RSlice<'_, f32>) -> FfiResult<()> {
        guard(|| self.0.observe(index, rewards.as_slice()))
    }
    fn epochs_completed(&self) -> FfiResult<u64> {
        guard(|| self.0.epochs_completed())
    }
    fn metrics(&self) -> FfiResult<RString> {
        guard(|| to_json(&self.0.metrics()?))
    }
    fn save_state(&self) -> FfiResult<RVec<u8>> {
        guard(|| Ok(self.0.save_state()?.into()))
    }
    fn load_state(&mut self, state: RSlice<'_, u8>) -> FfiResult<()> {
        guard(|| self.0.load_state(state.as_slice()))
    }
}

impl RewardAbi for RewardGuard {
    fn check_sources(&self, sources: RSlice<'_, RString>) -> FfiResult<()> {
        guard(|| {
            let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
            self.0.check_sources(&sources)
        })
    }
    fn score(&self, batch: RSlice<'_, FfiRewardInput>) -> FfiResult<RVec<FfiRewardScore>> {
        guard(|| {
            let batch: Vec<api::RewardInput> = batch.iter().map(Into::into).collect();
            Ok(self.0.score(&batch)?.into_iter().map(Into::into).collect())
        })
    }
    fn take_metrics(&self) -> FfiResult<RString> {
        guard(|| to_json(&self.0.take_metrics()?))
    }
}
