//! The judge's config table and its checks.

use std::path::PathBuf;
use std::time::Duration;

use longrl_core::{Error, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::prompt::{DEFAULT_SYSTEM_PROMPT, DEFAULT_USER_TEMPLATE, PLACEHOLDERS};

/// Which official code the judge call follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// The RL reward (`verl/utils/reward_score/docqa.py`): the answer after `</think>`, required.
    Train,
    /// The evaluation scripts (`eval/<bench>_verify.py`): the answer after `</think>` when present,
    /// else the whole response; seed 42.
    Eval,
}

/// How the judge's reply becomes a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerdictRule {
    /// The official `"YES" in reply`: yes when "YES" appears anywhere (case-sensitive).
    ContainsYes,
    /// The last `[[YES]]` or `[[NO]]` (any case) decides; neither is `unparsed` (scored no).
    LastMarker,
}

/// The judge's config table. Each field's doc comment is its documentation in `longrl plugins inspect`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeConfig {
    /// `train`: as the official RL reward calls the judge (answer after `</think>`, required); `eval`:
    /// as the official eval scripts (answer after `</think>` when present, else the whole response; seed 42).
    pub protocol: Protocol,
    /// Send answers the official code would not: "the answer is" in any case, a leading colon dropped,
    /// and the whole answer text when it states no "the answer is" (off: such a response is not sent
    /// and scores 0).
    pub lenient: bool,
    /// `contains_yes`: yes when the reply contains "YES" (the official rule); `last_marker`: the last
    /// [[YES]] or [[NO]] decides (a reply quoting the format line is not a yes).
    pub verdict_rule: VerdictRule,
    /// Base URL of the OpenAI-compatible API (requests go to <url>/chat/completions).
    pub url: String,
    /// Model name sent to the endpoint (required).
    pub model: String,
    /// Name of the environment variable holding the API key (empty: no key); keys never go in config.
    pub api_key_env: String,
    /// Requests sent concurrently.
    pub max_in_flight: usize,
    /// Per-request timeout, connection included.
    pub timeout_secs: f64,
    /// Retries after a 429, a 5xx, a timeout or a connection error.
    pub max_retries: u32,
    /// First retry delay; doubles on each retry (a Retry-After header is honoured).
    pub backoff_initial_ms: u64,
    /// Cap on one retry delay.
    pub backoff_max_ms: u64,
    /// Items failing after retries that open the circuit: later items fall back at once.
    pub circuit_breaker_failures: u32,
    /// How long an open circuit stays open before the judge is tried again.
    pub circuit_breaker_cooldown_secs: f64,
    /// System message (default: the QwenLong-L1 judge prompt, verbatim).
    pub system_prompt: String,
    /// User message with {problem}, {answer_1} (prediction) and {answer_2} (gold).
    pub user_template: String,
    /// JSONL of every verdict and its rationale (default: judge_audit.jsonl in the run directory;
    /// relative paths are under it).
    pub audit_file: Option<PathBuf>,
    /// Token budget of the judge's reply.
    pub max_tokens: u32,
    /// Seed sent with each request (null: 42 with protocol eval, as the official scripts; none in train).
    pub seed: Option<u64>,
    /// A response without `</think>` scores 0 without asking the judge; null: the protocol's rule
    /// (train: yes, eval: no).
    pub require_think: Option<bool>,
    /// Verdicts kept in the (problem, prediction, gold) cache; the least recently used is evicted (0: no cache).
    pub cache_entries: usize,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig {
            protocol: Protocol::Train,
            lenient: false,
            verdict_rule: VerdictRule::ContainsYes,
            url: "http://127.0.0.1:8000/v1".into(),
            model: String::new(),
            api_key_env: String::new(),
            max_in_flight: 16,
            timeout_secs: 60.0,
            max_retries: 5,
            backoff_initial_ms: 250,
            backoff_max_ms: 8000,
            circuit_breaker_failures: 8,
            circuit_breaker_cooldown_secs: 30.0,
            system_prompt: DEFAULT_SYSTEM_PROMPT.into(),
            user_template: DEFAULT_USER_TEMPLATE.into(),
            audit_file: None,
            max_tokens: 1024,
            seed: None,
            require_think: None,
            cache_entries: 100_000,
        }
    }
}

impl JudgeConfig {
    pub fn validate(&self) -> Result<()> {
        let url = self.url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::config("url", format!("must start with http:// or https:// (got `{url}`)")));
        }
        if self.model.trim().is_empty() {
            return Err(Error::config("model", "the judge model name is required"));
        }
        if self.max_in_flight == 0 {
            return Err(Error::config("max_in_flight", "must be at least 1"));
        }
        if !(self.timeout_secs.is_finite() && self.timeout_secs > 0.0 && self.timeout_secs <= 3600.0) {
            return Err(Error::config("timeout_secs", "must be in (0, 3600]"));
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            return Err(Error::config("backoff_max_ms", "must be at least backoff_initial_ms"));
        }
        if self.backoff_max_ms > 600_000 {
            return Err(Error::config("backoff_max_ms", "must be at most 600000 (10 minutes)"));
        }
        if self.max_retries > 20 {
            return Err(Error::config("max_retries", "must be at most 20"));
        }
        if self.circuit_breaker_failures == 0 {
            return Err(Error::config("circuit_breaker_failures", "must be at least 1"));
        }
        let cooldown = self.circuit_breaker_cooldown_secs;
        if !(cooldown.is_finite() && cooldown >= 0.0 && cooldown <= 86_400.0) {
            return Err(Error::config("circuit_breaker_cooldown_secs", "must be in [0, 86400]"));
        }
        for placeholder in PLACEHOLDERS {
            if !self.user_template.contains(placeholder) {
                return Err(Error::config("user_template", format!("must contain {placeholder}")));
            }
        }
        if self.max_tokens == 0 {
            return Err(Error::config("max_tokens", "must be at least 1"));
        }
        Ok(())
    }

    pub fn chat_url(&self) -> String {
        format!("{}/chat/completions", self.url.trim().trim_end_matches('/'))
    }

    pub fn require_think(&self) -> bool {
        self.require_think.unwrap_or(self.protocol == Protocol::Train)
    }

    pub fn seed(&self) -> Option<u64> {
        match (self.seed, self.protocol) {
            (Some(seed), _) => Some(seed),
            (None, Protocol::Eval) => Some(42),
            (None, Protocol::Train) => None,
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs)
    }

    pub fn cooldown(&self) -> Duration {
        Duration::from_secs_f64(self.circuit_breaker_cooldown_secs)
    }

    /// The delay before retry `retry` (0-based): doubling from the initial delay, capped.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u64.checked_shl(retry.min(32)).unwrap_or(u64::MAX);
        Duration::from_millis(self.backoff_initial_ms.saturating_mul(factor).min(self.backoff_max_ms))
    }

    /// The longest one item can take once it holds a request slot: every attempt times out and
    /// every retry waits the longest backoff. The item's deadline (counted from the slot) and,
    /// times the rounds of slots, the batch's.
    pub fn worst_case_per_item(&self) -> Duration {
        let attempts = self.max_retries + 1;
        self.timeout() * attempts + Duration::from_millis(self.backoff_max_ms) * self.max_retries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let config = JudgeConfig { backoff_initial_ms: 100, backoff_max_ms: 500, ..Default::default() };
        let ms: Vec<u128> = (0..5).map(|r| config.backoff(r).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 500, 500]);
        assert_eq!(config.backoff(200).as_millis(), 500);
    }

    #[test]
    fn bad_values_name_their_key() {
        let base = JudgeConfig { model: "m".into(), ..Default::default() };
        base.validate().unwrap();
        let cases = [
            (JudgeConfig { model: " ".into(), ..base.clone() }, "model"),
            (JudgeConfig { url: "ftp://x".into(), ..base.clone() }, "url"),
            (JudgeConfig { max_in_flight: 0, ..base.clone() }, "max_in_flight"),
            (JudgeConfig { timeout_secs: f64::NAN, ..base.clone() }, "timeout_secs"),
            (JudgeConfig { backoff_initial_ms: 10, backoff_max_ms: 5, ..base.clone() }, "backoff_max_ms"),
            (JudgeConfig { user_template: "{problem} {answer_1}".into(), ..base.clone() }, "user_template"),
            (JudgeConfig { circuit_breaker_failures: 0, ..base.clone() }, "circuit_breaker_failures"),
        ];
        for (config, key) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err} should name {key}");
        }
    }

    #[test]
    fn chat_url_joins_cleanly() {
        let config = JudgeConfig { url: "http://h:1/v1/".into(), ..Default::default() };
        assert_eq!(config.chat_url(), "http://h:1/v1/chat/completions");
    }
}
