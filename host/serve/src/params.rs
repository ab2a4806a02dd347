//! Request sampling fields checked and turned into the policy's `GenerationParams`.

use longrl_core::api::GenerationParams;

use super::openai::{ApiError, SamplingFields, StopSpec};

/// OpenAI's limit on stop sequences.
const MAX_STOP: usize = 4;

/// Validated sampling settings of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Everything but the seed (`params.seed` is set by the engine).
    pub params: GenerationParams,
    /// The request's seed; `None` lets the engine pick one per batch.
    pub seed: Option<u64>,
}

pub struct Limits {
    /// `max_tokens` when the request gives none.
    pub default_max_tokens: u32,
    pub max_n: u32,
}

pub fn sampling(fields: &SamplingFields, limits: &Limits) -> Result<Sampling, ApiError> {
    if fields.stream == Some(true) {
        return Err(ApiError::bad_param("stream", "streaming is not supported by this server; send stream=false"));
    }
    let temperature = fields.temperature.unwrap_or(1.0);
    if !(temperature.is_finite() && (0.0..=2.0).contains(&temperature)) {
        return Err(ApiError::bad_param("temperature", format!("temperature must be in [0, 2] (got {temperature})")));
    }
    let top_p = fields.top_p.unwrap_or(1.0);
    if !(top_p.is_finite() && top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::bad_param("top_p", format!("top_p must be in (0, 1] (got {top_p})")));
    }
    let top_k = match fields.top_k.unwrap_or(0) {
        -1 | 0 => 0,
        k if k > 0 && k <= i64::from(u32::MAX) => k as u32,
        k => return Err(ApiError::bad_param("top_k", format!("top_k must be -1, 0 or positive (got {k})"))),
    };
    let (max_tokens, max_name) = match (fields.max_completion_tokens, fields.max_tokens) {
        (Some(value), _) => (value, "max_completion_tokens"),
        (None, Some(value)) => (value, "max_tokens"),
        (None, None) => (i64::from(limits.default_max_tokens), "max_tokens"),
    };
    if max_tokens < 1 || max_tokens > i64::from(u32::MAX) {
        return Err(ApiError::bad_param(max_name, format!("{max_name} must be at least 1 (got {max_tokens})")));
    }
    let n = fields.n.unwrap_or(1);
    if n < 1 || n > i64::from(limits.max_n) {
        return Err(ApiError::bad_param("n", format!("n must be in [1, {}] (got {n})", limits.max_n)));
    }
    let seed = match fields.seed {
        Some(seed) if seed < 0 => {
            return Err(ApiError::bad_param("seed", format!("seed must be non-negative (got {seed})")));
        }
        Some(seed) => Some(seed as u64),
        None => None,
    };
    let stop = match &fields.stop {
        None => Vec::new(),
        Some(StopSpec::One(s)) => vec![s.clone()],
        Some(StopSpec::Many(list)) => list.clone(),
    };
    if stop.len() > MAX_STOP {
        return Err(ApiError::bad_param("stop", format!("at most {MAX_STOP} stop sequences (got {})", stop.len())));
    }
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::bad_param("stop", "stop sequences must not be empty"));
    }
    let params = GenerationParams {
        max_new_tokens: max_tokens as u32,
        temperature: temperature as f32,
        top_p: top_p as f32,
        top_k,
        seed: 0,
        stop,
        rollouts: n as u32,
        prefill_chunk: 0,
    };
    // Greedy decoding ignores the seed: let greedy requests share a batch whatever seed they sent.
    let seed = if temperature == 0.0 { None } else { seed };
    Ok(Sampling { params, seed })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { default_max_tokens: 16, max_n: 8 };

    fn fields(json: serde_json::Value) -> SamplingFields {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn defaults_and_conversions() {
        let s = sampling(&fields(serde_json::json!({})), &LIMITS).unwrap();
        assert_eq!(
            (s.params.max_new_tokens, s.params.temperature, s.params.top_p, s.params.rollouts),
            (16, 1.0, 1.0, 1)
        );
        let s = sampling(
            &fields(serde_json::json!({"temperature": 0.5, "top_p": 0.9, "max_tokens": 7, "seed": 3, "stop": "\n", "n": 2, "top_k": -1})),
            &LIMITS,
        )
        .unwrap();
        assert_eq!(s.params.stop, vec!["\n".to_string()]);
        assert_eq!((s.params.max_new_tokens, s.params.rollouts, s.params.top_k, s.seed), (7, 2, 0, Some(3)));
        let s =
            sampling(&fields(serde_json::json!({"temperature": 0, "seed": 3, "max_completion_tokens": 9})), &LIMITS)
                .unwrap();
        assert_eq!((s.seed, s.params.max_new_tokens), (None, 9));
    }

    #[test]
    fn bad_values_name_their_param() {
        let cases = [
            (serde_json::json!({"temperature": 2.5}), "temperature"),
            (serde_json::json!({"temperature": -0.1}), "temperature"),
            (serde_json::json!({"top_p": 0}), "top_p"),
            (serde_json::json!({"max_tokens": 0}), "max_tokens"),
            (serde_json::json!({"max_completion_tokens": -3}), "max_completion_tokens"),
            (serde_json::json!({"n": 9}), "n"),
            (serde_json::json!({"seed": -1}), "seed"),
            (serde_json::json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
            (serde_json::json!({"stop": [""]}), "stop"),
            (serde_json::json!({"stream": true}), "stream"),
            (serde_json::json!({"top_k": -2}), "top_k"),
        ];
        for (json, param) in cases {
            let err = sampling(&fields(json.clone()), &LIMITS).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param), "{json}");
            assert_eq!(err.status, 400);
        }
    }
}
