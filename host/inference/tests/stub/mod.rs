//! A stub inference server (axum) on its own thread and runtime: it records every call and answers
//! with a script, so tests can check request bodies against vLLM's and SGLang's schemas, inject
//! failures, and check the order of weight-sync calls.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// Path and query, e.g. `/pause?mode=wait`.
    pub path: String,
    /// The JSON body; `Null` when empty.
    pub body: Value,
}

impl Call {
    pub fn route(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// What the script answers.
pub enum Reply {
    Json(StatusCode, Value),
    /// Never answer (a stalled server).
    Hang,
    /// Answer after a delay.
    Delayed(Duration, Box<Reply>),
}

pub fn ok(value: Value) -> Reply {
    Reply::Json(StatusCode::OK, value)
}

/// Decides the answer to a call; `seen` counts earlier calls to the same path.
pub type Script = dyn Fn(&Call, usize) -> Reply + Send + Sync;

struct Shared {
    calls: Mutex<Vec<Call>>,
    script: Box<Script>,
}

pub struct Stub {
    pub url: String,
    shared: Arc<Shared>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Stub {
    pub fn start(script: impl Fn(&Call, usize) -> Reply + Send + Sync + 'static) -> Stub {
        let shared = Arc::new(Shared { calls: Mutex::new(Vec::new()), script: Box::new(script) });
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
        let (url, shutdown) = serve(app);
        Stub { url, shared, _shutdown: shutdown }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }

    /// `METHOD path` of every call, in order.
    pub fn routes(&self) -> Vec<String> {
        self.calls().iter().map(Call::route).collect()
    }

    pub fn calls_to(&self, path: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.path == path).collect()
    }
}

/// Serve `app` on a free loopback port from its own thread and runtime (the code under test may block
/// on a runtime of its own). Dropping the sender stops the server.
pub fn serve(app: axum::Router) -> (String, tokio::sync::oneshot::Sender<()>) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
    });
    (format!("http://{}", addr_rx.recv().unwrap()), shutdown)
}

async fn handle(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, body: Bytes) -> Response {
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()))
    };
    let path = uri.path_and_query().map_or_else(|| uri.path().to_string(), |p| p.to_string());
    let call = Call { method: method.to_string(), path, body };
    let seen = {
        let mut calls = shared.calls.lock().unwrap();
        let seen = calls.iter().filter(|c| c.path == call.path).count();
        calls.push(call.clone());
        seen
    };
    let mut reply = (shared.script)(&call, seen);
    loop {
        match reply {
            Reply::Json(status, value) => return (status, axum::Json(value)).into_response(),
            Reply::Hang => std::future::pending::<()>().await,
            Reply::Delayed(delay, inner) => {
                tokio::time::sleep(delay).await;
                reply = *inner;
            }
        }
    }
}

/// A vLLM `/v1/completions` answer for `body`: sample `j` is `max_tokens` tokens `prompt[0] + j, ...`
/// with log-prob `-0.1 * (j + 1)` each, finished by length.
pub fn vllm_completion(body: &Value) -> Value {
    let n = body["n"].as_u64().unwrap();
    let max = body["max_tokens"].as_u64().unwrap();
    let first = body["prompt"][0].as_u64().unwrap();
    let choices: Vec<Value> = (0..n)
        .map(|j| {
            let ids: Vec<u64> = (0..max).map(|t| first + j + t).collect();
            let tokens: Vec<String> = ids.iter().map(|id| format!("token_id:{id}")).collect();
            json!({"index": j, "text": format!("sample {j}"), "token_ids": ids, "finish_reason": "length",
                   "stop_reason": null, "logprobs": {"tokens": tokens, "text_offset": vec![0; max as usize],
                   "token_logprobs": vec![-0.1 * (j + 1) as f64; max as usize], "top_logprobs": null}})
        })
        .collect();
    json!({"id": "cmpl-1", "object": "text_completion", "created": 0, "model": "m", "choices": choices,
           "usage": {"prompt_tokens": 1, "completion_tokens": n * max, "total_tokens": 1 + n * max}})
}

/// An SGLang `/generate` answer for `body`, reporting `version`.
pub fn sglang_generate(body: &Value, version: &str) -> Value {
    let outputs: Vec<Value> = body["sampling_params"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(j, params)| {
            let max = params["max_new_tokens"].as_u64().unwrap();
            let ids: Vec<u64> = (0..max).map(|t| 100 + j as u64 + t).collect();
            let logprobs: Vec<Value> = ids.iter().map(|id| json!([-0.25, id, null])).collect();
            json!({"text": format!("s{j}"), "output_ids": ids, "meta_info": {"id": format!("r{j}"),
                   "finish_reason": {"type": "length", "length": max}, "prompt_tokens": 3,
                   "weight_version": version, "completion_tokens": max, "cached_tokens": 0,
                   "output_token_logprobs": logprobs}})
        })
        .collect();
    Value::Array(outputs)
}

/// Assert `value` has exactly the JSON type `kind` (`int`, `uint`, `float`, `bool`, `str`, ...).
pub fn assert_type(body: &Value, key: &str, kind: &str) {
    let value = body.get(key).unwrap_or_else(|| panic!("`{key}` is missing from {body}"));
    let ok = match kind {
        "int" => value.is_i64() || value.is_u64(),
        "uint" => value.is_u64(),
        "float" => value.is_number(),
        "bool" => value.is_boolean(),
        "str" => value.is_string(),
        "list[str]" => value.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        "list[uint]" => value.as_array().is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_u64)),
        "list[list[uint]]" => value.as_array().is_some_and(|a| {
            a.iter().all(|row| row.as_array().is_some_and(|r| !r.is_empty() && r.iter().all(Value::is_u64)))
        }),
        "object" => value.is_object(),
        "list[object]" => value.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
        other => panic!("unknown kind {other}"),
    };
    assert!(ok, "`{key}` should be {kind}, is {value}");
}

/// Every key of `body` is one of `known` (the server's field names).
pub fn assert_known_fields(body: &Value, known: &[&str]) {
    for key in body.as_object().unwrap().keys() {
        assert!(known.contains(&key.as_str()), "`{key}` is not a field of the server's request schema");
    }
}
