//! `longrl serve`: an OpenAI-compatible HTTP API (axum) over a policy.
//!
//! The router takes an [`Engine`] (the worker thread that owns the policy), so tests can serve any
//! `api::Policy`, a fake one included.

mod engine;
mod openai;
mod params;
mod routes;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use engine::{Engine, EngineOptions, JobOutput, PromptInput};
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
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions { model_name: "longrl".into(), max_body_bytes: 16 * 1024 * 1024, chat_default_max_tokens: 1024 }
    }
}

/// The whole API over one engine.
pub fn router(engine: Engine, options: &ServeOptions) -> Router {
    let state = Arc::new(routes::AppState::new(engine, options.model_name.clone(), options.chat_default_max_tokens));
    Router::new()
        .route("/health", get(routes::health))
        .route("/v1/models", get(routes::models))
        .route("/v1/chat/completions", post(routes::chat_completions))
        .route("/v1/completions", post(routes::completions))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .with_state(state)
}
