//! The HTTP handlers: `/v1/models`, `/v1/chat/completions`, `/v1/completions` (with vLLM's token-id
//! and log-prob extensions), `/health`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use longrl_core::api::{ChatMessage, FinishReason, Generation};
use longrl_inference::serve::WeightTransfer;

use super::engine::{Engine, JobOutput, PromptInput};
use super::openai::*;
use super::params::{Limits, sampling};

/// Completions per request at most (`n`), and prompts per completions request at most.
pub const MAX_N: u32 = 16;
const MAX_PROMPTS: usize = 64;
/// OpenAI's default `max_tokens` of the legacy completions endpoint.
const COMPLETIONS_DEFAULT_MAX_TOKENS: u32 = 16;

pub struct AppState {
    pub engine: Engine,
    /// `--weight-transfer`: the update session and the pause gate generation requests pass.
    pub weight_transfer: Option<Arc<WeightTransfer>>,
    pub model_name: String,
    /// `max_tokens` of a chat request that gives none.
    pub chat_default_max_tokens: u32,
    pub started: u64,
    pub next_id: AtomicU64,
}

pub type Shared = Arc<AppState>;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl AppState {
    pub fn new(
        engine: Engine,
        model_name: String,
        chat_default_max_tokens: u32,
        weight_transfer: Option<Arc<WeightTransfer>>,
    ) -> Self {
        AppState {
            engine,
            weight_transfer,
            model_name,
            chat_default_max_tokens,
            started: now(),
            next_id: AtomicU64::new(1),
        }
    }

    fn id(&self, prefix: &str) -> String {
        format!("{prefix}-{:x}{:06x}", self.started, self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Clients must name the served model (as vLLM does); a request without `model` gets it too.
    fn check_model(&self, model: &Option<String>) -> Result<(), ApiError> {
        match model {
            Some(name) if name != &self.model_name => Err(ApiError {
                param: Some("model".into()),
                ..ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("the model `{name}` does not exist; this server serves `{}`", self.model_name),
                )
            }
            .with_code("model_not_found")),
            _ => Ok(()),
        }
    }
}

pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

pub async fn models(State(state): State<Shared>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![ModelCard {
            id: state.model_name.clone(),
            object: "model",
            created: state.started,
            owned_by: "longrl",
            max_model_len: state.engine.description().max_position_embeddings,
        }],
    })
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route {}; this server has /v1/models, /v1/chat/completions and /v1/completions", uri.path()),
    )
}

pub async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("method not allowed on {}", uri.path()))
}

fn message_text(index: usize, content: &Option<MessageContent>) -> Result<String, ApiError> {
    match content {
        None => Ok(String::new()),
        Some(MessageContent::Text(text)) => Ok(text.clone()),
        Some(MessageContent::Parts(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.kind.as_str(), &part.text) {
                    ("text", Some(t)) => text.push_str(t),
                    (kind, _) => {
                        return Err(ApiError::bad_param(
                            "messages",
                            format!("messages[{index}]: content part of type `{kind}` is not supported (text only)"),
                        ));
                    }
                }
            }
            Ok(text)
        }
    }
}

pub async fn chat_completions(
    State(state): State<Shared>,
    JsonBody(request): JsonBody<ChatRequest>,
) -> Result<Json<ChatResponse>, ApiError> {
    state.check_model(&request.model)?;
    if request.messages.is_empty() {
        return Err(ApiError::bad_param("messages", "messages must not be empty"));
    }
    let mut messages = Vec::with_capacity(request.messages.len());
    for (i, message) in request.messages.iter().enumerate() {
        let role = match message.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(ApiError::bad_param("messages", format!("messages[{i}]: unsupported role `{other}`")));
            }
        };
        messages.push(ChatMessage::new(role, message_text(i, &message.content)?));
    }
    let limits = Limits { default_max_tokens: state.chat_default_max_tokens, max_n: MAX_N };
    let sampling = sampling(&request.sampling, &limits)?;
    let _in_flight = match &state.weight_transfer {
        Some(transfer) => Some(transfer.admit().await),
        None => None,
    };
    let output = state.engine.submit(vec![PromptInput::Chat(messages)], sampling).await?;
    let usage = usage(&output);
    let choices = output
        .generations
        .into_iter()
        .enumerate()
        .map(|(index, g)| ChatChoice {
            index,
            finish_reason: finish(&g),
            message: ChatMessageOut { role: "assistant", content: g.text },
            logprobs: None,
        })
        .collect();
    Ok(Json(ChatResponse {
        id: state.id("chatcmpl"),
        object: "chat.completion",
        created: now(),
        model: state.model_name.clone(),
        choices,
        usage,
    }))
}

pub async fn completions(
    State(state): State<Shared>,
    JsonBody(request): JsonBody<CompletionRequest>,
) -> Result<Json<CompletionResponse>, ApiError> {
    state.check_model(&request.model)?;
    if request.echo == Some(true) {
        return Err(ApiError::bad_param("echo", "echo is not supported"));
    }
    let prompts: Vec<PromptInput> = match request.prompt {
        PromptSpec::Text(text) => vec![PromptInput::Text(text)],
        PromptSpec::Texts(texts) => texts.into_iter().map(PromptInput::Text).collect(),
        PromptSpec::Tokens(tokens) => vec![PromptInput::Tokens(tokens)],
        PromptSpec::TokenLists(lists) => lists.into_iter().map(PromptInput::Tokens).collect(),
    };
    if prompts.is_empty() || prompts.len() > MAX_PROMPTS {
        return Err(ApiError::bad_param("prompt", format!("give 1 to {MAX_PROMPTS} prompts (got {})", prompts.len())));
    }
    let with_logprobs = match request.logprobs {
        None => false,
        Some(0) => true,
        Some(k) if k > 0 => {
            return Err(ApiError::bad_param(
                "logprobs",
                format!("this server returns the sampled token's log-prob only; send logprobs=0 (got {k})"),
            ));
        }
        Some(k) => return Err(ApiError::bad_param("logprobs", format!("logprobs must be 0 (got {k})"))),
    };
    let limits = Limits { default_max_tokens: COMPLETIONS_DEFAULT_MAX_TOKENS, max_n: MAX_N };
    let sampling = sampling(&request.sampling, &limits)?;
    let n = sampling.params.rollouts.max(1) as usize;
    // While a weight update is under way requests wait; one in flight holds the update back.
    let _in_flight = match &state.weight_transfer {
        Some(transfer) => Some(transfer.admit().await),
        None => None,
    };
    let output = state.engine.submit(prompts, sampling).await?;
    let usage = usage(&output);
    let pieces = if with_logprobs { Some(token_pieces(&state.engine, &output.generations).await?) } else { None };
    let ids = request.return_token_ids == Some(true);
    let ids_as_tokens = request.return_tokens_as_token_ids == Some(true);
    let prompt_tokens = output.prompt_tokens;
    let choices = output
        .generations
        .into_iter()
        .enumerate()
        .map(|(index, g)| {
            let logprobs = pieces.as_ref().map(|pieces| completion_logprobs(&g, &pieces[index], ids_as_tokens));
            CompletionChoice {
                index,
                finish_reason: finish(&g),
                logprobs,
                token_ids: ids.then(|| g.tokens.clone()),
                prompt_token_ids: ids.then(|| prompt_tokens[index / n].clone()),
                text: g.text,
            }
        })
        .collect();
    Ok(Json(CompletionResponse {
        id: state.id("cmpl"),
        object: "text_completion",
        created: now(),
        model: state.model_name.clone(),
        choices,
        usage,
    }))
}

/// Each generated token decoded on its own (for `logprobs.tokens` and `text_offset`).
async fn token_pieces(engine: &Engine, generations: &[Generation]) -> Result<Vec<Vec<String>>, ApiError> {
    let tokens: Vec<Vec<u32>> = generations.iter().map(|g| g.tokens.clone()).collect();
    engine
        .run(move |policy| {
            tokens
                .iter()
                .map(|ids| ids.iter().map(|&id| policy.decode(&[id], false)).collect::<Result<Vec<_>, _>>())
                .collect::<Result<Vec<_>, _>>()
        })
        .await?
        .map_err(|e| ApiError::internal(format!("decoding the sampled tokens: {e}")))
}

fn completion_logprobs(g: &Generation, pieces: &[String], ids_as_tokens: bool) -> CompletionLogprobs {
    let tokens: Vec<String> =
        if ids_as_tokens { g.tokens.iter().map(|id| format!("token_id:{id}")).collect() } else { pieces.to_vec() };
    let mut offset = 0;
    let text_offset = pieces
        .iter()
        .map(|piece| {
            let at = offset;
            offset += piece.len();
            at
        })
        .collect();
    let top_logprobs = tokens.iter().zip(&g.logprobs).map(|(t, &lp)| [(t.clone(), lp)].into()).collect();
    CompletionLogprobs { tokens, token_logprobs: g.logprobs.clone(), top_logprobs, text_offset }
}

fn finish(generation: &Generation) -> &'static str {
    match generation.finish {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

fn usage(output: &JobOutput) -> Usage {
    let prompt_tokens: u64 = output.prompt_tokens.iter().map(|p| p.len() as u64).sum();
    let completion_tokens: u64 = output.generations.iter().map(|g| g.tokens.len() as u64).sum();
    Usage { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens }
}
