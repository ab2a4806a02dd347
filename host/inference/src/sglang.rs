//! SGLang's native `/generate` with `input_ids` (the wire format only).
//!
//! Request fields follow SGLang's `GenerateReqInput` and `SamplingParams` (docs/basic_usage/sampling_params.md,
//! python/sglang/srt/sampling/sampling_params.py). The group's `n` samples go as a batch of `n` copies of
//! the prompt, each with its own `sampling_seed`, as SGLang's docs advise over `n > 1`; its radix cache
//! prefills the shared prompt once. The answer is a list with, per sample, `output_ids` and
//! `meta_info.output_token_logprobs` (`[logprob, token_id, text]` per sampled token),
//! `meta_info.finish_reason.type` and `meta_info.weight_version`. Every sampling field is sent explicitly
//! (the server otherwise takes the model's `generation_config.json` defaults).

use longrl_core::api::{FinishReason, Generation};
use serde::{Deserialize, Serialize};

use crate::request::GroupRequest;
use crate::retry::{AttemptError, snippet};

pub const GENERATE: &str = "/generate";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// One copy of the prompt per sample.
    pub input_ids: Vec<Vec<u32>>,
    /// One per sample (their seeds differ).
    pub sampling_params: Vec<SamplingParams>,
    pub return_logprob: bool,
    /// -1: log-probs of the output tokens only.
    pub logprob_start_len: i64,
    pub stream: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    pub max_new_tokens: u32,
    pub temperature: f32,
    pub top_p: f32,
    /// -1 disables (SGLang rejects 0).
    pub top_k: i64,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub stop: Vec<String>,
    pub skip_special_tokens: bool,
    pub no_stop_trim: bool,
    pub sampling_seed: u64,
}

impl GenerateRequest {
    pub fn new(group: &GroupRequest) -> Self {
        let s = &group.sampling;
        let params = |j: u32| SamplingParams {
            max_new_tokens: s.max_tokens,
            temperature: s.temperature,
            top_p: s.top_p,
            top_k: if s.top_k == 0 { -1 } else { i64::from(s.top_k) },
            min_p: 0.0,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            stop: s.stop.clone(),
            skip_special_tokens: true,
            no_stop_trim: false,
            sampling_seed: group.sample_seed(j),
        };
        GenerateRequest {
            input_ids: vec![group.prompt.clone(); group.n as usize],
            sampling_params: (0..group.n).map(params).collect(),
            return_logprob: true,
            logprob_start_len: -1,
            stream: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateOutput {
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub output_ids: Option<Vec<u32>>,
    pub meta_info: MetaInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaInfo {
    #[serde(default)]
    pub finish_reason: Option<FinishInfo>,
    /// `[logprob, token_id, text-or-null]` per sampled token.
    #[serde(default)]
    pub output_token_logprobs: Option<Vec<(Option<f64>, u32, serde_json::Value)>>,
    #[serde(default)]
    pub weight_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishInfo {
    #[serde(rename = "type")]
    pub kind: String,
}

/// A parsed sample with the weight version the server reported for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub generation: Generation,
    pub weight_version: Option<String>,
}

/// The `n` samples of a `/generate` answer, in request order.
pub fn parse_generate(body: &str, n: u32) -> Result<Vec<Sample>, AttemptError> {
    let outputs: Vec<GenerateOutput> = serde_json::from_str(body).map_err(|e| {
        AttemptError::fatal(format!("the answer does not follow SGLang's /generate schema ({e}): {}", snippet(body)))
    })?;
    if outputs.len() != n as usize {
        return Err(AttemptError::fatal(format!("asked for {n} samples, got {} outputs", outputs.len())));
    }
    outputs.iter().enumerate().map(|(i, output)| sample(i, output)).collect()
}

fn sample(i: usize, output: &GenerateOutput) -> Result<Sample, AttemptError> {
    let what = |field: &str| format!("[{i}].{field}");
    let entries = output.meta_info.output_token_logprobs.as_ref().ok_or_else(|| {
        AttemptError::fatal(format!(
            "{} is missing: the server ignored `return_logprob`",
            what("meta_info.output_token_logprobs")
        ))
    })?;
    let mut tokens = Vec::with_capacity(entries.len());
    let mut logprobs = Vec::with_capacity(entries.len());
    for (t, (logprob, id, _text)) in entries.iter().enumerate() {
        match logprob {
            Some(v) if v.is_finite() || *v == f64::NEG_INFINITY => logprobs.push(*v as f32),
            other => {
                return Err(AttemptError::fatal(format!(
                    "{}[{t}] has log-prob {other:?}",
                    what("meta_info.output_token_logprobs")
                )));
            }
        }
        tokens.push(*id);
    }
    if let Some(ids) = &output.output_ids
        && *ids != tokens
    {
        return Err(AttemptError::fatal(format!(
            "{} ({} tokens) and the ids in {} ({} tokens) disagree",
            what("output_ids"),
            ids.len(),
            what("meta_info.output_token_logprobs"),
            tokens.len()
        )));
    }
    let finish = match output.meta_info.finish_reason.as_ref().map(|f| f.kind.as_str()) {
        Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("abort") => {
            return Err(AttemptError::retryable(format!("{} is \"abort\"", what("meta_info.finish_reason.type"))));
        }
        other => return Err(AttemptError::fatal(format!("{} is {other:?}", what("meta_info.finish_reason.type")))),
    };
    Ok(Sample {
        generation: Generation { tokens, text: output.text.clone(), logprobs, finish },
        weight_version: output.meta_info.weight_version.clone(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::request::Sampling;

    #[test]
    fn request_has_sglang_field_names_and_per_sample_seeds() {
        let group = GroupRequest {
            prompt: vec![1, 2],
            n: 3,
            seed: 7,
            sampling: Sampling { max_tokens: 4, temperature: 1.0, top_p: 0.9, top_k: 5, stop: vec![] },
        };
        let body = serde_json::to_value(GenerateRequest::new(&group)).unwrap();
        assert_eq!(body["input_ids"], json!([[1, 2], [1, 2], [1, 2]]));
        assert_eq!(body["return_logprob"], json!(true));
        let params = body["sampling_params"].as_array().unwrap();
        assert_eq!(params.len(), 3);
        assert_eq!((params[0]["max_new_tokens"].clone(), params[0]["top_k"].clone()), (json!(4), json!(5)));
        assert_ne!(params[0]["sampling_seed"], params[1]["sampling_seed"]);
        assert_eq!(params[2]["sampling_seed"], json!(group.sample_seed(2)));
    }

    fn output(ids: &[u32], lps: &[f64], finish: &str, version: &str) -> serde_json::Value {
        let entries: Vec<_> = ids.iter().zip(lps).map(|(id, lp)| json!([lp, id, null])).collect();
        json!({"text": "x", "output_ids": ids, "meta_info": {"id": "r", "finish_reason": {"type": finish, "matched": 2},
               "output_token_logprobs": entries, "weight_version": version, "completion_tokens": ids.len()}})
    }

    #[test]
    fn parses_samples_with_versions() {
        let body = json!([output(&[4, 2], &[-0.5, -0.1], "stop", "3"), output(&[9], &[-2.0], "length", "3")]);
        let samples = parse_generate(&body.to_string(), 2).unwrap();
        assert_eq!(samples[0].generation.tokens, vec![4, 2]);
        assert_eq!(samples[0].generation.logprobs, vec![-0.5, -0.1]);
        assert_eq!(samples[1].generation.finish, FinishReason::Length);
        assert_eq!(samples[1].weight_version.as_deref(), Some("3"));
    }

    #[test]
    fn schema_breaks_are_fatal_and_aborts_retryable() {
        let mut mismatched = output(&[4, 2], &[-0.5, -0.1], "stop", "3");
        mismatched["output_ids"] = json!([4]);
        let mut no_logprobs = output(&[4], &[-0.5], "stop", "3");
        no_logprobs["meta_info"]["output_token_logprobs"] = serde_json::Value::Null;
        let ok = output(&[1], &[-1.0], "stop", "3");
        for (body, expected) in [
            (json!([ok.clone()]), "asked for 2"),
            (json!([mismatched, ok.clone()]), "disagree"),
            (json!([no_logprobs, ok.clone()]), "return_logprob"),
            (json!([output(&[1], &[-1.0], "weird", "3"), ok.clone()]), "finish_reason"),
            (json!({"text": "x"}), "schema"),
        ] {
            let error = parse_generate(&body.to_string(), 2).unwrap_err();
            assert!(!error.retryable && error.message.contains(expected), "{expected}: {}", error.message);
        }
        let aborted = json!([output(&[1], &[-1.0], "abort", "3"), ok]);
        assert!(parse_generate(&aborted.to_string(), 2).unwrap_err().retryable);
    }
}
