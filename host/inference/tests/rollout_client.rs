//! The rollout client against stub vLLM and SGLang servers: request bodies checked against the
//! servers' documented request schemas, answers mapped to generations, failures injected.

mod stub;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use longrl_core::api::FinishReason;
use longrl_inference::config::{Backend, RolloutConfig};
use longrl_inference::{GroupRequest, RolloutClient, RolloutError, Sampling};
use serde_json::{Value, json};
use stub::{Reply, Stub, assert_known_fields, assert_type, ok, sglang_generate, vllm_completion};

/// Field names of vLLM's `CompletionRequest` (vllm/entrypoints/openai/completion/protocol.py).
const VLLM_COMPLETION_FIELDS: &[&str] = &[
    "model",
    "prompt",
    "echo",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "max_tokens",
    "n",
    "presence_penalty",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "suffix",
    "temperature",
    "top_p",
    "user",
    "use_beam_search",
    "top_k",
    "min_p",
    "repetition_penalty",
    "length_penalty",
    "stop_token_ids",
    "include_stop_str_in_output",
    "ignore_eos",
    "min_tokens",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "truncate_prompt_tokens",
    "allowed_token_ids",
    "prompt_logprobs",
    "bad_words",
    "add_special_tokens",
    "response_format",
    "priority",
    "request_id",
    "return_tokens_as_token_ids",
    "return_token_ids",
    "cache_salt",
];

/// Field names of SGLang's `GenerateReqInput` and `SamplingParams`.
const SGLANG_GENERATE_FIELDS: &[&str] = &[
    "text",
    "input_ids",
    "input_embeds",
    "image_data",
    "sampling_params",
    "rid",
    "return_logprob",
    "logprob_start_len",
    "top_logprobs_num",
    "token_ids_logprob",
    "return_text_in_logprobs",
    "stream",
    "lora_path",
    "custom_logit_processor",
    "return_hidden_states",
];
const SGLANG_SAMPLING_FIELDS: &[&str] = &[
    "max_new_tokens",
    "stop",
    "stop_token_ids",
    "stop_regex",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "min_new_tokens",
    "n",
    "json_schema",
    "regex",
    "ebnf",
    "structural_tag",
    "ignore_eos",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "no_stop_trim",
    "custom_params",
    "stream_interval",
    "logit_bias",
    "sampling_seed",
];

fn config(backend: Backend, urls: &[&str]) -> RolloutConfig {
    RolloutConfig {
        backend,
        urls: urls.iter().map(|u| u.to_string()).collect(),
        concurrency: 2,
        timeout_secs: 2.0,
        connect_timeout_secs: 1.0,
        max_retries: 2,
        backoff_initial_ms: 10,
        backoff_max_ms: 40,
        ..RolloutConfig::default()
    }
}

fn group(first: u32, n: u32) -> GroupRequest {
    GroupRequest {
        prompt: vec![first, 11, 12],
        n,
        seed: 1000 + u64::from(first),
        sampling: Sampling { max_tokens: 3, temperature: 0.7, top_p: 0.95, top_k: 0, stop: vec!["</a>".into()] },
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn vllm_stub(version: &'static str) -> Stub {
    Stub::start(move |call, _| match call.path.as_str() {
        "/v1/completions" => ok(vllm_completion(&call.body)),
        "/weight_info" => ok(json!({"weight_version": version})),
        _ => Reply::Json(StatusCode::NOT_FOUND, json!({})),
    })
}

#[test]
fn vllm_requests_follow_the_schema_and_answers_map_to_generations() {
    let server = vllm_stub("5");
    let client =
        RolloutClient::new(&RolloutConfig { model: Some("m".into()), ..config(Backend::Vllm, &[&server.url]) })
            .unwrap();
    let out = runtime().block_on(client.generate(vec![group(7, 2)], Some(5))).unwrap();

    let calls = server.calls_to("/v1/completions");
    assert_eq!(calls.len(), 1);
    let body = &calls[0].body;
    assert_known_fields(body, VLLM_COMPLETION_FIELDS);
    for (key, kind) in [
        ("model", "str"),
        ("prompt", "list[uint]"),
        ("n", "uint"),
        ("max_tokens", "uint"),
        ("temperature", "float"),
        ("top_p", "float"),
        ("top_k", "int"),
        ("seed", "uint"),
        ("stop", "list[str]"),
        ("logprobs", "uint"),
        ("return_token_ids", "bool"),
        ("return_tokens_as_token_ids", "bool"),
        ("repetition_penalty", "float"),
        ("skip_special_tokens", "bool"),
        ("stream", "bool"),
    ] {
        assert_type(body, key, kind);
    }
    assert_eq!((body["prompt"].clone(), body["n"].clone()), (json!([7, 11, 12]), json!(2)));
    assert_eq!(
        (body["logprobs"].clone(), body["top_k"].clone(), body["stream"].clone()),
        (json!(0), json!(-1), json!(false))
    );
    assert_eq!(body["seed"], json!(1007));
    assert_eq!(server.calls_to("/weight_info").len(), 1, "the version is checked after the batch");

    let generations = &out[0].generations;
    assert_eq!((out[0].weight_version, out[0].server.as_str()), (5, server.url.as_str()));
    assert_eq!(generations[0].tokens, vec![7, 8, 9]);
    assert_eq!(generations[1].tokens, vec![8, 9, 10]);
    assert_eq!(generations[1].logprobs, vec![-0.2f32; 3]);
    assert_eq!((generations[0].text.as_str(), generations[0].finish), ("sample 0", FinishReason::Length));
}

#[test]
fn sglang_requests_follow_the_schema_and_answers_map_to_generations() {
    let server = Stub::start(|call, _| match call.path.as_str() {
        "/generate" => ok(sglang_generate(&call.body, "3")),
        _ => Reply::Json(StatusCode::NOT_FOUND, json!({})),
    });
    let client = RolloutClient::new(&config(Backend::Sglang, &[&server.url])).unwrap();
    let out = runtime().block_on(client.generate(vec![group(4, 3)], Some(3))).unwrap();

    let body = &server.calls_to("/generate")[0].body;
    assert_known_fields(body, SGLANG_GENERATE_FIELDS);
    assert_type(body, "input_ids", "list[list[uint]]");
    assert_type(body, "sampling_params", "list[object]");
    assert_type(body, "return_logprob", "bool");
    assert_type(body, "logprob_start_len", "int");
    assert_eq!(body["input_ids"], json!([[4, 11, 12], [4, 11, 12], [4, 11, 12]]));
    let params = body["sampling_params"].as_array().unwrap();
    for p in params {
        assert_known_fields(p, SGLANG_SAMPLING_FIELDS);
        for (key, kind) in [
            ("max_new_tokens", "uint"),
            ("temperature", "float"),
            ("top_p", "float"),
            ("top_k", "int"),
            ("stop", "list[str]"),
            ("sampling_seed", "uint"),
            ("no_stop_trim", "bool"),
        ] {
            assert_type(p, key, kind);
        }
        assert_eq!(p["top_k"], json!(-1), "SGLang disables top-k with -1");
    }
    let seeds: Vec<&Value> = params.iter().map(|p| &p["sampling_seed"]).collect();
    assert!(seeds[0] != seeds[1] && seeds[1] != seeds[2], "each sample has its own seed");

    assert_eq!(out[0].generations.len(), 3);
    assert_eq!(out[0].generations[2].tokens, vec![102, 103, 104]);
    assert_eq!(out[0].generations[2].logprobs, vec![-0.25f32; 3]);
}

#[test]
fn server_errors_are_retried_and_client_errors_are_not() {
    let flaky = Stub::start(|call, seen| match (call.path.as_str(), seen) {
        ("/v1/completions", 0 | 1) => Reply::Json(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "busy"})),
        ("/v1/completions", _) => ok(vllm_completion(&call.body)),
        _ => Reply::Json(StatusCode::NOT_FOUND, json!({})),
    });
    let client = RolloutClient::new(&config(Backend::Vllm, &[&flaky.url])).unwrap();
    let out = runtime().block_on(client.generate(vec![group(1, 1)], None)).unwrap();
    assert_eq!(out[0].generations[0].tokens, vec![1, 2, 3]);
    assert_eq!(flaky.calls_to("/v1/completions").len(), 3);

    let strict = Stub::start(|_, _| Reply::Json(StatusCode::BAD_REQUEST, json!({"error": {"message": "bad top_k"}})));
    let client = RolloutClient::new(&config(Backend::Vllm, &[&strict.url])).unwrap();
    let error = runtime().block_on(client.generate(vec![group(1, 1)], None)).unwrap_err();
    assert_eq!(strict.calls().len(), 1, "a 4xx is not retried");
    let message = error.to_string();
    assert!(message.contains(&strict.url) && message.contains("400") && message.contains("bad top_k"), "{message}");
}

#[test]
fn a_server_that_stays_down_is_named_in_the_error() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let client = RolloutClient::new(&config(Backend::Sglang, &[&url])).unwrap();
    let error = runtime().block_on(client.generate(vec![group(1, 2)], None)).unwrap_err();
    let RolloutError::Server { url: named, failure, .. } = &error else { panic!("{error}") };
    assert_eq!((named.as_str(), failure.attempts), (url.as_str(), 3));
    let message = error.to_string();
    assert!(
        message.contains(&url) && message.contains("POST /generate") && message.contains("3 attempts"),
        "{message}"
    );
}

#[test]
fn a_stalled_request_ends_at_its_deadline() {
    let stalled = Stub::start(|_, _| Reply::Hang);
    let client = RolloutClient::new(&RolloutConfig {
        timeout_secs: 0.3,
        max_retries: 1,
        ..config(Backend::Vllm, &[&stalled.url])
    })
    .unwrap();
    let started = Instant::now();
    let error = runtime().block_on(client.generate(vec![group(1, 1)], None)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(stalled.calls().len(), 2, "one retry after the first deadline");
    let message = error.to_string();
    assert!(message.contains(&stalled.url) && message.contains("timed out"), "{message}");
}

#[test]
fn groups_spread_over_servers_and_each_group_stays_on_one() {
    let (a, b) = (vllm_stub("0"), vllm_stub("0"));
    // Slow answers make both servers take work.
    let slow = Stub::start(|call, _| match call.path.as_str() {
        "/v1/completions" => Reply::Delayed(Duration::from_millis(30), Box::new(ok(vllm_completion(&call.body)))),
        _ => ok(json!({"weight_version": "0"})),
    });
    let client = RolloutClient::new(&config(Backend::Vllm, &[&a.url, &b.url, &slow.url])).unwrap();
    let groups: Vec<GroupRequest> = (0..12).map(|i| group(20 * i, 4)).collect();
    let out = runtime().block_on(client.generate(groups, Some(0))).unwrap();
    assert_eq!(out.len(), 12);
    for (i, group_out) in out.iter().enumerate() {
        assert_eq!(group_out.generations.len(), 4);
        assert_eq!(group_out.generations[0].tokens[0], 20 * i as u32, "results come back in request order");
    }
    let counts: Vec<usize> = [&a, &b, &slow].iter().map(|s| s.calls_to("/v1/completions").len()).collect();
    assert_eq!(counts.iter().sum::<usize>(), 12, "one request per group: {counts:?}");
    assert!(counts.iter().all(|&c| c > 0), "every server took groups: {counts:?}");
    for server in [&a, &b, &slow] {
        assert!(server.calls_to("/v1/completions").iter().all(|c| c.body["n"] == json!(4)));
    }
}

#[test]
fn rollouts_of_another_weight_version_are_an_error() {
    let server = vllm_stub("7");
    let client = RolloutClient::new(&config(Backend::Vllm, &[&server.url])).unwrap();
    let error = runtime().block_on(client.generate(vec![group(1, 1)], Some(8))).unwrap_err();
    assert!(matches!(&error, RolloutError::VersionMismatch { expected: 8, found: Some(f), .. } if f == "7"), "{error}");

    let server = Stub::start(|call, _| ok(sglang_generate(&call.body, "7")));
    let client = RolloutClient::new(&config(Backend::Sglang, &[&server.url])).unwrap();
    let error = runtime().block_on(client.generate(vec![group(1, 2)], Some(8))).unwrap_err();
    assert!(error.to_string().contains(&server.url) && error.to_string().contains("\"7\""), "{error}");
}
