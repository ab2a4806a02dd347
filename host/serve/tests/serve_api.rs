//! `longrl serve`'s router over a fake in-process policy: response shapes (vLLM's token-id and
//! log-prob extensions included), batching of concurrent requests, the OpenAI-style 4xx/5xx error
//! bodies of bad input, and the weight-transfer routes of `--weight-transfer`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use longrl_core::api::{
    ChatMessage, FinishReason, GenerateOutput, Generation, GenerationParams, LogprobOptions, LogprobOutput, Policy,
    PolicyDescription, Sequence,
};
use longrl_core::tch::Tensor;
use longrl_serve::{Engine, EngineOptions, ServeOptions, router};
use serde_json::{Value, json};

/// Bytes are tokens; the reply is `reply-<j>:<last prompt byte>` repeated, cut by max tokens and stop.
struct FakePolicy {
    /// Prompts per `generate` call, and the params of each call.
    calls: Arc<Mutex<Vec<(usize, GenerationParams)>>>,
    delay: Duration,
    fail: bool,
    /// Directories `load_weights` was given.
    loads: Arc<Mutex<Vec<PathBuf>>>,
}

impl Policy for FakePolicy {
    fn describe(&self) -> longrl_core::Result<PolicyDescription> {
        Ok(PolicyDescription {
            architecture: "fake".into(),
            num_parameters: 0,
            vocab_size: 256,
            eos_token_ids: vec![0],
            pad_token_id: None,
            device: "cpu".into(),
            dtype: "float32".into(),
            max_position_embeddings: 512,
        })
    }
    fn tokenize(&self, text: &str, _add_special_tokens: bool) -> longrl_core::Result<Vec<u32>> {
        Ok(text.bytes().map(u32::from).collect())
    }
    fn decode(&self, ids: &[u32], _skip: bool) -> longrl_core::Result<String> {
        Ok(ids.iter().map(|&t| t as u8 as char).collect())
    }
    fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> longrl_core::Result<String> {
        let mut text: String = messages.iter().map(|m| format!("<{}>{}\n", m.role, m.content)).collect();
        if add_generation_prompt {
            text.push_str("<assistant>");
        }
        Ok(text)
    }
    fn generate(&mut self, prompts: &[Vec<u32>], params: &GenerationParams) -> longrl_core::Result<GenerateOutput> {
        self.calls.lock().unwrap().push((prompts.len(), params.clone()));
        std::thread::sleep(self.delay);
        if self.fail {
            return Err(longrl_core::Error::msg("fake policy out of memory"));
        }
        let mut generations = Vec::new();
        for prompt in prompts {
            let last = *prompt.last().unwrap() as u8 as char;
            for j in 0..params.rollouts {
                let full = format!("reply-{j}:{last} ").repeat(20);
                let mut text: String = full.chars().take(params.max_new_tokens as usize).collect();
                let mut finish = if text.len() < full.len() { FinishReason::Length } else { FinishReason::Stop };
                if let Some(at) = params.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                    text.truncate(at);
                    finish = FinishReason::Stop;
                }
                let tokens: Vec<u32> = text.bytes().map(u32::from).collect();
                generations.push(Generation { logprobs: vec![-0.5; tokens.len()], tokens, text, finish });
            }
        }
        Ok(GenerateOutput { generations, ..Default::default() })
    }
    fn logprobs(&mut self, _: &[Sequence], _: &LogprobOptions) -> longrl_core::Result<LogprobOutput> {
        Err(longrl_core::Error::msg("not needed"))
    }
    fn parameters(&self) -> longrl_core::Result<Vec<(String, Tensor)>> {
        Ok(Vec::new())
    }
    fn save(&self, _: &std::path::Path) -> longrl_core::Result<()> {
        Err(longrl_core::Error::msg("not needed"))
    }
    fn load_weights(&mut self, dir: &std::path::Path) -> longrl_core::Result<()> {
        if !dir.join("model.safetensors").is_file() {
            return Err(longrl_core::Error::msg(format!("no weights in {}", dir.display())));
        }
        self.loads.lock().unwrap().push(dir.to_path_buf());
        Ok(())
    }
}

struct TestServer {
    base: String,
    calls: Arc<Mutex<Vec<(usize, GenerationParams)>>>,
    loads: Arc<Mutex<Vec<PathBuf>>>,
    client: reqwest::Client,
}

async fn start(delay: Duration, fail: bool, engine_options: EngineOptions, options: ServeOptions) -> TestServer {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let loads = Arc::new(Mutex::new(Vec::new()));
    let policy = FakePolicy { calls: calls.clone(), delay, fail, loads: loads.clone() };
    let engine = Engine::start(Box::new(policy), engine_options).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(engine, &options);
    tokio::spawn(async move { axum::serve(listener, app).await });
    TestServer { base, calls, loads, client: reqwest::Client::new() }
}

async fn default_server() -> TestServer {
    start(
        Duration::ZERO,
        false,
        EngineOptions::default(),
        ServeOptions { model_name: "tiny".into(), ..Default::default() },
    )
    .await
}

impl TestServer {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self.client.post(format!("{}{path}", self.base)).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn post_raw(&self, path: &str, body: &'static str) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

/// An OpenAI-style error body: all four keys, a message, and the expected param.
fn assert_error(body: &Value, param: Option<&str>) {
    let error = &body["error"];
    for key in ["message", "type", "param", "code"] {
        assert!(error.get(key).is_some(), "error body lacks {key}: {body}");
    }
    assert!(!error["message"].as_str().unwrap().is_empty());
    if let Some(param) = param {
        assert_eq!(error["param"], param, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_chat_and_completions_have_the_openai_shape() {
    let server = default_server().await;
    let models: Value =
        server.client.get(format!("{}/v1/models", server.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "tiny");

    let (status, chat) = server
        .post(
            "/v1/chat/completions",
            json!({"model": "tiny", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
                   "temperature": 0, "max_tokens": 12, "n": 2}),
        )
        .await;
    assert_eq!(status, 200, "{chat}");
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["model"], "tiny");
    assert_eq!(chat["choices"].as_array().unwrap().len(), 2);
    // The chat template ends with "<assistant>", so the fake policy echoes '>'.
    assert_eq!(chat["choices"][0]["message"]["content"], "reply-0:> re");
    assert_eq!(chat["choices"][1]["message"]["content"], "reply-1:> re");
    assert_eq!(chat["choices"][0]["message"]["role"], "assistant");
    assert_eq!(chat["choices"][0]["finish_reason"], "length");
    let prompt_len = "<system>be brief\n<user>hi\n<assistant>".len() as u64;
    assert_eq!(chat["usage"]["prompt_tokens"], prompt_len);
    assert_eq!(chat["usage"]["completion_tokens"], 24);
    assert_eq!(chat["usage"]["total_tokens"], prompt_len + 24);

    let (status, done) = server
        .post("/v1/completions", json!({"model": "tiny", "prompt": ["abc", "xyz"], "max_tokens": 50, "stop": [":"]}))
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["object"], "text_completion");
    let texts: Vec<&str> = done["choices"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["reply-0", "reply-0"]);
    assert_eq!(done["choices"][1]["index"], 1);
    assert_eq!(done["choices"][0]["finish_reason"], "stop");

    let (status, tokens) = server.post("/v1/completions", json!({"prompt": [104, 105], "max_tokens": 9})).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["choices"][0]["text"], "reply-0:i");
    assert_eq!(tokens["usage"]["prompt_tokens"], 2);
    // Sampling settings reach the policy.
    let calls = server.calls.lock().unwrap();
    assert_eq!(calls[0].1.temperature, 0.0);
    assert_eq!(calls[0].1.rollouts, 2);
    assert_eq!(calls[1].1.stop, vec![":".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_error_bodies() {
    let server = start(
        Duration::ZERO,
        false,
        EngineOptions::default(),
        ServeOptions { model_name: "tiny".into(), max_body_bytes: 4096, ..Default::default() },
    )
    .await;
    let chat = "/v1/chat/completions";
    let user = json!([{"role": "user", "content": "hi"}]);
    let cases: Vec<(Value, u16, Option<&str>)> = vec![
        (json!({"messages": user, "temperature": 3}), 400, Some("temperature")),
        (json!({"messages": user, "temperature": "hot"}), 400, None),
        (json!({"messages": user, "top_p": 0}), 400, Some("top_p")),
        (json!({"messages": user, "max_tokens": 0}), 400, Some("max_tokens")),
        (json!({"messages": user, "n": 100}), 400, Some("n")),
        (json!({"messages": user, "seed": -4}), 400, Some("seed")),
        (json!({"messages": user, "stream": true}), 400, Some("stream")),
        (json!({"messages": user, "max_tokens": 600}), 400, Some("max_tokens")),
        (json!({"messages": []}), 400, Some("messages")),
        (json!({"messages": [{"role": "wizard", "content": "x"}]}), 400, Some("messages")),
        (json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}), 400, Some("messages")),
        (json!({"model": "gpt-9", "messages": user}), 404, Some("model")),
        (json!({"prompt": "no messages"}), 400, None),
    ];
    for (body, status, param) in cases {
        let (got, reply) = server.post(chat, body.clone()).await;
        assert_eq!(got, status, "{body} -> {reply}");
        assert_error(&reply, param);
    }
    let (status, reply) = server.post("/v1/completions", json!({"prompt": [999]})).await;
    assert_eq!(status, 400);
    assert_error(&reply, Some("prompt"));
    let (status, reply) = server.post("/v1/completions", json!({"prompt": []})).await;
    assert_eq!(status, 400);
    assert_error(&reply, None);
    let (status, reply) = server.post("/v1/completions", json!({"prompt": "x", "max_tokens": 600})).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("context_length_exceeded")), "{reply}");

    for raw in ["{not json", "", "[1, 2]", "{\"messages\": [{\"role\": \"user\", \"content\": \"\\ud800\"}"] {
        let (status, reply) = server.post_raw(chat, raw).await;
        assert_eq!(status, 400, "{raw:?} -> {reply}");
        assert_error(&reply, None);
    }
    let huge = json!({"messages": [{"role": "user", "content": "x".repeat(10_000)}]});
    let (status, reply) = server.post(chat, huge).await;
    assert_eq!(status, 413);
    assert_error(&reply, None);

    let response = server.client.get(format!("{}/v1/nowhere", server.base)).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_error(&response.json().await.unwrap(), None);
    let response = server.client.get(format!("{}{chat}", server.base)).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_error(&response.json().await.unwrap(), None);

    // After all that the server still answers.
    let (status, _) = server.post(chat, json!({"messages": user, "max_tokens": 3})).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_the_same_settings_share_a_generate_call() {
    let server = start(
        Duration::from_millis(150),
        false,
        EngineOptions { max_batch: 32, batch_window: Duration::from_millis(20), queue_capacity: 64 },
        ServeOptions::default(),
    )
    .await;
    let server = Arc::new(server);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let temperature = if i % 2 == 0 { 0.0 } else { 0.7 };
            server
                .post(
                    "/v1/completions",
                    json!({"prompt": format!("p{i}"), "max_tokens": 9, "temperature": temperature}),
                )
                .await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
        // Each request gets its own prompt's continuation back, batched or not.
        assert_eq!(body["choices"][0]["text"], format!("reply-0:{i}"), "{body}");
    }
    let calls = server.calls.lock().unwrap().clone();
    assert_eq!(calls.iter().map(|(n, _)| n).sum::<usize>(), 6);
    assert!(calls.len() < 6, "concurrent requests were batched: {:?}", calls.iter().map(|c| c.0).collect::<Vec<_>>());
    assert!(calls.len() >= 2, "different temperatures never share a call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_failures_are_500s_and_a_full_queue_is_503() {
    let server = start(Duration::ZERO, true, EngineOptions::default(), ServeOptions::default()).await;
    let (status, reply) = server.post("/v1/completions", json!({"prompt": "x"})).await;
    assert_eq!(status, 500);
    assert_error(&reply, None);
    assert_eq!(reply["error"]["type"], "server_error");
    assert!(reply["error"]["message"].as_str().unwrap().contains("out of memory"));

    let server = Arc::new(
        start(
            Duration::from_millis(400),
            false,
            EngineOptions { max_batch: 1, batch_window: Duration::ZERO, queue_capacity: 1 },
            ServeOptions::default(),
        )
        .await,
    );
    let mut tasks = Vec::new();
    for i in 0..5 {
        let server = server.clone();
        tasks.push(tokio::spawn(
            async move { server.post("/v1/completions", json!({"prompt": format!("q{i}")})).await },
        ));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        if status == 503 {
            assert_error(&body, None);
        }
        statuses.push(status);
    }
    statuses.sort();
    assert!(statuses.contains(&200) && statuses.contains(&503), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_return_token_ids_and_the_sampled_log_probs() {
    let server = default_server().await;
    let body = json!({"prompt": [104, 105], "max_tokens": 3, "n": 2, "logprobs": 0, "return_token_ids": true,
                      "return_tokens_as_token_ids": true});
    let (status, done) = server.post("/v1/completions", body).await;
    assert_eq!(status, 200, "{done}");
    let choice = &done["choices"][1];
    // "rep" as bytes.
    assert_eq!(choice["token_ids"], json!([114, 101, 112]));
    assert_eq!(choice["prompt_token_ids"], json!([104, 105]));
    assert_eq!(choice["logprobs"]["tokens"], json!(["token_id:114", "token_id:101", "token_id:112"]));
    assert_eq!(choice["logprobs"]["token_logprobs"], json!([-0.5, -0.5, -0.5]));
    assert_eq!(choice["logprobs"]["text_offset"], json!([0, 1, 2]));

    let (status, plain) =
        server.post("/v1/completions", json!({"prompt": [104], "max_tokens": 2, "logprobs": 0})).await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["choices"][0]["logprobs"]["tokens"], json!(["r", "e"]));
    assert!(plain["choices"][0].get("token_ids").is_none(), "token ids only when asked: {plain}");

    let (status, refused) = server.post("/v1/completions", json!({"prompt": [104], "logprobs": 5})).await;
    assert_eq!(status, 400);
    assert_error(&refused, Some("logprobs"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_transfer_routes_load_weights_into_the_policy_and_are_off_by_default() {
    let server = default_server().await;
    let (status, _) = server.post("/init_weight_transfer_engine", json!({"init_info": {}})).await;
    assert_eq!(status, 404, "the routes are off unless asked for");

    let options = ServeOptions { model_name: "tiny".into(), weight_transfer: true, ..Default::default() };
    let server = start(Duration::ZERO, false, EngineOptions::default(), options).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"w").unwrap();
    let path = dir.path().canonicalize().unwrap();
    for (route, body) in [
        ("/init_weight_transfer_engine", json!({"init_info": {}})),
        ("/pause?mode=wait", Value::Null),
        ("/start_weight_update", Value::Null),
        ("/update_weights", json!({"update_info": {"path": path}})),
        ("/finish_weight_update", json!({"weight_version": "3"})),
        ("/reset_prefix_cache", Value::Null),
        ("/resume", Value::Null),
    ] {
        let (status, answer) = server.post(route, body).await;
        assert_eq!(status, 200, "{route}: {answer}");
    }
    assert_eq!(*server.loads.lock().unwrap(), vec![path]);
    let info: Value =
        server.client.get(format!("{}/weight_info", server.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["weight_version"], "3");
    let (status, done) = server.post("/v1/completions", json!({"prompt": [104], "max_tokens": 2})).await;
    assert_eq!((status, done["choices"][0]["text"].clone()), (200, json!("re")));

    // A policy that cannot load the directory fails the update with a 500 naming it.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("other.safetensors"), b"w").unwrap();
    server.post("/start_weight_update", Value::Null).await;
    let (status, answer) = server.post("/update_weights", json!({"update_info": {"path": empty.path()}})).await;
    assert_eq!(status, 500);
    assert!(answer["error"].as_str().unwrap().contains("no weights in"), "{answer}");
}
