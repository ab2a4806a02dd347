//! Weight sync against stub servers: the order of the calls of each server kind, the published
//! directory they point at, the version tagging, and failures (a pause that never returns, a load
//! that fails, a server that reports another version).

mod stub;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use longrl_core::api::GenerationParams;
use longrl_inference::config::{Backend, RolloutConfig, VllmReload, WeightSyncConfig};
use longrl_inference::weights::{MARKER, WeightSource, read_marker};
use longrl_inference::{GroupRequest, RemoteRollout, Sampling};
use serde_json::{Value, json};
use stub::{Reply, Stub, ok, sglang_generate, vllm_completion};

/// Writes a one-tensor "checkpoint" whose bytes name the step.
struct FakePolicy {
    step: u32,
}

impl WeightSource for FakePolicy {
    fn write_hf(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::write(dir.join("model.safetensors"), format!("weights of step {}", self.step))?;
        std::fs::write(dir.join("config.json"), b"{}")?;
        Ok(())
    }
}

fn config(backend: Backend, url: &str, dir: &Path) -> RolloutConfig {
    RolloutConfig {
        backend,
        url: Some(url.to_string()),
        timeout_secs: 2.0,
        connect_timeout_secs: 1.0,
        max_retries: 1,
        backoff_initial_ms: 10,
        backoff_max_ms: 20,
        weight_sync: WeightSyncConfig {
            dir: Some(dir.to_path_buf()),
            keep: 2,
            timeout_secs: 2.0,
            ..WeightSyncConfig::default()
        },
        ..RolloutConfig::default()
    }
}

fn group() -> GroupRequest {
    GroupRequest {
        prompt: vec![3, 4],
        n: 2,
        seed: 9,
        sampling: Sampling { max_tokens: 2, temperature: 1.0, top_p: 1.0, top_k: 0, stop: vec![] },
    }
}

/// A vLLM stub that commits the version `finish_weight_update` (or `update_weight_version`) names.
fn vllm_server() -> Stub {
    let version: Arc<Mutex<Option<String>>> = Arc::default();
    Stub::start(move |call, _| {
        let mut version = version.lock().unwrap();
        match call.path.as_str() {
            "/finish_weight_update" => *version = call.body["weight_version"].as_str().map(str::to_string),
            "/update_weight_version" => *version = call.body["new_version"].as_str().map(str::to_string),
            "/weight_info" => return ok(json!({"weight_version": *version})),
            "/v1/completions" => return ok(vllm_completion(&call.body)),
            _ => {}
        }
        ok(json!({"message": "ok"}))
    })
}

fn loaded_dir(call_body: &Value, pointer: &str) -> PathBuf {
    PathBuf::from(call_body.pointer(pointer).and_then(Value::as_str).expect("a directory"))
}

#[test]
fn vllm_weight_transfer_calls_come_in_order_and_point_at_a_complete_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let server = vllm_server();
    let mut remote = RemoteRollout::new(&config(Backend::Vllm, &server.url, tmp.path()), tmp.path()).unwrap();
    let error = remote.generate(vec![group()]).unwrap_err();
    assert!(error.to_string().contains("before the trainer pushed"), "{error}");

    remote.push_weights(0, &FakePolicy { step: 0 }).unwrap();
    let per_update = [
        "POST /pause?mode=wait",
        "POST /start_weight_update",
        "POST /update_weights",
        "POST /finish_weight_update",
        "POST /reset_prefix_cache",
        "POST /resume",
        "GET /weight_info",
    ];
    let mut expected = vec!["POST /init_weight_transfer_engine"];
    expected.extend(per_update);
    assert_eq!(server.routes(), expected);
    assert_eq!(server.calls()[0].body, json!({"init_info": {}}));

    let update = &server.calls_to("/update_weights")[0].body;
    let dir = loaded_dir(update, "/update_info/path");
    assert!(dir.is_absolute() && dir.join("model.safetensors").is_file(), "{update}");
    assert_eq!(read_marker(&dir).unwrap(), 0);
    assert_eq!(server.calls_to("/finish_weight_update")[0].body, json!({"weight_version": "0"}));

    let out = remote.generate(vec![group(), group()]).unwrap();
    assert!(out.iter().all(|o| o.weight_version == 0));
    // The policy's contract: sample j of prompt i at i * n + j, one seed per prompt.
    let params = GenerationParams { max_new_tokens: 2, rollouts: 2, ..GenerationParams::default() };
    let flat = remote.generate_like_policy(&[vec![3, 4], vec![30, 4]], &params, &[1, 2]).unwrap();
    let firsts: Vec<u32> = flat.iter().map(|g| g.tokens[0]).collect();
    assert_eq!(firsts, vec![3, 4, 30, 31]);
    // Requests run concurrently: pair each seed with its prompt rather than rely on arrival order.
    let mut seeds: Vec<(Value, Value)> = server.calls_to("/v1/completions")[2..]
        .iter()
        .map(|c| (c.body["prompt"][0].clone(), c.body["seed"].clone()))
        .collect();
    seeds.sort_by_key(|(prompt, _)| prompt.as_u64());
    assert_eq!(seeds, vec![(json!(3), json!(1)), (json!(30), json!(2))]);

    // Later updates do not initialise again; the version advances with each push.
    for step in 1..=3 {
        remote.push_weights(step, &FakePolicy { step: step as u32 }).unwrap();
        assert_eq!(remote.version(), Some(step));
    }
    let routes = server.routes();
    assert_eq!(routes.iter().filter(|r| r.contains("init_weight_transfer_engine")).count(), 1);
    let finishes: Vec<Value> = server.calls_to("/finish_weight_update").iter().map(|c| c.body.clone()).collect();
    assert_eq!(finishes, ["0", "1", "2", "3"].map(|v| json!({"weight_version": v})));
    let last = loaded_dir(&server.calls_to("/update_weights")[3].body, "/update_info/path");
    assert_eq!(std::fs::read_to_string(last.join("model.safetensors")).unwrap(), "weights of step 3");
    // Only the newest two versions stay on disk.
    let kept: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('v'))
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    let out = remote.generate(vec![group()]).unwrap();
    assert_eq!(out[0].weight_version, 3);
    assert!(remote.push_weights(2, &FakePolicy { step: 2 }).is_err(), "versions never go back");
}

#[test]
fn vllm_collective_rpc_route_for_versions_without_the_disk_backend() {
    let tmp = tempfile::tempdir().unwrap();
    let server = vllm_server();
    let mut cfg = config(Backend::Vllm, &server.url, tmp.path());
    cfg.weight_sync.vllm_reload = VllmReload::CollectiveRpc;
    let mut remote = RemoteRollout::new(&cfg, tmp.path()).unwrap();
    remote.push_weights(4, &FakePolicy { step: 4 }).unwrap();
    assert_eq!(
        server.routes(),
        [
            "POST /pause?mode=wait",
            "POST /collective_rpc",
            "POST /update_weight_version",
            "POST /reset_prefix_cache",
            "POST /resume",
            "GET /weight_info"
        ]
    );
    let rpc = &server.calls_to("/collective_rpc")[0].body;
    assert_eq!(rpc["method"], json!("reload_weights"));
    assert!(loaded_dir(rpc, "/kwargs/weights_path").join(MARKER).is_file());
}

#[test]
fn sglang_pauses_loads_from_disk_and_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let version: Arc<Mutex<String>> = Arc::new(Mutex::new("default".into()));
    let server = Stub::start(move |call, _| {
        let mut version = version.lock().unwrap();
        match call.path.as_str() {
            "/update_weights_from_disk" => {
                *version = call.body["weight_version"].as_str().unwrap().to_string();
                ok(json!({"success": true, "message": "Succeeded", "num_paused_requests": 0}))
            }
            "/get_model_info" => ok(json!({"model_path": "m", "weight_version": *version})),
            "/generate" => ok(sglang_generate(&call.body, &version)),
            _ => ok(json!({})),
        }
    });
    let mut remote = RemoteRollout::new(&config(Backend::Sglang, &server.url, tmp.path()), tmp.path()).unwrap();
    remote.push_weights(12, &FakePolicy { step: 12 }).unwrap();
    assert_eq!(
        server.routes(),
        [
            "POST /pause_generation",
            "POST /update_weights_from_disk",
            "POST /continue_generation",
            "GET /get_model_info"
        ]
    );
    assert_eq!(server.calls_to("/pause_generation")[0].body, json!({"mode": "abort"}));
    let load = &server.calls_to("/update_weights_from_disk")[0].body;
    assert_eq!((load["weight_version"].clone(), load["flush_cache"].clone()), (json!("12"), json!(true)));
    assert_eq!(read_marker(&loaded_dir(load, "/model_path")).unwrap(), 12);
    let out = remote.generate(vec![group()]).unwrap();
    assert_eq!((out[0].weight_version, out[0].generations.len()), (12, 2));
}

#[test]
fn a_pause_that_never_returns_fails_the_sync_at_its_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Stub::start(|call, _| match call.path.as_str() {
        "/pause?mode=wait" => Reply::Hang,
        _ => ok(json!({})),
    });
    let mut cfg = config(Backend::Vllm, &server.url, tmp.path());
    cfg.weight_sync.timeout_secs = 0.3;
    let mut remote = RemoteRollout::new(&cfg, tmp.path()).unwrap();
    let started = Instant::now();
    let error = remote.push_weights(1, &FakePolicy { step: 1 }).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let message = format!("{error:#}");
    assert!(message.contains("version 1") && message.contains(&server.url) && message.contains("/pause"), "{message}");
    assert_eq!(remote.version(), None);
    assert!(server.routes().contains(&"POST /resume".to_string()), "the server is resumed after a failed update");
    assert!(remote.generate(vec![group()]).is_err(), "no rollouts with unknown weights");
}

#[test]
fn a_failed_load_or_a_wrong_version_stops_the_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Stub::start(|call, _| match call.path.as_str() {
        "/update_weights" => Reply::Json(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "shape mismatch"})),
        _ => ok(json!({})),
    });
    let mut remote = RemoteRollout::new(&config(Backend::Vllm, &server.url, tmp.path()), tmp.path()).unwrap();
    let message = format!("{:#}", remote.push_weights(1, &FakePolicy { step: 1 }).unwrap_err());
    assert!(message.contains("POST /update_weights") && message.contains("shape mismatch"), "{message}");
    assert_eq!(server.calls_to("/update_weights").len(), 1, "a load is not retried");
    assert!(server.calls_to("/finish_weight_update").is_empty());

    let stale = Stub::start(|call, _| match call.path.as_str() {
        "/weight_info" => ok(json!({"weight_version": "0"})),
        _ => ok(json!({})),
    });
    let mut remote = RemoteRollout::new(&config(Backend::Vllm, &stale.url, tmp.path()), tmp.path()).unwrap();
    let message = format!("{:#}", remote.push_weights(5, &FakePolicy { step: 5 }).unwrap_err());
    assert!(message.contains("reports weight version 0 after loading version 5"), "{message}");

    let refused = Stub::start(|call, _| match call.path.as_str() {
        "/update_weights_from_disk" => ok(json!({"success": false, "message": "no such file"})),
        _ => ok(json!({})),
    });
    let mut remote = RemoteRollout::new(&config(Backend::Sglang, &refused.url, tmp.path()), tmp.path()).unwrap();
    let message = format!("{:#}", remote.push_weights(1, &FakePolicy { step: 1 }).unwrap_err());
    assert!(message.contains("refused") && message.contains("no such file"), "{message}");
    assert!(refused.routes().contains(&"POST /continue_generation".to_string()));
}
