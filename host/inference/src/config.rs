//! `[rollout]`: where rollouts are generated (the policy itself, or vLLM / SGLang servers), how the
//! client talks to the servers, how the weights reach them, and the off-policy correction.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Who generates the rollouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The policy plugin's own `generate` (KV-cache loop in the trainer's process): CPU, tests, small models.
    #[default]
    Local,
    /// vLLM's OpenAI-compatible `/v1/completions` and its weight-transfer API (or `longrl serve --weight-transfer`).
    Vllm,
    /// SGLang's native `/generate` and `/update_weights_from_disk`.
    Sglang,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Vllm => "vllm",
            Backend::Sglang => "sglang",
        }
    }
}

/// The route a vLLM server reloads weights by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum VllmReload {
    /// The weight-transfer API (`init_weight_transfer_engine`, `start_weight_update`, `update_weights`,
    /// `finish_weight_update`) with the `disk` backend: server started with
    /// `--weight-transfer-config '{"backend": "disk"}'`.
    #[default]
    WeightTransfer,
    /// Versions without the disk backend: `/collective_rpc` `reload_weights(weights_path=DIR)` (layerwise
    /// reload), then `/update_weight_version`.
    CollectiveRpc,
}

/// How weight bytes travel to the servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// An HF safetensors directory on storage the servers see at the same path.
    #[default]
    Disk,
    /// NCCL broadcast from trainer rank 0 (needs CUDA and the process-group shim).
    Nccl,
}

/// Truncated importance sampling of the server's samples (Yao et al. 2025, "Your efficient RL framework
/// secretly brings you off-policy RL training"; verl `rollout_is`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IsLevel {
    #[default]
    Off,
    /// One weight per token: `min(pi_trainer / pi_server, cap)`.
    Token,
    /// One weight per response: `min(prod_t pi_trainer / pi_server, cap)`.
    Sequence,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeightSyncConfig {
    /// Where the trainer writes the weights after each step; the servers must see the same absolute path
    /// (shared storage). Empty: `RUN_DIR/weights`.
    pub dir: Option<PathBuf>,
    /// Published weight directories kept on disk (the newest ones; at least 1).
    pub keep: u32,
    pub transport: TransportKind,
    pub vllm_reload: VllmReload,
    /// Each control call (pause, load, resume, ...) must answer within this; a 14B load from disk takes
    /// tens of seconds.
    pub timeout_secs: f64,
}

impl Default for WeightSyncConfig {
    fn default() -> Self {
        WeightSyncConfig {
            dir: None,
            keep: 2,
            transport: TransportKind::Disk,
            vllm_reload: VllmReload::WeightTransfer,
            timeout_secs: 600.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrectionConfig {
    /// `off`, `token` or `sequence`.
    pub tis: IsLevel,
    /// Importance weights are truncated at this (verl's `rollout_is_threshold`).
    pub tis_cap: f64,
}

impl Default for CorrectionConfig {
    fn default() -> Self {
        CorrectionConfig { tis: IsLevel::Off, tis_cap: 2.0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutConfig {
    /// `local`, `vllm` or `sglang`.
    pub backend: Backend,
    /// The server's base URL (`http://host:port`); give `url` or `urls`.
    pub url: Option<String>,
    /// Several servers share the rollouts; a prompt's samples all go to one server (its prefix cache
    /// serves the prompt once), prompts spread over the servers.
    pub urls: Vec<String>,
    /// The `model` name sent to vLLM (`--served-model-name`); empty: the server's only model.
    pub model: Option<String>,
    /// Requests (prompts) in flight per server.
    pub concurrency: u32,
    /// Deadline of one generation request, connection included; a stalled request fails then.
    pub timeout_secs: f64,
    pub connect_timeout_secs: f64,
    /// Retries after a 5xx, a timeout or a connection error (not after a 4xx).
    pub max_retries: u32,
    /// First backoff; it doubles per retry up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub weight_sync: WeightSyncConfig,
    pub correction: CorrectionConfig,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig {
            backend: Backend::Local,
            url: None,
            urls: Vec::new(),
            model: None,
            concurrency: 64,
            timeout_secs: 3600.0,
            connect_timeout_secs: 10.0,
            max_retries: 3,
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            weight_sync: WeightSyncConfig::default(),
            correction: CorrectionConfig::default(),
        }
    }
}

/// A config error naming its key (`rollout.<key>`).
#[derive(Debug, thiserror::Error)]
#[error("config key `rollout.{key}`: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn bad(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_string(), message: message.into() }
}

impl RolloutConfig {
    /// Checks serde cannot express, each naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (self.backend, &self.url, self.urls.is_empty()) {
            (Backend::Local, Some(_), _) | (Backend::Local, _, false) => {
                return Err(bad(
                    "url",
                    "is set but `rollout.backend` is \"local\"; set backend = \"vllm\" or \"sglang\"",
                ));
            }
            (Backend::Local, None, true) => {}
            (_, Some(_), false) => return Err(bad("urls", "give `url` or `urls`, not both")),
            (backend, None, true) => {
                return Err(bad(
                    "url",
                    format!("backend \"{}\" needs the server's URL (`url` or `urls`)", backend.name()),
                ));
            }
            _ => {}
        }
        for (i, url) in self.servers().iter().enumerate() {
            let key = if self.url.is_some() { "url".to_string() } else { format!("urls[{i}]") };
            check_url(url).map_err(|message| bad(&key, message))?;
        }
        let mut seen = self.servers();
        seen.sort();
        if let Some(pair) = seen.windows(2).find(|w| normalize(&w[0]) == normalize(&w[1])) {
            return Err(bad("urls", format!("{} is listed twice", pair[0])));
        }
        if matches!(&self.model, Some(m) if m.trim().is_empty()) {
            return Err(bad("model", "is empty; leave it out to use the server's only model"));
        }
        if self.concurrency == 0 {
            return Err(bad("concurrency", "must be at least 1"));
        }
        positive_seconds("timeout_secs", self.timeout_secs)?;
        positive_seconds("connect_timeout_secs", self.connect_timeout_secs)?;
        positive_seconds("weight_sync.timeout_secs", self.weight_sync.timeout_secs)?;
        if self.backoff_initial_ms == 0 || self.backoff_max_ms < self.backoff_initial_ms {
            return Err(bad("backoff_initial_ms", "must be at least 1 and at most `backoff_max_ms`"));
        }
        if self.weight_sync.keep == 0 {
            return Err(bad("weight_sync.keep", "must be at least 1"));
        }
        if let Some(dir) = &self.weight_sync.dir
            && dir.as_os_str().is_empty()
        {
            return Err(bad("weight_sync.dir", "is empty; leave it out for RUN_DIR/weights"));
        }
        if self.correction.tis != IsLevel::Off
            && !(self.correction.tis_cap.is_finite() && self.correction.tis_cap >= 1.0)
        {
            return Err(bad("correction.tis_cap", format!("must be a number >= 1, got {}", self.correction.tis_cap)));
        }
        if self.correction.tis != IsLevel::Off && self.backend == Backend::Local {
            return Err(bad(
                "correction.tis",
                "needs a server backend: with backend = \"local\" the trainer samples its own rollouts",
            ));
        }
        Ok(())
    }

    /// The servers' base URLs, without a trailing slash, in config order.
    pub fn servers(&self) -> Vec<String> {
        match &self.url {
            Some(url) => vec![normalize(url)],
            None => self.urls.iter().map(|u| normalize(u)).collect(),
        }
    }

    pub fn is_remote(&self) -> bool {
        self.backend != Backend::Local
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.connect_timeout_secs)
    }

    pub fn sync_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.weight_sync.timeout_secs)
    }
}

fn normalize(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

fn check_url(url: &str) -> Result<(), String> {
    let url = normalize(url);
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("`{url}` must start with http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("`{url}` has no host"));
    }
    if rest.contains("/v1") {
        return Err(format!("`{url}` is the API root; give the server's base URL (without /v1)"));
    }
    Ok(())
}

fn positive_seconds(key: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 && value <= 86_400.0 {
        Ok(())
    } else {
        Err(bad(key, format!("must be a number of seconds in (0, 86400], got {value}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(url: &str) -> RolloutConfig {
        RolloutConfig { backend: Backend::Vllm, url: Some(url.into()), ..RolloutConfig::default() }
    }

    #[test]
    fn defaults_are_local_and_valid() {
        let config = RolloutConfig::default();
        config.validate().unwrap();
        assert!(!config.is_remote());
        assert!(config.servers().is_empty());
    }

    #[test]
    fn parses_toml_with_every_section() {
        let config: RolloutConfig = toml_like(serde_json::json!({
            "backend": "sglang",
            "urls": ["http://a:30000/", "http://b:30000"],
            "concurrency": 8,
            "weight_sync": {"dir": "/shared/w", "keep": 3, "vllm_reload": "collective-rpc"},
            "correction": {"tis": "sequence", "tis_cap": 3.0},
        }));
        config.validate().unwrap();
        assert_eq!(config.servers(), vec!["http://a:30000", "http://b:30000"]);
        assert_eq!(config.weight_sync.vllm_reload, VllmReload::CollectiveRpc);
        assert_eq!(config.correction.tis, IsLevel::Sequence);
    }

    fn toml_like(value: serde_json::Value) -> RolloutConfig {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let error = serde_json::from_value::<RolloutConfig>(serde_json::json!({"urll": "x"})).unwrap_err();
        assert!(error.to_string().contains("urll"), "{error}");
    }

    #[test]
    fn errors_name_the_key() {
        let cases: Vec<(RolloutConfig, &str)> = vec![
            (RolloutConfig { backend: Backend::Vllm, ..RolloutConfig::default() }, "rollout.url"),
            (RolloutConfig { url: Some("http://a".into()), ..RolloutConfig::default() }, "rollout.url"),
            (RolloutConfig { urls: vec!["http://a".into()], ..remote("http://b") }, "rollout.urls"),
            (remote("localhost:8000"), "rollout.url"),
            (remote("http://h:8000/v1"), "rollout.url"),
            (
                RolloutConfig { url: None, urls: vec!["http://a".into(), "ftp://b".into()], ..remote("x") },
                "rollout.urls[1]",
            ),
            (
                RolloutConfig { url: None, urls: vec!["http://a/".into(), "http://a".into()], ..remote("x") },
                "rollout.urls",
            ),
            (RolloutConfig { concurrency: 0, ..remote("http://a") }, "rollout.concurrency"),
            (RolloutConfig { timeout_secs: 0.0, ..remote("http://a") }, "rollout.timeout_secs"),
            (RolloutConfig { timeout_secs: f64::NAN, ..remote("http://a") }, "rollout.timeout_secs"),
            (RolloutConfig { model: Some(" ".into()), ..remote("http://a") }, "rollout.model"),
            (RolloutConfig { backoff_max_ms: 1, ..remote("http://a") }, "rollout.backoff_initial_ms"),
            (
                RolloutConfig {
                    weight_sync: WeightSyncConfig { keep: 0, ..WeightSyncConfig::default() },
                    ..remote("http://a")
                },
                "rollout.weight_sync.keep",
            ),
            (
                RolloutConfig {
                    weight_sync: WeightSyncConfig { timeout_secs: -1.0, ..WeightSyncConfig::default() },
                    ..remote("http://a")
                },
                "rollout.weight_sync.timeout_secs",
            ),
            (
                RolloutConfig {
                    correction: CorrectionConfig { tis: IsLevel::Token, tis_cap: 0.5 },
                    ..remote("http://a")
                },
                "rollout.correction.tis_cap",
            ),
            (
                RolloutConfig {
                    correction: CorrectionConfig { tis: IsLevel::Token, tis_cap: 2.0 },
                    ..RolloutConfig::default()
                },
                "rollout.correction.tis",
            ),
        ];
        for (config, key) in cases {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.starts_with(&format!("config key `{key}`")), "{key}: {error}");
        }
    }
}
