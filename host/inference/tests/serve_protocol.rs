//! The trainer's client against the server side of the weight-transfer API (`longrl serve
//! --weight-transfer`'s routes) with a fake model: the two speak the same protocol, a load changes
//! what is generated, requests wait while the server is paused, misuse is refused.

mod stub;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use longrl_inference::config::{Backend, RolloutConfig, WeightSyncConfig};
use longrl_inference::serve::{WeightLoader, WeightTransfer, routes};
use longrl_inference::weights::WeightSource;
use longrl_inference::{GroupRequest, RemoteRollout, Sampling};
use serde_json::{Value, json};

/// The "model": the step number read from the loaded checkpoint.
#[derive(Clone, Default)]
struct FakeModel {
    step: Arc<Mutex<Option<u32>>>,
    loads: Arc<Mutex<Vec<PathBuf>>>,
}

impl WeightLoader for FakeModel {
    fn load(&self, dir: PathBuf) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            let text = std::fs::read_to_string(dir.join("model.safetensors")).map_err(|e| e.to_string())?;
            let step = text.trim_start_matches("step ").parse().map_err(|_| format!("corrupt weights: {text}"))?;
            *self.step.lock().unwrap() = Some(step);
            self.loads.lock().unwrap().push(dir);
            Ok(())
        })
    }
}

struct Policy {
    step: u32,
}

impl WeightSource for Policy {
    fn write_hf(&self, dir: &Path) -> anyhow::Result<()> {
        Ok(std::fs::write(dir.join("model.safetensors"), format!("step {}", self.step))?)
    }
}

type AppState = (Arc<WeightTransfer>, FakeModel);

/// A completion whose every token is the loaded step; it holds its in-flight slot for `delay_ms`.
async fn completions(State((transfer, model)): State<AppState>, Json(body): Json<Value>) -> Json<Value> {
    let _slot = transfer.admit().await;
    if let Some(ms) = body.get("delay_ms").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let step = model.step.lock().unwrap().unwrap_or(999);
    let n = body["n"].as_u64().unwrap_or(1);
    let max = body["max_tokens"].as_u64().unwrap_or(1) as usize;
    let choices: Vec<Value> = (0..n)
        .map(|j| {
            json!({"index": j, "text": "", "token_ids": vec![step; max], "finish_reason": "length",
                        "logprobs": {"tokens": [], "token_logprobs": vec![-1.0; max]}})
        })
        .collect();
    Json(json!({"choices": choices}))
}

fn server() -> (String, FakeModel, tokio::sync::oneshot::Sender<()>) {
    let model = FakeModel::default();
    let transfer = WeightTransfer::new(model.clone());
    let app = axum::Router::new()
        .route("/v1/completions", post(completions))
        .with_state((transfer.clone(), model.clone()))
        .merge(routes(transfer));
    let (url, stop) = stub::serve(app);
    (url, model, stop)
}

fn config(url: &str, dir: &Path) -> RolloutConfig {
    RolloutConfig {
        backend: Backend::Vllm,
        url: Some(url.into()),
        timeout_secs: 5.0,
        max_retries: 0,
        weight_sync: WeightSyncConfig { dir: Some(dir.into()), timeout_secs: 5.0, ..WeightSyncConfig::default() },
        ..RolloutConfig::default()
    }
}

fn group() -> GroupRequest {
    GroupRequest {
        prompt: vec![1, 2],
        n: 2,
        seed: 0,
        sampling: Sampling { max_tokens: 3, temperature: 1.0, top_p: 1.0, top_k: 0, stop: vec![] },
    }
}

#[test]
fn the_client_drives_the_server_side_and_each_push_changes_the_served_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, model, _stop) = server();
    let mut remote = RemoteRollout::new(&config(&url, tmp.path()), tmp.path()).unwrap();
    for step in 0..3u64 {
        remote.push_weights(step, &Policy { step: step as u32 + 10 }).unwrap();
        let out = remote.generate(vec![group()]).unwrap();
        assert_eq!(out[0].weight_version, step);
        assert_eq!(out[0].generations[1].tokens, vec![step as u32 + 10; 3], "the pushed weights serve the rollouts");
    }
    let loads = model.loads.lock().unwrap().clone();
    assert_eq!(loads.len(), 3);
    assert!(loads.iter().all(|d| d.is_absolute() && d.starts_with(tmp.path().canonicalize().unwrap())));
}

fn post_json(url: &str, body: Value) -> (u16, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    })
}

#[test]
fn misuse_of_the_update_session_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, _model, _stop) = server();
    let at = |route: &str| format!("{url}{route}");
    assert_eq!(post_json(&at("/start_weight_update"), json!({})).0, 400, "init comes first");
    assert_eq!(post_json(&at("/init_weight_transfer_engine"), json!({})).0, 400, "init_info is required");
    let (status, body) = post_json(&at("/init_weight_transfer_engine"), json!({"init_info": {"master_port": 1}}));
    assert!(status == 400 && body["error"].as_str().unwrap().contains("disk"), "{body}");
    assert_eq!(post_json(&at("/init_weight_transfer_engine"), json!({"init_info": {}})).0, 200);
    let path = tmp.path().canonicalize().unwrap();
    assert_eq!(post_json(&at("/update_weights"), json!({"update_info": {"path": path}})).0, 400, "no safetensors");
    std::fs::write(path.join("model.safetensors"), "step 5").unwrap();
    assert_eq!(post_json(&at("/update_weights"), json!({"update_info": {"path": path}})).0, 409, "no session");
    assert_eq!(post_json(&at("/start_weight_update"), json!({})).0, 200);
    assert_eq!(post_json(&at("/start_weight_update"), json!({})).0, 409, "one session at a time");
    assert_eq!(post_json(&at("/update_weights"), json!({"update_info": {"path": "relative"}})).0, 400);
    assert_eq!(post_json(&at("/update_weights"), json!({"update_info": {"path": path}})).0, 200);
    assert_eq!(post_json(&at("/update_weights"), json!({"update_info": {"path": path}})).0, 409, "one checkpoint");
    assert_eq!(post_json(&at("/finish_weight_update"), json!({"weight_version": "5"})).0, 200);
    assert_eq!(post_json(&at("/finish_weight_update"), json!({"weight_version": "6"})).0, 409, "no session");
    let (_, info) = post_json(&at("/update_weight_version"), json!({"new_version": "7"}));
    assert_eq!(info["new_version"], json!("7"));
    std::fs::write(path.join("model.safetensors"), "garbage").unwrap();
    assert_eq!(post_json(&at("/start_weight_update"), json!({})).0, 200);
    let (status, body) = post_json(&at("/update_weights"), json!({"update_info": {"path": path}}));
    assert!(status == 500 && body["error"].as_str().unwrap().contains("corrupt"), "{body}");
    assert_eq!(post_json(&at("/finish_weight_update"), json!({})).0, 409, "a failed load ends the session");
}

#[test]
fn requests_wait_while_paused_and_a_pause_waits_for_requests_in_flight() {
    let (url, _model, _stop) = server();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let completion = |delay_ms: u64| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let body = json!({"prompt": [1], "n": 1, "max_tokens": 1, "delay_ms": delay_ms});
                http.post(format!("{url}/v1/completions")).json(&body).send().await.unwrap().status().as_u16()
            })
        };
        // A pause returns only once the request in flight has finished.
        let slow = completion(300);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let paused = http.post(format!("{url}/pause?mode=wait")).send().await.unwrap();
        assert_eq!(paused.status().as_u16(), 200);
        assert!(started.elapsed() >= Duration::from_millis(150), "pause returned after {:?}", started.elapsed());
        assert_eq!(slow.await.unwrap(), 200);
        let state: Value = http.get(format!("{url}/is_paused")).send().await.unwrap().json().await.unwrap();
        assert_eq!(state["is_paused"], json!(true));

        // A request that arrives while paused waits for the resume.
        let waiting = completion(0);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "a request ran while the server was paused");
        http.post(format!("{url}/resume")).send().await.unwrap();
        let status = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert_eq!(status, 200);
    });
}
