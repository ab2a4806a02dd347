//! `longrl serve`: an OpenAI-compatible HTTP API (axum) over a policy.
//!
//! The router takes an [`Engine`] (the worker thread that owns the policy), so tests can serve any
//! `api::Policy`, a fake one included. With `weight_transfer`, vLLM's weight-transfer routes
//! (`longrl_inference::serve`) replace the policy's weights between generation batches.

mod engine;
mod openai;
mod params;
mod routes;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use longrl_inference::serve::{WeightLoader, WeightTransfer, routes as weight_routes};

pub use engine::{Engine, EngineOptions, JobOutput, PromptInput, Task};
pub use openai::ApiError;
pub use params::{Limits, Sampling, sampling};

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The name clients send as `model` (and `/v1/models` lists).
    pub model_name: String,
    /// Larger request bodies get 413.
    pub max_body_bytes: usize,
    /// `max_tokens` of a chat request that gives none.
    pub chat_default_max_tokens: u32,
    /// Mount vLLM's weight-transfer routes (disk backend): a client can then replace the served
    /// weights, as the trainer does after every step with `[rollout] backend = "vllm"`.
    pub weight_transfer: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            model_name: "longrl".into(),
            max_body_bytes: 16 * 1024 * 1024,
            chat_default_max_tokens: 1024,
            weight_transfer: false,
        }
    }
}

/// The whole API over one engine.
pub fn router(engine: Engine, options: &ServeOptions) -> Router {
    let transfer = options.weight_transfer.then(|| WeightTransfer::new(EngineLoader(engine.clone())));
    let state = Arc::new(routes::AppState::new(
        engine,
        options.model_name.clone(),
        options.chat_default_max_tokens,
        transfer.clone(),
    ));
    let mut app = Router::new()
        .route("/health", get(routes::health))
        .route("/v1/models", get(routes::models))
        .route("/v1/chat/completions", post(routes::chat_completions))
        .route("/v1/completions", post(routes::completions))
        .with_state(state);
    if let Some(transfer) = transfer {
        app = app.merge(weight_routes(transfer));
    }
    app.fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
}

/// Loads published weight directories into the engine's policy, between generation batches.
struct EngineLoader(Engine);

impl WeightLoader for EngineLoader {
    fn load(&self, dir: PathBuf) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            match self.0.run(move |policy| policy.load_weights(&dir)).await {
                Ok(loaded) => loaded.map_err(|e| e.to_string()),
                Err(error) => Err(error.message),
            }
        })
    }
}
