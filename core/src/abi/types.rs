//! FFI-safe mirrors of the hot data of [`crate::api`], and conversions both ways.
//! Cold data (configs, settings, metrics, state, breakdowns) crosses as JSON or bytes.

use abi_stable::StableAbi;
use abi_stable::std_types::{ROption, RString, RVec};

use super::TensorHandle;
use crate::api;

#[repr(C)]
#[derive(StableAbi)]
pub struct FfiGeneration {
    pub tokens: RVec<u32>,
    pub text: RString,
    pub logprobs: RVec<f32>,
    pub finished_by_length: bool,
}

#[repr(C)]
#[derive(StableAbi)]
pub struct FfiGenerateOutput {
    pub generations: RVec<FfiGeneration>,
    pub prefill_tokens: u64,
    pub prefill_seconds: f64,
    pub decode_tokens: u64,
    pub decode_seconds: f64,
}

#[repr(C)]
#[derive(StableAbi)]
pub struct FfiSequence {
    pub prompt: RVec<u32>,
    pub response: RVec<u32>,
}

#[repr(C)]
#[derive(StableAbi)]
pub struct FfiLogprobOutput {
    pub logprobs: TensorHandle,
    pub entropy: ROption<TensorHandle>,
    pub mask: TensorHandle,
}

#[repr(C)]
#[derive(StableAbi)]
pub struct FfiNamedTensor {
    pub name: RString,
    pub tensor: TensorHandle,
}

#[repr(C)]
#[derive(StableAbi)]
pub struct FfiLossInputs {
    pub logprobs: TensorHandle,
    pub old_logprobs: TensorHandle,
    pub ref_logprobs: ROption<TensorHandle>,
    pub entropy: ROption<TensorHandle>,
    pub advantages: TensorHandle,
    pub mask: TensorHandle,
    pub normalizer_tokens: f64,
    pub normalizer_sequences: f64,
    pub normalizer_max_response_len: f64,
}

#[repr(C)]
#[derive(StableAbi)]
pub struct FfiLossOutput {
    pub loss: TensorHandle,
    pub metrics_json: RString,
}

#[repr(C)]
#[derive(StableAbi)]
pub struct FfiPoolItem {
    pub index: u32,
    pub id: RString,
    pub prompt_tokens: u64,
    pub data_source: RString,
}

#[repr(C)]
#[derive(StableAbi)]
pub struct FfiRewardInput {
    pub response: RString,
    pub ground_truth: RString,
    pub data_source: RString,
    pub prompt: RString,
    pub question: RString,
}

#[repr(C)]
#[derive(StableAbi)]
pub struct FfiRewardScore {
    pub score: f32,
    pub decided_by: RString,
    pub details_json: RString,
}

// ---- conversions -------------------------------------------------------------------------------

impl From<api::Generation> for FfiGeneration {
    fn from(g: api::Generation) -> Self {
        FfiGeneration {
            tokens: g.tokens.into(),
            text: g.text.into(),
            logprobs: g.logprobs.into(),
            finished_by_length: g.finish == api::FinishReason::Length,
        }
    }
}

impl From<FfiGeneration> for api::Generation {
    fn from(g: FfiGeneration) -> Self {
        api::Generation {
            tokens: g.tokens.into_vec(),
            text: g.text.into_string(),
            logprobs: g.logprobs.into_vec(),
            finish: if g.finished_by_length { api::FinishReason::Length } else { api::FinishReason::Stop },
        }
    }
}

impl From<api::GenerateOutput> for FfiGenerateOutput {
    fn from(o: api::GenerateOutput) -> Self {
        FfiGenerateOutput {
            generations: o.generations.into_iter().map(Into::into).collect(),
            prefill_tokens: o.prefill_tokens,
            prefill_seconds: o.prefill_seconds,
            decode_tokens: o.decode_tokens,
            decode_seconds: o.decode_seconds,
        }
    }
}

impl From<FfiGenerateOutput> for api::GenerateOutput {
    fn from(o: FfiGenerateOutput) -> Self {
        api::GenerateOutput {
            generations: o.generations.into_iter().map(Into::into).collect(),
            prefill_tokens: o.prefill_tokens,
            prefill_seconds: o.prefill_seconds,
            decode_tokens: o.decode_tokens,
            decode_seconds: o.decode_seconds,
        }
    }
}

impl From<&api::Sequence> for FfiSequence {
    fn from(s: &api::Sequence) -> Self {
        FfiSequence { prompt: s.prompt.as_slice().into(), response: s.response.as_slice().into() }
    }
}

impl From<&FfiSequence> for api::Sequence {
    fn from(s: &FfiSequence) -> Self {
        api::Sequence { prompt: s.prompt.to_vec(), response: s.response.to_vec() }
    }
}

#[cfg(feature = "tensor")]
impl From<api::LogprobOutput> for FfiLogprobOutput {
    fn from(o: api::LogprobOutput) -> Self {
        FfiLogprobOutput {
            logprobs: TensorHandle::owned(o.logprobs),
            entropy: o.entropy.map(TensorHandle::owned).into(),
            mask: TensorHandle::owned(o.mask),
        }
    }
}

#[cfg(feature = "tensor")]
impl From<FfiLogprobOutput> for api::LogprobOutput {
    fn from(o: FfiLogprobOutput) -> Self {
        api::LogprobOutput {
            logprobs: o.logprobs.into_tensor(),
            entropy: o.entropy.into_option().map(TensorHandle::into_tensor),
            mask: o.mask.into_tensor(),
        }
    }
}

#[cfg(feature = "tensor")]
impl From<&api::LossInputs> for FfiLossInputs {
    fn from(i: &api::LossInputs) -> Self {
        FfiLossInputs {
            logprobs: TensorHandle::owned(i.logprobs.shallow_clone()),
            old_logprobs: TensorHandle::owned(i.old_logprobs.shallow_clone()),
            ref_logprobs: i.ref_logprobs.as_ref().map(|t| TensorHandle::owned(t.shallow_clone())).into(),
            entropy: i.entropy.as_ref().map(|t| TensorHandle::owned(t.shallow_clone())).into(),
            advantages: TensorHandle::owned(i.advantages.shallow_clone()),
            mask: TensorHandle::owned(i.mask.shallow_clone()),
            normalizer_tokens: i.normalizer.tokens,
            normalizer_sequences: i.normalizer.sequences,
            normalizer_max_response_len: i.normalizer.max_response_len,
        }
    }
}

#[cfg(feature = "tensor")]
impl From<&FfiLossInputs> for api::LossInputs {
    fn from(i: &FfiLossInputs) -> Self {
        api::LossInputs {
            logprobs: i.logprobs.to_tensor(),
            old_logprobs: i.old_logprobs.to_tensor(),
            ref_logprobs: i.ref_logprobs.as_ref().map(TensorHandle::to_tensor).into_option(),
            entropy: i.entropy.as_ref().map(TensorHandle::to_tensor).into_option(),
            advantages: i.advantages.to_tensor(),
            mask: i.mask.to_tensor(),
            normalizer: api::LossNormalizer {
                tokens: i.normalizer_tokens,
                sequences: i.normalizer_sequences,
                max_response_len: i.normalizer_max_response_len,
            },
        }
    }
}

impl From<&api::PoolItem> for FfiPoolItem {
    fn from(p: &api::PoolItem) -> Self {
        FfiPoolItem {
            index: p.index,
            id: p.id.as_str().into(),
            prompt_tokens: p.prompt_tokens,
            data_source: p.data_source.as_str().into(),
        }
    }
}

impl From<&FfiPoolItem> for api::PoolItem {
    fn from(p: &FfiPoolItem) -> Self {
        api::PoolItem {
            index: p.index,
            id: p.id.to_string(),
            prompt_tokens: p.prompt_tokens,
            data_source: p.data_source.to_string(),
        }
    }
}

impl From<&api::RewardInput> for FfiRewardInput {
    fn from(r: &api::RewardInput) -> Self {
        FfiRewardInput {
            response: r.response.as_str().into(),
            ground_truth: r.ground_truth.as_str().into(),
            data_source: r.data_source.as_str().into(),
            prompt: r.prompt.as_str().into(),
            question: r.question.as_str().into(),
        }
    }
}

impl From<&FfiRewardInput> for api::RewardInput {
    fn from(r: &FfiRewardInput) -> Self {
        api::RewardInput {
            response: r.response.to_string(),
            ground_truth: r.ground_truth.to_string(),
            data_source: r.data_source.to_string(),
            prompt: r.prompt.to_string(),
            question: r.question.to_string(),
        }
    }
}

impl From<api::RewardScore> for FfiRewardScore {
    fn from(s: api::RewardScore) -> Self {
        FfiRewardScore { score: s.score, decided_by: s.decided_by.into(), details_json: s.details.to_string().into() }
    }
}

impl From<FfiRewardScore> for api::RewardScore {
    fn from(s: FfiRewardScore) -> Self {
        api::RewardScore {
            score: s.score,
            decided_by: s.decided_by.into_string(),
            details: serde_json::from_str(&s.details_json)
                .unwrap_or(serde_json::Value::String(s.details_json.into_string())),
        }
    }
}
