#![allow(non_local_definitions)] // abi_stable's sabi_trait expansion
//! One `sabi_trait` per component kind: the vtables that cross the cdylib boundary.
//!
//! Errors cross as `RString` messages; the host side re-attaches the component label.

use abi_stable::sabi_trait;
use abi_stable::std_types::{RBox, RResult, RSlice, RStr, RString, RVec};

use super::types::*;

pub type FfiResult<T> = RResult<T, RString>;

#[sabi_trait]
pub trait PolicyAbi: Send {
    fn describe(&self) -> FfiResult<RString>;
    fn tokenize(&self, text: RStr<'_>, add_special_tokens: bool) -> FfiResult<RVec<u32>>;
    fn decode(&self, ids: RSlice<'_, u32>, skip_special_tokens: bool) -> FfiResult<RString>;
    fn apply_chat_template(&self, messages_json: RStr<'_>, add_generation_prompt: bool) -> FfiResult<RString>;
    fn generate(&mut self, prompts: RSlice<'_, RVec<u32>>, params_json: RStr<'_>) -> FfiResult<FfiGenerateOutput>;
    fn logprobs(&mut self, batch: RSlice<'_, FfiSequence>, options_json: RStr<'_>) -> FfiResult<FfiLogprobOutput>;
    fn parameters(&self) -> FfiResult<RVec<FfiNamedTensor>>;
    fn save(&self, dir: RStr<'_>) -> FfiResult<()>;
    #[sabi(last_prefix_field)]
    fn load_weights(&mut self, dir: RStr<'_>) -> FfiResult<()>;
}

#[sabi_trait]
pub trait AlgorithmAbi: Send {
    fn settings(&self) -> FfiResult<RString>;
    fn shape_reward(&self, reward: f32, response_len: u32, max_response_len: u32) -> FfiResult<f32>;
    fn keep_group(&self, rewards: RSlice<'_, f32>) -> FfiResult<bool>;
    fn advantages(&self, rewards: RSlice<'_, f32>, group_sizes: RSlice<'_, u32>) -> FfiResult<RVec<f32>>;
    fn loss(&self, inputs: &FfiLossInputs) -> FfiResult<FfiLossOutput>;
    fn save_state(&self) -> FfiResult<RVec<u8>>;
    #[sabi(last_prefix_field)]
    fn load_state(&mut self, state: RSlice<'_, u8>) -> FfiResult<()>;
}

#[sabi_trait]
pub trait CurriculumAbi: Send {
    fn phases(&self) -> FfiResult<RString>;
    fn current_phase(&self) -> FfiResult<u64>;
    fn advance(&mut self, progress_json: RStr<'_>) -> FfiResult<RString>;
    fn save_state(&self) -> FfiResult<RVec<u8>>;
    #[sabi(last_prefix_field)]
    fn load_state(&mut self, state: RSlice<'_, u8>) -> FfiResult<()>;
}

#[sabi_trait]
pub trait SamplerAbi: Send {
    fn begin_phase(&mut self, phase: u64, pool: RSlice<'_, FfiPoolItem>) -> FfiResult<()>;
    fn next_batch(&mut self, n: u64) -> FfiResult<RVec<u32>>;
    fn observe(&mut self, index: u32, rewards: RSlice<'_, f32>) -> FfiResult<()>;
    fn epochs_completed(&self) -> FfiResult<u64>;
    fn metrics(&self) -> FfiResult<RString>;
    fn save_state(&self) -> FfiResult<RVec<u8>>;
    #[sabi(last_prefix_field)]
    fn load_state(&mut self, state: RSlice<'_, u8>) -> FfiResult<()>;
}

#[sabi_trait]
pub trait RewardAbi: Send + Sync {
    fn check_sources(&self, sources: RSlice<'_, RString>) -> FfiResult<()>;
    fn score(&self, batch: RSlice<'_, FfiRewardInput>) -> FfiResult<RVec<FfiRewardScore>>;
    #[sabi(last_prefix_field)]
    fn take_metrics(&self) -> FfiResult<RString>;
}

macro_rules! ffi_boxes {
    ($($(#[$gate:meta])* $kind:ident: $api:ident => $abi:ident, $boxed:ident, $($_:ident),*;)*) => {
        $(
            #[doc = concat!("A ", stringify!($kind), " behind the FFI boundary.")]
            pub type $boxed = $abi<'static, RBox<()>>;
        )*
    };
}
crate::component_kinds!(ffi_boxes);
