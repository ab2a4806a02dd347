//! vLLM's OpenAI-compatible `/v1/completions` with token-id prompts (the wire format only).
//!
//! Request fields follow `vllm/entrypoints/openai/completion/protocol.py` (`CompletionRequest`):
//! `prompt` as a list of token ids, `n` samples, `logprobs: 0` (only the sampled token's log-prob),
//! `return_token_ids` (the sampled ids in `choices[i].token_ids`) and `return_tokens_as_token_ids`
//! (`logprobs.tokens` as `"token_id:N"`, the fallback where `token_ids` is missing). Every sampling
//! field is sent explicitly: vLLM otherwise fills missing ones from the model's
//! `generation_config.json` (a repetition penalty there would make the rollouts off-policy).
//! The log-probs are of the distribution sampled from only when the server runs with
//! `--logprobs-mode processed_logprobs` (vLLM's default, `raw_logprobs`, is before temperature and top-p).

use longrl_core::api::{FinishReason, Generation};
use serde::{Deserialize, Serialize};

use crate::request::GroupRequest;
use crate::retry::{AttemptError, snippet};

pub const COMPLETIONS: &str = "/v1/completions";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub prompt: Vec<u32>,
    pub n: u32,
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_p: f32,
    /// -1 disables (vLLM accepts -1 and 0).
    pub top_k: i64,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// vLLM takes a signed 64-bit seed; its `n` samples get seeds derived from it.
    pub seed: u64,
    pub stop: Vec<String>,
    pub include_stop_str_in_output: bool,
    pub skip_special_tokens: bool,
    /// 0: the sampled token's log-prob only.
    pub logprobs: u32,
    pub return_token_ids: bool,
    pub return_tokens_as_token_ids: bool,
    pub stream: bool,
}

impl CompletionRequest {
    pub fn new(group: &GroupRequest, model: Option<&str>) -> Self {
        let s = &group.sampling;
        CompletionRequest {
            model: model.map(str::to_string),
            prompt: group.prompt.clone(),
            n: group.n,
            max_tokens: s.max_tokens,
            temperature: s.temperature,
            top_p: s.top_p,
            top_k: if s.top_k == 0 { -1 } else { i64::from(s.top_k) },
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: group.seed & (i64::MAX as u64),
            stop: s.stop.clone(),
            include_stop_str_in_output: false,
            skip_special_tokens: true,
            logprobs: 0,
            return_token_ids: true,
            return_tokens_as_token_ids: true,
            stream: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionResponse {
    pub choices: Vec<Choice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub index: usize,
    pub text: String,
    #[serde(default)]
    pub token_ids: Option<Vec<u32>>,
    #[serde(default)]
    pub logprobs: Option<ChoiceLogprobs>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChoiceLogprobs {
    #[serde(default)]
    pub tokens: Vec<String>,
    #[serde(default)]
    pub token_logprobs: Vec<Option<f64>>,
}

/// The `n` generations of a completion response, in sample order.
pub fn parse_completion(body: &str, n: u32) -> Result<Vec<Generation>, AttemptError> {
    let response: CompletionResponse = serde_json::from_str(body).map_err(|e| {
        AttemptError::fatal(format!("the completion does not follow vLLM's schema ({e}): {}", snippet(body)))
    })?;
    if response.choices.len() != n as usize {
        return Err(AttemptError::fatal(format!("asked for n={n} samples, got {} choices", response.choices.len())));
    }
    let mut choices = response.choices;
    choices.sort_by_key(|c| c.index);
    choices.iter().enumerate().map(|(i, choice)| generation(i, choice)).collect()
}

fn generation(i: usize, choice: &Choice) -> Result<Generation, AttemptError> {
    if choice.index != i {
        return Err(AttemptError::fatal(format!("choice indices are not 0..n (found {} at {i})", choice.index)));
    }
    let what = |field: &str| format!("choices[{i}].{field}");
    let logprobs = choice.logprobs.as_ref().ok_or_else(|| {
        AttemptError::fatal(format!("{} is missing: the server ignored `logprobs: 0`", what("logprobs")))
    })?;
    let values: Vec<f32> = logprobs
        .token_logprobs
        .iter()
        .enumerate()
        .map(|(t, v)| match v {
            Some(v) if v.is_finite() || *v == f64::NEG_INFINITY => Ok(*v as f32),
            _ => Err(AttemptError::fatal(format!("{}[{t}] is {v:?}", what("logprobs.token_logprobs")))),
        })
        .collect::<Result<_, _>>()?;
    let from_strings = || -> Result<Vec<u32>, AttemptError> {
        logprobs
            .tokens
            .iter()
            .map(|t| {
                t.strip_prefix("token_id:").and_then(|id| id.parse().ok()).ok_or_else(|| {
                    AttemptError::fatal(format!(
                        "{} has `{t}`, not `token_id:N` (the server ignored `return_tokens_as_token_ids`)",
                        what("logprobs.tokens")
                    ))
                })
            })
            .collect()
    };
    let tokens = match &choice.token_ids {
        Some(ids) => {
            if !logprobs.tokens.is_empty() && from_strings()? != *ids {
                return Err(AttemptError::fatal(format!(
                    "{} and {} disagree",
                    what("token_ids"),
                    what("logprobs.tokens")
                )));
            }
            ids.clone()
        }
        None => from_strings()?,
    };
    if tokens.len() != values.len() {
        return Err(AttemptError::fatal(format!(
            "{} has {} tokens but {} log-probs",
            what("token_ids"),
            tokens.len(),
            values.len()
        )));
    }
    let finish = match choice.finish_reason.as_deref() {
        Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        // The server aborted it (a pause, a restart): drawing it again is safe.
        Some("abort") => return Err(AttemptError::retryable(format!("{} is \"abort\"", what("finish_reason")))),
        other => return Err(AttemptError::fatal(format!("{} is {other:?}", what("finish_reason")))),
    };
    Ok(Generation { tokens, text: choice.text.clone(), logprobs: values, finish })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::request::Sampling;

    fn group() -> GroupRequest {
        GroupRequest {
            prompt: vec![5, 6, 7],
            n: 2,
            seed: u64::MAX,
            sampling: Sampling { max_tokens: 9, temperature: 0.7, top_p: 0.95, top_k: 0, stop: vec!["\n".into()] },
        }
    }

    #[test]
    fn request_body_has_vllm_field_names_and_types() {
        let body = serde_json::to_value(CompletionRequest::new(&group(), Some("m"))).unwrap();
        assert_eq!(body["prompt"], json!([5, 6, 7]));
        assert_eq!(
            (body["n"].clone(), body["max_tokens"].clone(), body["top_k"].clone()),
            (json!(2), json!(9), json!(-1))
        );
        assert_eq!(body["logprobs"], json!(0));
        assert_eq!(body["return_token_ids"], json!(true));
        assert_eq!(body["seed"], json!(i64::MAX));
        assert_eq!(body["model"], json!("m"));
        let without = serde_json::to_value(CompletionRequest::new(&group(), None)).unwrap();
        assert!(without.get("model").is_none());
    }

    fn choice(
        index: usize,
        ids: Option<Vec<u32>>,
        tokens: Vec<&str>,
        lps: Vec<f64>,
        finish: &str,
    ) -> serde_json::Value {
        json!({"index": index, "text": "t", "token_ids": ids, "finish_reason": finish,
               "logprobs": {"tokens": tokens, "token_logprobs": lps, "top_logprobs": null, "text_offset": []}})
    }

    #[test]
    fn parses_ids_logprobs_and_finish_in_index_order() {
        let body = json!({"id": "c", "object": "text_completion", "choices": [
            choice(1, Some(vec![3]), vec!["token_id:3"], vec![-0.5], "length"),
            choice(0, None, vec!["token_id:8", "token_id:2"], vec![-1.0, -0.25], "stop"),
        ], "usage": {}});
        let out = parse_completion(&body.to_string(), 2).unwrap();
        assert_eq!(out[0].tokens, vec![8, 2]);
        assert_eq!(out[0].logprobs, vec![-1.0, -0.25]);
        assert_eq!(out[0].finish, FinishReason::Stop);
        assert_eq!((out[1].tokens.clone(), out[1].finish), (vec![3], FinishReason::Length));
    }

    #[test]
    fn schema_breaks_are_fatal_and_aborts_retryable() {
        let cases = [
            (json!({"choices": [choice(0, Some(vec![1]), vec![], vec![-1.0], "stop")]}), "n=2"),
            (
                json!({"choices": [choice(0, Some(vec![1, 2]), vec![], vec![-1.0], "stop"),
                                choice(1, Some(vec![1]), vec![], vec![-1.0], "stop")]}),
                "2 tokens but 1 log-probs",
            ),
            (
                json!({"choices": [choice(0, None, vec!["hi"], vec![-1.0], "stop"),
                                choice(1, Some(vec![1]), vec![], vec![-1.0], "stop")]}),
                "token_id:N",
            ),
            (
                json!({"choices": [choice(0, Some(vec![4]), vec!["token_id:5"], vec![-1.0], "stop"),
                                choice(1, Some(vec![1]), vec![], vec![-1.0], "stop")]}),
                "disagree",
            ),
            (
                json!({"choices": [{"index": 0, "text": "", "token_ids": [1], "finish_reason": "stop"},
                                choice(1, Some(vec![1]), vec![], vec![-1.0], "stop")]}),
                "logprobs is missing",
            ),
            (
                json!({"choices": [choice(0, Some(vec![1]), vec![], vec![-1.0], "eos"),
                                choice(1, Some(vec![1]), vec![], vec![-1.0], "stop")]}),
                "finish_reason",
            ),
            (json!({"choices": "x"}), "schema"),
        ];
        for (body, expected) in cases {
            let error = parse_completion(&body.to_string(), 2).unwrap_err();
            assert!(!error.retryable && error.message.contains(expected), "{expected}: {}", error.message);
        }
        let aborted = json!({"choices": [choice(0, Some(vec![1]), vec![], vec![-1.0], "abort"),
                                         choice(1, Some(vec![1]), vec![], vec![-1.0], "stop")]});
        assert!(parse_completion(&aborted.to_string(), 2).unwrap_err().retryable);
    }
}
