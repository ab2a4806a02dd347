//! The judge against a stub OpenAI-compatible server on 127.0.0.1: request shape, concurrency,
//! timeouts (none expiring in the queue), retries, a server killed mid-run, the circuit breaker,
//! unscored verdicts, the LRU cache and the audit file.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use longrl_core::abi::Component;
use longrl_core::api::{ComponentContext, Reward, RewardInput};
use longrl_reward_judge::{DEFAULT_SYSTEM_PROMPT, JudgeReward};

/// What the stub does with request number `i` (0-based).
#[derive(Clone)]
enum Behaviour {
    /// Reply after a delay: `[[YES]]` when Answer 1 equals Answer 2, else `[[NO]]`.
    Judge {
        delay: Duration,
    },
    /// Reply with this text whatever the question.
    Text(&'static str),
    Status(StatusCode, Option<&'static str>),
    Stall,
}

type Script = Arc<dyn Fn(usize) -> Behaviour + Send + Sync>;

struct Stub {
    script: Script,
    requests: Mutex<Vec<(HeaderMap, serde_json::Value)>>,
    count: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A stub server on its own runtime; dropping the runtime kills it like a dead process.
struct Server {
    url: String,
    stub: Arc<Stub>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    fn start(script: impl Fn(usize) -> Behaviour + Send + Sync + 'static) -> Server {
        let stub = Arc::new(Stub {
            script: Arc::new(script),
            requests: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let app =
            axum::Router::new().route("/v1/chat/completions", axum::routing::post(handle)).with_state(stub.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Server { url, stub, runtime: Some(runtime) }
    }

    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    fn count(&self) -> usize {
        self.stub.count.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<(HeaderMap, serde_json::Value)> {
        self.stub.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn handle(State(stub): State<Arc<Stub>>, headers: HeaderMap, Json(body): Json<serde_json::Value>) -> Response {
    let i = stub.count.fetch_add(1, Ordering::SeqCst);
    stub.requests.lock().unwrap().push((headers, body.clone()));
    let now = stub.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    stub.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let response = match (stub.script)(i) {
        Behaviour::Judge { delay } => {
            tokio::time::sleep(delay).await;
            let user = body["messages"][1]["content"].as_str().unwrap_or_default();
            let field =
                |name: &str| user.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_default().trim().to_string();
            let same = field("Answer 1:") == field("Answer 2:");
            let text = if same { "Both say the same thing. [[YES]]" } else { "They differ. [[NO]]" };
            completion(text)
        }
        Behaviour::Text(text) => completion(text),
        Behaviour::Status(status, retry_after) => {
            let mut response =
                (status, Json(serde_json::json!({"error": {"message": "stub says no"}}))).into_response();
            if let Some(after) = retry_after {
                response.headers_mut().insert("retry-after", after.parse().unwrap());
            }
            response
        }
        Behaviour::Stall => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            completion("too late [[YES]]")
        }
    };
    stub.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

fn completion(text: &str) -> Response {
    Json(serde_json::json!({
        "id": "stub", "object": "chat.completion", "created": 0, "model": "stub-judge",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }))
    .into_response()
}

fn judge(url: &str, extra: serde_json::Value, run_dir: Option<&std::path::Path>) -> JudgeReward {
    let mut config = serde_json::json!({
        "url": url, "model": "stub-judge", "timeout_secs": 5.0, "max_retries": 2,
        "backoff_initial_ms": 10, "backoff_max_ms": 50, "circuit_breaker_cooldown_secs": 60.0,
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let context = ComponentContext { run_dir: run_dir.map(|d| d.to_path_buf()), ..Default::default() };
    JudgeReward::create(&config, &context).unwrap()
}

const PROMPT: &str = "Please read the following text and answer the question below.\n\n<text>\nDoc.\n</text>\n\nWhat is {Q}?\n\nFormat your response as follows: \"Therefore, the answer is (insert answer here)\".";

/// Item `i`: the answer `answer`, gold `gold`.
fn item(i: usize, answer: &str, gold: &str) -> RewardInput {
    RewardInput {
        response: format!("<think>working on {i}</think>Therefore, the answer is {answer}."),
        ground_truth: gold.to_string(),
        data_source: "musique_v1".into(),
        prompt: PROMPT.replace("{Q}", &format!("question {i}")),
        question: String::new(),
    }
}

fn distinct_items(n: usize) -> Vec<RewardInput> {
    (0..n).map(|i| item(i, &format!("A{i}"), &format!("A{i}"))).collect()
}

#[test]
fn request_shape_verdicts_key_and_audit() {
    let server = Server::start(|i| {
        if i == 2 { Behaviour::Text("I cannot tell.") } else { Behaviour::Judge { delay: Duration::ZERO } }
    });
    let dir = tempfile::tempdir().unwrap();
    // The key is read from a variable every test process has: setting one here would race with
    // the other tests of this binary reading the environment (setenv is not thread-safe).
    let key = std::env::var("PATH").unwrap();
    let judge = judge(
        &server.url,
        serde_json::json!({
            "api_key_env": "PATH", "seed": 42, "max_tokens": 77, "max_in_flight": 1, "verdict_rule": "last_marker",
        }),
        Some(dir.path()),
    );
    let inputs = [item(0, "Paris", "Paris"), item(1, "London", "Paris"), item(2, "Rome", "Rome")];
    // One item per call, so the stub's arrival index is the item index (within one batch the
    // order in which concurrent tasks reach the server is not fixed).
    let scores: Vec<_> = inputs.iter().map(|x| judge.score(std::slice::from_ref(x)).unwrap().remove(0)).collect();
    assert_eq!(
        scores.iter().map(|s| s.decided_by.as_str()).collect::<Vec<_>>(),
        ["judge.yes", "judge.no", "judge.unparsed"]
    );
    assert_eq!(scores.iter().map(|s| s.score).collect::<Vec<_>>(), [1.0, 0.0, 0.0]);
    assert_eq!(scores[0].details["prediction"], "Paris");
    assert!(scores.iter().all(|s| s.details["provenance"] == "judge"));

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    let (headers, body) = &requests[0];
    assert_eq!(headers["authorization"], format!("Bearer {key}").as_str());
    assert_eq!(body["model"], "stub-judge");
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["seed"], 42);
    assert_eq!(body["max_tokens"], 77);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][0]["content"], DEFAULT_SYSTEM_PROMPT);
    assert_eq!(body["messages"][1]["role"], "user");
    assert_eq!(body["messages"][1]["content"], "\nProblem: What is question 0?\nAnswer 1: Paris\nAnswer 2: Paris\n");

    let metrics = judge.take_metrics().unwrap();
    assert_eq!(
        (metrics["judge_calls"], metrics["judge_yes"], metrics["judge_no"], metrics["judge_unparsed"]),
        (3.0, 1.0, 1.0, 1.0)
    );
    assert_eq!(metrics["judge_unscored"], 0.0);

    drop(judge);
    let audit = std::fs::read_to_string(dir.path().join("judge_audit.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["verdict"], "yes");
    assert_eq!(lines[0]["rationale"], "Both say the same thing. [[YES]]");
    assert_eq!(lines[1]["verdict"], "no");
    assert_eq!(lines[2]["verdict"], "unparsed");
    assert_eq!(lines[2]["gold"], "Rome");
    assert!(!audit.contains(&key), "the key never reaches the audit");
}

#[test]
fn requests_run_concurrently_up_to_max_in_flight() {
    let server = Server::start(|_| Behaviour::Judge { delay: Duration::from_millis(150) });
    let judge = judge(&server.url, serde_json::json!({"max_in_flight": 4}), None);
    let scores = judge.score(&distinct_items(12)).unwrap();
    assert!(scores.iter().all(|s| s.decided_by == "judge.yes"));
    assert_eq!(server.count(), 12);
    assert_eq!(server.stub.max_in_flight.load(Ordering::SeqCst), 4, "4 requests in flight at the server, never more");
}

#[test]
fn a_stalling_server_times_out_and_leaves_items_unscored() {
    let server = Server::start(|_| Behaviour::Stall);
    let judge = judge(&server.url, serde_json::json!({"timeout_secs": 0.3, "max_retries": 1}), None);
    let started = Instant::now();
    let scores = judge.score(&distinct_items(2)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "bounded wait, took {:?}", started.elapsed());
    assert!(scores.iter().all(|s| s.score.is_nan() && s.decided_by == "judge.unscored"));
    assert!(scores[0].details["error"].as_str().unwrap().contains("timed out"), "{}", scores[0].details);
    let metrics = judge.take_metrics().unwrap();
    assert_eq!(metrics["judge_unscored"], 2.0);
    assert_eq!(metrics["judge_failures"], 4.0, "each item tried twice");
    assert_eq!(server.count(), 4);
}

#[test]
fn retries_on_5xx_and_429_then_succeeds() {
    let server = Server::start(|i| match i {
        0 => Behaviour::Status(StatusCode::SERVICE_UNAVAILABLE, None),
        1 => Behaviour::Status(StatusCode::TOO_MANY_REQUESTS, Some("0")),
        2 => Behaviour::Status(StatusCode::BAD_GATEWAY, None),
        _ => Behaviour::Judge { delay: Duration::ZERO },
    });
    let judge = judge(&server.url, serde_json::json!({"max_retries": 3, "max_in_flight": 1}), None);
    let scores = judge.score(&distinct_items(1)).unwrap();
    assert_eq!(scores[0].decided_by, "judge.yes");
    assert_eq!(scores[0].details["attempts"], 4);
    assert_eq!(server.count(), 4);
    let metrics = judge.take_metrics().unwrap();
    assert_eq!((metrics["judge_failures"], metrics["judge_requests"], metrics["judge_unscored"]), (3.0, 4.0, 0.0));
}

#[test]
fn client_errors_are_not_retried() {
    let server = Server::start(|_| Behaviour::Status(StatusCode::UNAUTHORIZED, None));
    let judge = judge(&server.url, serde_json::json!({"max_retries": 5}), None);
    let scores = judge.score(&distinct_items(1)).unwrap();
    assert_eq!(scores[0].decided_by, "judge.unscored");
    assert!(scores[0].details["error"].as_str().unwrap().contains("401"));
    assert_eq!(server.count(), 1);
}

#[test]
fn a_server_killed_mid_run_counts_unscored_items_and_the_run_completes() {
    let mut server = Server::start(|_| Behaviour::Judge { delay: Duration::from_millis(50) });
    let judge = judge(
        &server.url,
        serde_json::json!({"max_in_flight": 2, "max_retries": 2, "circuit_breaker_failures": 3, "timeout_secs": 2.0}),
        None,
    );
    let stub = server.stub.clone();
    let scores = std::thread::scope(|scope| {
        let scoring = scope.spawn(|| judge.score(&distinct_items(20)).unwrap());
        while stub.count.load(Ordering::SeqCst) < 4 && !scoring.is_finished() {
            std::thread::sleep(Duration::from_millis(2));
        }
        server.kill();
        scoring.join().unwrap()
    });
    let yes = scores.iter().filter(|s| s.decided_by == "judge.yes").count();
    let unscored = scores.iter().filter(|s| s.decided_by == "judge.unscored").count();
    assert_eq!(yes + unscored, 20);
    assert!(yes >= 2, "answers before the kill are kept ({yes})");
    assert!(unscored >= 10, "items after the kill are unscored ({unscored})");
    assert!(scores.iter().filter(|s| s.decided_by == "judge.unscored").all(|s| s.score.is_nan()));
    let metrics = judge.take_metrics().unwrap();
    assert_eq!(metrics["judge_unscored"], unscored as f64);
    assert!(metrics["judge_circuit_open"] > 0.0, "the breaker spares the dead server: {metrics:?}");
    // Later batches (new questions: not in the cache) are unscored at once while the circuit is open.
    let started = Instant::now();
    let fresh: Vec<RewardInput> = (100..105).map(|i| item(i, "B", "B")).collect();
    let again = judge.score(&fresh).unwrap();
    assert!(again.iter().all(|s| s.decided_by == "judge.unscored"));
    assert!(started.elapsed() < Duration::from_secs(1), "open circuit answers at once ({:?})", started.elapsed());
}

#[test]
fn verdicts_are_cached_by_problem_prediction_and_gold() {
    let server = Server::start(|_| Behaviour::Judge { delay: Duration::ZERO });
    let dir = tempfile::tempdir().unwrap();
    let judge = judge(&server.url, serde_json::json!({}), Some(dir.path()));
    // Items 0 and 1 are the same question; item 2 differs only in the gold.
    let inputs = [item(0, "X", "X"), item(0, "X", "X"), item(0, "X", "Y")];
    let first = judge.score(&inputs).unwrap();
    assert_eq!(server.count(), 2, "one request per distinct question");
    let second = judge.score(&inputs).unwrap();
    assert_eq!(server.count(), 2, "second batch served from the cache");
    let decided: Vec<&str> = second.iter().map(|s| s.decided_by.as_str()).collect();
    assert_eq!(decided, first.iter().map(|s| s.decided_by.as_str()).collect::<Vec<_>>());
    assert_eq!(decided, ["judge.yes", "judge.yes", "judge.no"]);
    assert_eq!(second[0].details["cached"], true);
    let metrics = judge.take_metrics().unwrap();
    assert_eq!((metrics["judge_calls"], metrics["judge_cache_hits"]), (2.0, 4.0));
    drop(judge);
    let audit = std::fs::read_to_string(dir.path().join("judge_audit.jsonl")).unwrap();
    let cached = audit.lines().filter(|l| l.contains("\"cached\":true")).count();
    assert_eq!(cached, 3, "cache hits across batches are audited too");
}

#[test]
fn a_dead_judge_opens_the_circuit_quickly() {
    // A port nothing listens on: every connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let judge = judge(
        &format!("http://127.0.0.1:{port}/v1"),
        serde_json::json!({"max_in_flight": 2, "max_retries": 2, "circuit_breaker_failures": 2}),
        None,
    );
    let started = Instant::now();
    let scores = judge.score(&distinct_items(30)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    // Unscored, not a made-up 0: NaN, provenance `error`, and why.
    for s in &scores {
        assert!(s.decided_by == "judge.unscored" && s.score.is_nan(), "{s:?}");
        assert_eq!(
            (&s.details["provenance"], &s.details["unscored"]),
            (&serde_json::json!("error"), &serde_json::json!(true))
        );
        assert!(s.details["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let metrics = judge.take_metrics().unwrap();
    assert_eq!(metrics["judge_unscored"], 30.0);
    assert!(metrics["judge_requests"] < 20.0, "the breaker stops requests: {metrics:?}");
    assert!(metrics["judge_circuit_open"] >= 20.0, "{metrics:?}");
}

#[test]
fn queued_items_never_expire_before_they_get_a_slot() {
    // Each reply takes 200 ms, two at a time: 24 items take ~2.4 s in 12 rounds, longer than one
    // item's whole deadline (timeout 1 s, no retries: 2 s). Counted from the slot, none expires.
    let server = Server::start(|_| Behaviour::Judge { delay: Duration::from_millis(200) });
    let judge =
        judge(&server.url, serde_json::json!({"max_in_flight": 2, "max_retries": 0, "timeout_secs": 1.0}), None);
    let started = Instant::now();
    let scores = judge.score(&distinct_items(24)).unwrap();
    assert!(started.elapsed() > Duration::from_secs(2), "the queue outlasts one deadline ({:?})", started.elapsed());
    let unscored: Vec<_> = scores.iter().filter(|s| s.decided_by != "judge.yes").collect();
    assert!(unscored.is_empty(), "{} items expired: {:?}", unscored.len(), unscored.first());
    assert_eq!(server.count(), 24);
    assert_eq!(judge.take_metrics().unwrap()["judge_unscored"], 0.0);
}

#[test]
fn the_cache_evicts_the_least_recently_used_verdict() {
    let server = Server::start(|_| Behaviour::Judge { delay: Duration::ZERO });
    let judge = judge(&server.url, serde_json::json!({"cache_entries": 2}), None);
    let ask = |i: usize| judge.score(&[item(i, "X", "X")]).unwrap().remove(0);
    ask(0);
    ask(1);
    assert_eq!(server.count(), 2);
    assert_eq!(ask(0).details["cached"], true, "0 is now the most recently used");
    ask(2); // full: evicts 1, the least recently used (a cache that clears itself would drop 0 too)
    assert_eq!(server.count(), 3);
    assert_eq!(ask(0).details["cached"], true);
    assert_eq!(server.count(), 3);
    assert_eq!(ask(1).details["cached"], false, "1 was evicted");
    assert_eq!(server.count(), 4);
}

#[test]
fn eval_protocol_sends_unthought_answers_with_seed_42() {
    let server = Server::start(|_| Behaviour::Judge { delay: Duration::ZERO });
    let unthought = RewardInput { response: "Therefore, the answer is Paris.".into(), ..item(0, "", "Paris") };
    let train = judge(&server.url, serde_json::json!({}), None);
    assert_eq!(train.score(std::slice::from_ref(&unthought)).unwrap()[0].decided_by, "judge.no_answer");
    assert_eq!(server.count(), 0, "the RL reward never sends a response without </think>");
    let eval = judge(&server.url, serde_json::json!({"protocol": "eval"}), None);
    assert_eq!(eval.score(&[unthought]).unwrap()[0].decided_by, "judge.yes");
    assert_eq!(server.requests()[0].1["seed"], 42);
    // Official extraction: a capitalised phrase states no answer; lenient sends it.
    let capitalised = item(1, "", "Paris");
    let capitalised = RewardInput { response: "<think>x</think>The answer is Paris.".into(), ..capitalised };
    let no = eval.score(std::slice::from_ref(&capitalised)).unwrap().remove(0);
    assert_eq!((no.decided_by.as_str(), &no.details["provenance"]), ("judge.no_answer", &serde_json::json!("rule")));
    let lenient = judge(&server.url, serde_json::json!({"lenient": true}), None);
    assert_eq!(lenient.score(&[capitalised]).unwrap()[0].decided_by, "judge.yes");
}
