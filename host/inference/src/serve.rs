//! The server side of vLLM's weight-transfer HTTP API, disk backend, for `longrl serve
//! --weight-transfer`: the same routes and bodies as `vllm/entrypoints/serve/dev/rlhf/api_router.py`, so
//! the trainer drives `longrl serve` and vLLM alike.
//!
//! - `POST /init_weight_transfer_engine {"init_info": {}}` (the disk backend takes no init info);
//! - `POST /start_weight_update`, `POST /update_weights {"update_info": {"path": "/abs/dir"}}` (one
//!   complete safetensors directory per session), `POST /finish_weight_update {"weight_version"}`;
//! - `POST /update_weight_version {"new_version"}`, `GET /weight_info`;
//! - `POST /pause?mode=wait|abort|keep` (here every mode waits for requests in flight: the generation
//!   worker cannot drop them), `POST /resume`, `GET /is_paused`; requests that arrive while paused wait;
//! - `POST /reset_prefix_cache` (nothing is cached between requests), `GET /get_world_size` (1).
//!
//! These routes let a client replace the served weights: `longrl serve` mounts them only when asked.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// Loads a weight directory into the served model.
pub trait WeightLoader: Send + Sync + 'static {
    fn load(&self, dir: PathBuf) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

#[derive(Debug, Default)]
struct Session {
    loaded: bool,
}

#[derive(Debug, Default)]
struct Status {
    initialized: bool,
    session: Option<Session>,
    version: Option<String>,
    paused: bool,
    in_flight: usize,
}

/// The weight version, the update session and the pause gate of one server.
pub struct WeightTransfer {
    loader: Box<dyn WeightLoader>,
    status: Mutex<Status>,
    changed: Notify,
}

/// Held by a generation request while it runs; a pause waits for every one to drop.
pub struct InFlight<'a> {
    owner: &'a WeightTransfer,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.owner.status().in_flight -= 1;
        self.owner.changed.notify_waiters();
    }
}

impl WeightTransfer {
    pub fn new(loader: impl WeightLoader) -> Arc<Self> {
        Arc::new(WeightTransfer { loader: Box::new(loader), status: Mutex::default(), changed: Notify::new() })
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The committed weight version (`None` until a client commits one).
    pub fn version(&self) -> Option<String> {
        self.status().version.clone()
    }

    /// Wait while the server is paused, then count the request as in flight until the guard drops.
    pub async fn admit(&self) -> InFlight<'_> {
        loop {
            let changed = self.changed.notified();
            {
                let mut status = self.status();
                if !status.paused {
                    status.in_flight += 1;
                    return InFlight { owner: self };
                }
            }
            changed.await;
        }
    }

    async fn pause(&self) {
        self.status().paused = true;
        self.changed.notify_waiters();
        loop {
            let changed = self.changed.notified();
            if self.status().in_flight == 0 {
                return;
            }
            changed.await;
        }
    }

    fn resume(&self) {
        self.status().paused = false;
        self.changed.notify_waiters();
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// A JSON body, `Null` when empty; malformed JSON is a 400 naming the problem.
struct Body(Value);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let bytes = Bytes::from_request(request, state).await.map_err(IntoResponse::into_response)?;
        if bytes.is_empty() {
            return Ok(Body(Value::Null));
        }
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| error(StatusCode::BAD_REQUEST, format!("Invalid JSON format: {e}")))
    }
}

/// The routes, to merge into the server's router.
pub fn routes(state: Arc<WeightTransfer>) -> Router {
    Router::new()
        .route("/init_weight_transfer_engine", post(init))
        .route("/start_weight_update", post(start))
        .route("/update_weights", post(update))
        .route("/finish_weight_update", post(finish))
        .route("/update_weight_version", post(update_version))
        .route("/weight_info", get(weight_info))
        .route("/pause", post(pause))
        .route("/resume", post(resume))
        .route("/is_paused", get(is_paused))
        .route("/reset_prefix_cache", post(reset_prefix_cache))
        .route("/get_world_size", get(world_size))
        .with_state(state)
}

type Shared = State<Arc<WeightTransfer>>;

async fn init(State(state): Shared, Body(body): Body) -> Response {
    match body.get("init_info") {
        None | Some(Value::Null) => error(StatusCode::BAD_REQUEST, "Missing 'init_info' in request body"),
        Some(Value::Object(info)) if info.is_empty() => {
            state.status().initialized = true;
            Json(json!({"message": "Weight transfer initialized"})).into_response()
        }
        Some(other) => error(
            StatusCode::BAD_REQUEST,
            format!("this server's weight transfer backend is `disk`, which takes no init_info (got {other})"),
        ),
    }
}

async fn start(State(state): Shared) -> Response {
    let mut status = state.status();
    if !status.initialized {
        return error(StatusCode::BAD_REQUEST, "call /init_weight_transfer_engine first");
    }
    if status.session.is_some() {
        return error(StatusCode::CONFLICT, "A shared-disk weight update is already active");
    }
    status.session = Some(Session::default());
    Json(json!({"message": "Weight update started"})).into_response()
}

/// An absolute directory holding safetensors (as vLLM's disk backend checks it).
fn checkpoint_dir(update_info: Option<&Value>) -> Result<PathBuf, String> {
    let path =
        update_info.and_then(|u| u.get("path")).and_then(Value::as_str).ok_or("`update_info.path` is missing")?;
    let dir = Path::new(path);
    if !dir.is_absolute() {
        return Err(format!("`path` must be an absolute local directory (got {path})"));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| format!("Shared-disk checkpoint path {path}: {e}"))?;
    let has_safetensors = entries.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".safetensors"));
    if !has_safetensors {
        return Err(format!("Shared-disk checkpoint directory contains no safetensors files: {path}"));
    }
    Ok(dir.to_path_buf())
}

async fn update(State(state): Shared, Body(body): Body) -> Response {
    let Some(info) = body.get("update_info") else {
        return error(StatusCode::BAD_REQUEST, "Missing 'update_info' in request body");
    };
    let dir = match checkpoint_dir(Some(info)) {
        Ok(dir) => dir,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match &state.status().session {
        None => return error(StatusCode::CONFLICT, "start_weight_update must be called before loading a checkpoint"),
        Some(session) if session.loaded => {
            return error(StatusCode::CONFLICT, "The disk backend accepts exactly one checkpoint per update session");
        }
        Some(_) => {}
    }
    match state.loader.load(dir.clone()).await {
        Ok(()) => {
            if let Some(session) = &mut state.status().session {
                session.loaded = true;
            }
            tracing::info!(dir = %dir.display(), "weights loaded");
            Json(json!({"message": "Weights updated"})).into_response()
        }
        Err(message) => {
            state.status().session = None;
            error(StatusCode::INTERNAL_SERVER_ERROR, format!("loading {}: {message}", dir.display()))
        }
    }
}

async fn finish(State(state): Shared, Body(body): Body) -> Response {
    let mut status = state.status();
    match status.session.take() {
        None => error(StatusCode::CONFLICT, "No shared-disk weight update is active"),
        Some(session) if !session.loaded => {
            error(StatusCode::CONFLICT, "No checkpoint was loaded during the shared-disk update session")
        }
        Some(_) => {
            if let Some(version) = body.get("weight_version").and_then(Value::as_str) {
                status.version = Some(version.to_string());
            }
            Json(json!({"message": "Weight update finished"})).into_response()
        }
    }
}

async fn update_version(State(state): Shared, Body(body): Body) -> Response {
    let Some(version) = body.get("new_version").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "`new_version` must be a string");
    };
    state.status().version = Some(version.to_string());
    Json(json!({"success": true, "new_version": version})).into_response()
}

async fn weight_info(State(state): Shared) -> Json<Value> {
    Json(json!({"weight_version": state.version()}))
}

async fn pause(State(state): Shared, Query(query): Query<std::collections::HashMap<String, String>>) -> Response {
    match query.get("mode").map(String::as_str) {
        None | Some("wait" | "abort" | "keep") => {}
        Some(other) => return error(StatusCode::BAD_REQUEST, format!("unknown pause mode `{other}`")),
    }
    state.pause().await;
    Json(json!({"status": "paused"})).into_response()
}

async fn resume(State(state): Shared) -> Json<Value> {
    state.resume();
    Json(json!({"status": "resumed"}))
}

async fn is_paused(State(state): Shared) -> Json<Value> {
    Json(json!({"is_paused": state.status().paused}))
}

async fn reset_prefix_cache() -> Json<Value> {
    Json(json!({"message": "no prefix cache is kept between requests"}))
}

async fn world_size() -> Json<Value> {
    Json(json!({"world_size": 1}))
}
