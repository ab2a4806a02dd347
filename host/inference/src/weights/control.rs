//! The servers' side of a weight update (the control plane), one HTTP call sequence per server kind:
//!
//! - vLLM weight-transfer API (`VLLM_SERVER_DEV_MODE=1 vllm serve ... --weight-transfer-config
//!   '{"backend": "disk"}'`; routes of `vllm/entrypoints/serve/dev/rlhf/api_router.py`): once
//!   `POST /init_weight_transfer_engine {"init_info"}`; per update `POST /pause?mode=wait`,
//!   `POST /start_weight_update`, `POST /update_weights {"update_info"}`, `POST /finish_weight_update
//!   {"weight_version"}`, `POST /reset_prefix_cache`, `POST /resume`, then `GET /weight_info`.
//! - vLLM without the disk backend: `POST /pause?mode=wait`, `POST /collective_rpc {"method":
//!   "reload_weights", "kwargs": {"weights_path"}}` (layerwise reload), `POST /update_weight_version
//!   {"new_version"}`, `POST /reset_prefix_cache`, `POST /resume`, `GET /weight_info`.
//! - SGLang (docs/advanced_features/sglang_for_rl.md): `POST /pause_generation {"mode": "abort"}`,
//!   `POST /update_weights_from_disk {"model_path", "weight_version", "flush_cache": true}`,
//!   `POST /continue_generation`, then `GET /get_model_info` (its `weight_version`).
//!
//! Control calls are not retried (a load is not idempotent); each must answer within
//! `rollout.weight_sync.timeout_secs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use super::{Staged, WeightSource, WeightTransport};
use crate::client::{post_json, weight_info};
use crate::config::{Backend, RolloutConfig, VllmReload};
use crate::request::WeightVersion;
use crate::retry::{AttemptError, RetryPolicy};

/// The HTTP calls of one server kind.
pub struct Control {
    http: reqwest::Client,
    backend: Backend,
    reload: VllmReload,
    timeout: Duration,
}

/// A failed control call: which server, which route.
fn failed(server: &str, route: &str, error: AttemptError) -> anyhow::Error {
    anyhow::anyhow!("{server}: {route}: {}", error.message)
}

impl Control {
    pub fn new(config: &RolloutConfig) -> anyhow::Result<Self> {
        let timeout = config.sync_timeout();
        let http = reqwest::Client::builder().connect_timeout(config.connect_timeout()).timeout(timeout).build()?;
        Ok(Control { http, backend: config.backend, reload: config.weight_sync.vllm_reload, timeout })
    }

    async fn post(&self, server: &str, route: &str, body: Value) -> anyhow::Result<Value> {
        let text = post_json(&self.http, &format!("{server}{route}"), &body, self.timeout)
            .await
            .map_err(|e| failed(server, &format!("POST {route}"), e))?;
        // Some routes answer with an empty body.
        Ok(if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        })
    }

    /// Once per server before the first update.
    pub async fn init(&self, server: &str, init_info: Value) -> anyhow::Result<()> {
        if self.backend == Backend::Vllm && self.reload == VllmReload::WeightTransfer {
            self.post(server, "/init_weight_transfer_engine", json!({"init_info": init_info})).await?;
        }
        Ok(())
    }

    /// Stop generation; the server holds no request of the old weights afterwards.
    pub async fn pause(&self, server: &str) -> anyhow::Result<()> {
        match self.backend {
            Backend::Sglang => {
                self.post(server, "/pause_generation", json!({"mode": "abort"})).await?;
            }
            _ => {
                self.post(server, "/pause?mode=wait", Value::Null).await?;
                if self.reload == VllmReload::WeightTransfer {
                    self.post(server, "/start_weight_update", Value::Null).await?;
                }
            }
        }
        Ok(())
    }

    /// Load the staged weights (runs while the transport sends).
    pub async fn load(&self, server: &str, staged: &Staged, version: WeightVersion) -> anyhow::Result<()> {
        match (self.backend, self.reload, staged) {
            (Backend::Sglang, _, Staged::Directory(dir)) => {
                let body = json!({"model_path": dir, "weight_version": version.to_string(), "flush_cache": true,
                                  "abort_all_requests": false});
                let answer = self.post(server, "/update_weights_from_disk", body).await?;
                if answer.get("success").and_then(Value::as_bool) == Some(false) {
                    anyhow::bail!(
                        "{server}: POST /update_weights_from_disk: the server refused: {}",
                        answer.get("message").and_then(Value::as_str).unwrap_or("no message")
                    );
                }
            }
            (Backend::Sglang, _, Staged::Broadcast { .. }) => {
                anyhow::bail!("the NCCL weight transport is not implemented for SGLang; use transport = \"disk\"")
            }
            (_, VllmReload::WeightTransfer, staged) => {
                let update_info = match staged {
                    Staged::Directory(dir) => json!({"path": dir}),
                    Staged::Broadcast { names, dtype_names, shapes } => {
                        json!({"names": names, "dtype_names": dtype_names, "shapes": shapes})
                    }
                };
                self.post(server, "/update_weights", json!({"update_info": update_info})).await?;
            }
            (_, VllmReload::CollectiveRpc, Staged::Directory(dir)) => {
                let body = json!({"method": "reload_weights", "kwargs": {"weights_path": dir}});
                self.post(server, "/collective_rpc", body).await?;
            }
            (_, VllmReload::CollectiveRpc, Staged::Broadcast { .. }) => {
                anyhow::bail!("vllm_reload = \"collective-rpc\" loads from disk only; use transport = \"disk\"")
            }
        }
        Ok(())
    }

    /// Commit the version, drop cached prefixes of the old weights, resume, and check the version.
    pub async fn finish(&self, server: &str, version: WeightVersion) -> anyhow::Result<()> {
        let label = version.to_string();
        let found = match self.backend {
            Backend::Sglang => {
                self.post(server, "/continue_generation", json!({})).await?;
                self.model_info_version(server).await?
            }
            _ => {
                if self.reload == VllmReload::WeightTransfer {
                    self.post(server, "/finish_weight_update", json!({"weight_version": label})).await?;
                } else {
                    self.post(server, "/update_weight_version", json!({"new_version": label})).await?;
                }
                self.post(server, "/reset_prefix_cache", Value::Null).await?;
                self.post(server, "/resume", Value::Null).await?;
                let retry = RetryPolicy {
                    max_retries: 2,
                    backoff_initial: Duration::from_millis(200),
                    backoff_max: Duration::from_secs(2),
                };
                Some(weight_info(&self.http, server, retry).await?)
            }
        };
        match found {
            Some(Some(found)) if found != label => {
                anyhow::bail!("{server}: reports weight version {found} after loading version {label}")
            }
            Some(None) => anyhow::bail!("{server}: reports no weight version after loading version {label}"),
            _ => Ok(()),
        }
    }

    /// SGLang's `weight_version` from `/get_model_info`; `None` where the version predates it.
    async fn model_info_version(&self, server: &str) -> anyhow::Result<Option<Option<String>>> {
        let url = format!("{server}/get_model_info");
        let answer: Value = async { self.http.get(&url).send().await?.error_for_status()?.json().await }
            .await
            .with_context(|| format!("{server}: GET /get_model_info"))?;
        Ok(answer.get("weight_version").map(|v| v.as_str().map(str::to_string)))
    }

    /// After a failed update: let the server take requests again (best effort, errors logged).
    pub async fn resume(&self, server: &str) {
        let outcome = match self.backend {
            Backend::Sglang => self.post(server, "/continue_generation", json!({})).await,
            _ => self.post(server, "/resume", Value::Null).await,
        };
        if let Err(error) = outcome {
            tracing::warn!("could not resume {server} after the failed weight update: {error:#}");
        }
    }
}

/// What one weight update cost.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncReport {
    pub version: WeightVersion,
    pub staged: Staged,
    /// Writing / gathering the weights on the trainer.
    pub stage_seconds: f64,
    /// Pause to resume on the servers.
    pub load_seconds: f64,
}

/// Pushes every update to every server: the transport's data plane inside the servers' control plane.
pub struct WeightSync {
    control: Arc<Control>,
    servers: Vec<String>,
    transport: Box<dyn WeightTransport>,
    initialized: bool,
}

impl WeightSync {
    pub fn new(control: Control, servers: Vec<String>, transport: Box<dyn WeightTransport>) -> Self {
        WeightSync { control: Arc::new(control), servers, transport, initialized: false }
    }

    /// Make version `version` of `source` the servers' weights. Blocks; `runtime` runs the HTTP calls.
    pub fn push(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        version: WeightVersion,
        source: &dyn WeightSource,
    ) -> anyhow::Result<SyncReport> {
        let context = || format!("weight sync of version {version}");
        if !self.initialized {
            let count = self.servers.len();
            let infos: Vec<Value> = (0..count).map(|i| self.transport.init_info(i, count)).collect();
            self.each(runtime, |c, s, i| {
                let info = infos[i].clone();
                async move { c.init(&s, info).await }
            })
            .with_context(context)?;
            self.initialized = true;
        }
        let started = Instant::now();
        let staged = self.transport.stage(version, source).with_context(context)?;
        let stage_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let outcome = self.update(runtime, version, &staged, source);
        if outcome.is_err() {
            let _ = self.each(runtime, |c, s, _| async move {
                c.resume(&s).await;
                Ok(())
            });
        }
        outcome.with_context(context)?;
        Ok(SyncReport { version, staged, stage_seconds, load_seconds: started.elapsed().as_secs_f64() })
    }

    fn update(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        version: WeightVersion,
        staged: &Staged,
        source: &dyn WeightSource,
    ) -> anyhow::Result<()> {
        self.each(runtime, |c, s, _| async move { c.pause(&s).await })?;
        // The loads run on the runtime while the transport sends from this thread.
        let loads: Vec<_> = self
            .servers
            .iter()
            .map(|server| {
                let (control, server, staged) = (self.control.clone(), server.clone(), staged.clone());
                runtime.spawn(async move { control.load(&server, &staged, version).await })
            })
            .collect();
        let sent = self.transport.send(staged, source);
        let loaded = join_all(runtime, loads);
        sent?;
        loaded?;
        self.each(runtime, move |c, s, _| async move { c.finish(&s, version).await })
    }

    /// Run `call` on every server concurrently and wait for all; the first error (in server order) wins.
    fn each<F, Fut>(&self, runtime: &tokio::runtime::Runtime, call: F) -> anyhow::Result<()>
    where
        F: Fn(Arc<Control>, String, usize) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let tasks: Vec<_> = self
            .servers
            .iter()
            .enumerate()
            .map(|(i, server)| runtime.spawn(call(self.control.clone(), server.clone(), i)))
            .collect();
        join_all(runtime, tasks)
    }
}

fn join_all(
    runtime: &tokio::runtime::Runtime,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
) -> anyhow::Result<()> {
    let mut first = None;
    for task in tasks {
        let outcome = runtime.block_on(task).map_err(|e| anyhow::anyhow!("a control task failed: {e}")).and_then(|r| r);
        if let (Err(error), None) = (outcome, &first) {
            first = Some(error);
        }
    }
    first.map_or(Ok(()), Err)
}
