//! The rollout client: groups spread over the servers, `concurrency` in flight per server, each
//! request retried with backoff on 5xx / timeouts / connection errors, and every result checked
//! against the weight version the trainer last published.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;

use crate::config::{Backend, RolloutConfig};
use crate::request::{GroupOutput, GroupRequest, WeightVersion};
use crate::retry::{AttemptError, Exhausted, RetryPolicy};
use crate::{sglang, vllm};

/// Why a batch of rollouts failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RolloutError {
    #[error("rollout server {url}: {route} {failure}")]
    Server { url: String, route: String, failure: Exhausted },
    #[error(
        "rollout server {url} holds weight version {found:?} but the trainer published version {expected}: \
         another client updated it, or it restarted with other weights; the rollouts would be off-policy"
    )]
    VersionMismatch { url: String, expected: WeightVersion, found: Option<String> },
    #[error("rollout worker failed: {0}")]
    Internal(String),
}

struct Inner {
    http: reqwest::Client,
    backend: Backend,
    servers: Vec<String>,
    model: Option<String>,
    concurrency: usize,
    timeout: Duration,
    retry: RetryPolicy,
}

/// Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct RolloutClient {
    inner: Arc<Inner>,
}

impl RolloutClient {
    pub fn new(config: &RolloutConfig) -> anyhow::Result<Self> {
        config.validate()?;
        if !config.is_remote() {
            anyhow::bail!("the rollout client needs `rollout.backend` = \"vllm\" or \"sglang\"");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout())
            .timeout(config.timeout())
            .pool_max_idle_per_host(config.concurrency as usize)
            .build()?;
        Ok(RolloutClient {
            inner: Arc::new(Inner {
                http,
                backend: config.backend,
                servers: config.servers(),
                model: config.model.clone(),
                concurrency: config.concurrency as usize,
                timeout: config.timeout(),
                retry: retry_policy(config),
            }),
        })
    }

    pub fn servers(&self) -> &[String] {
        &self.inner.servers
    }

    /// Draw every group, results in request order. A shared queue hands groups to the servers as
    /// they have room, so a slow server takes fewer. `expected`: the weight version the servers must
    /// hold (checked on every SGLang answer, and on each vLLM server after the batch); `None` skips
    /// the check.
    pub async fn generate(
        &self,
        groups: Vec<GroupRequest>,
        expected: Option<WeightVersion>,
    ) -> Result<Vec<GroupOutput>, RolloutError> {
        let count = groups.len();
        let queue = Arc::new(Mutex::new(groups.into_iter().enumerate().collect::<VecDeque<_>>()));
        let results: Arc<Mutex<Vec<Option<GroupOutput>>>> = Arc::new(Mutex::new(vec![None; count]));
        let mut workers = JoinSet::new();
        let per_server = self.inner.concurrency.min(count.max(1));
        for server in &self.inner.servers {
            for _ in 0..per_server {
                let (client, server) = (self.clone(), server.clone());
                let (queue, results) = (queue.clone(), results.clone());
                workers.spawn(async move {
                    loop {
                        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                        let Some((index, group)) = next else { return Ok(()) };
                        let output = client.draw(&server, &group, expected).await?;
                        results.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(output);
                    }
                });
            }
        }
        while let Some(joined) = workers.join_next().await {
            let outcome = joined.map_err(|e| RolloutError::Internal(e.to_string())).and_then(|r| r);
            if let Err(error) = outcome {
                // One server that stays down stops the batch: the others' work would be thrown away.
                workers.abort_all();
                return Err(error);
            }
        }
        if let (Backend::Vllm, Some(version)) = (self.inner.backend, expected) {
            for server in &self.inner.servers {
                self.check_vllm_version(server, version).await?;
            }
        }
        let results = std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner()));
        results.into_iter().map(|r| r.ok_or_else(|| RolloutError::Internal("a group got no result".into()))).collect()
    }

    /// One group on one server, with retries.
    async fn draw(
        &self,
        server: &str,
        group: &GroupRequest,
        expected: Option<WeightVersion>,
    ) -> Result<GroupOutput, RolloutError> {
        let inner = &self.inner;
        let route = match inner.backend {
            Backend::Sglang => sglang::GENERATE,
            _ => vllm::COMPLETIONS,
        };
        let url = format!("{server}{route}");
        let body = match inner.backend {
            Backend::Sglang => serde_json::to_value(sglang::GenerateRequest::new(group)),
            _ => serde_json::to_value(vllm::CompletionRequest::new(group, inner.model.as_deref())),
        }
        .map_err(|e| RolloutError::Internal(e.to_string()))?;
        let attempt = || async {
            let text = post_json(&inner.http, &url, &body, inner.timeout).await?;
            match inner.backend {
                Backend::Sglang => Ok(sglang::parse_generate(&text, group.n)?
                    .into_iter()
                    .map(|s| (s.generation, s.weight_version))
                    .collect::<Vec<_>>()),
                _ => Ok(vllm::parse_completion(&text, group.n)?.into_iter().map(|g| (g, None)).collect()),
            }
        };
        let samples = inner.retry.run(attempt).await.map_err(|failure| RolloutError::Server {
            url: server.to_string(),
            route: format!("POST {route}"),
            failure,
        })?;
        let mut generations = Vec::with_capacity(samples.len());
        for (generation, found) in samples {
            // SGLang reports the version of every sample; vLLM's is checked once per batch.
            if let (Some(found), Some(expected)) = (found, expected)
                && found != expected.to_string()
            {
                return Err(RolloutError::VersionMismatch { url: server.to_string(), expected, found: Some(found) });
            }
            generations.push(generation);
        }
        Ok(GroupOutput { generations, weight_version: expected.unwrap_or_default(), server: server.to_string() })
    }

    async fn check_vllm_version(&self, server: &str, expected: WeightVersion) -> Result<(), RolloutError> {
        let found = weight_info(&self.inner.http, server, self.inner.retry).await?;
        if found.as_deref() == Some(expected.to_string().as_str()) {
            Ok(())
        } else {
            Err(RolloutError::VersionMismatch { url: server.to_string(), expected, found })
        }
    }
}

/// vLLM's `GET /weight_info`: the last committed `weight_version` (null before any).
pub async fn weight_info(
    http: &reqwest::Client,
    server: &str,
    retry: RetryPolicy,
) -> Result<Option<String>, RolloutError> {
    let url = format!("{server}/weight_info");
    let attempt = || async {
        let response = http.get(&url).send().await.map_err(|e| AttemptError::transport(&e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| AttemptError::transport(&e))?;
        if !status.is_success() {
            return Err(AttemptError::status(status, &text));
        }
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| AttemptError::fatal(format!("the answer is not JSON ({e}): {text}")))?;
        Ok(match value.get("weight_version") {
            Some(serde_json::Value::String(v)) => Some(v.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
    };
    retry.run(attempt).await.map_err(|failure| RolloutError::Server {
        url: server.to_string(),
        route: "GET /weight_info".into(),
        failure,
    })
}

/// POST a JSON body; the answer's text on a 2xx. `deadline` fences the whole attempt (reqwest's own
/// timeout should fire first).
pub(crate) async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    deadline: Duration,
) -> Result<String, AttemptError> {
    let attempt = async {
        let response = http.post(url).json(body).send().await.map_err(|e| AttemptError::transport(&e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| AttemptError::transport(&e))?;
        if status.is_success() { Ok(text) } else { Err(AttemptError::status(status, &text)) }
    };
    match tokio::time::timeout(deadline + Duration::from_secs(1), attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Err(AttemptError::retryable(format!("no answer within {:.1} s", deadline.as_secs_f64()))),
    }
}

pub(crate) fn retry_policy(config: &RolloutConfig) -> RetryPolicy {
    RetryPolicy {
        max_retries: config.max_retries,
        backoff_initial: Duration::from_millis(config.backoff_initial_ms),
        backoff_max: Duration::from_millis(config.backoff_max_ms),
    }
}
