//! The LLM behaviour analyser against a stub OpenAI-compatible server on loopback: well-formed,
//! malformed and failing replies, the request it sends, and queued items that never expire.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use longrl_report::behaviours::judge::{JudgeAnalyser, JudgeSettings, SYSTEM_PROMPT};
use longrl_report::behaviours::{Analyser, Counts, Item};
use serde_json::{Value, json};

#[derive(Default)]
struct Stub {
    requests: AtomicUsize,
    bodies: std::sync::Mutex<Vec<Value>>,
}

/// Replies by what the response under analysis says: `FAIL` -> HTTP 500, `MALFORMED` -> a reply
/// without the format, `SLOW` -> a valid reply after 300 ms, otherwise a valid reply.
async fn completions(State(stub): State<Arc<Stub>>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    stub.requests.fetch_add(1, Ordering::SeqCst);
    stub.bodies.lock().unwrap().push(body.clone());
    let user = body["messages"][1]["content"].as_str().unwrap_or_default().to_string();
    let reply =
        |text: &str| (StatusCode::OK, Json(json!({"choices": [{"message": {"role": "assistant", "content": text}}]})));
    if user.contains("FAIL") {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "boom"})));
    }
    if user.contains("MALFORMED") {
        return reply("I think it grounds twice.");
    }
    if user.contains("SLOW") {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    reply("Two quotes.\nGROUNDING: 2\nSUBGOALS: 1\nBACKTRACKING: 0\nVERIFICATION: 1")
}

/// Serve the stub on a free loopback port in a background thread; returns its base URL.
fn serve(stub: Arc<Stub>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new().route("/v1/chat/completions", post(completions)).with_state(stub);
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{address}/v1")
}

fn analyser(url: String, max_in_flight: usize, timeout_s: f64) -> JudgeAnalyser {
    JudgeAnalyser::new(JudgeSettings {
        url,
        model: "stub-judge".into(),
        api_key_env: "LONGRL_TEST_NO_SUCH_KEY".into(),
        max_in_flight,
        timeout_s,
        retries: 1,
        ..JudgeSettings::default()
    })
    .unwrap()
}

#[test]
fn well_formed_malformed_and_failing_replies() {
    let stub = Arc::new(Stub::default());
    let judge = analyser(serve(stub.clone()), 4, 10.0);
    let items = [
        Item { response: "<think>quote quote</think> answer", prompt: "the document" },
        Item { response: "<think>MALFORMED</think>", prompt: "the document" },
        Item { response: "<think>FAIL</think>", prompt: "the document" },
    ];
    let results = judge.analyse(&items);
    assert_eq!(
        results[0].as_ref().unwrap().counts,
        Counts { grounding: 2, subgoals: 1, backtracking: 0, verification: 1 }
    );
    assert!(results[1].as_ref().unwrap_err().contains("lacks the line"), "{:?}", results[1]);
    let failed = results[2].as_ref().unwrap_err();
    assert!(failed.contains("500") && failed.contains("after 2 attempts"), "{failed}");
    // One request each, plus one retry of the failing one.
    assert_eq!(stub.requests.load(Ordering::SeqCst), 4);
    let bodies = stub.bodies.lock().unwrap();
    let body = &bodies[0];
    assert_eq!(body["model"], "stub-judge");
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["messages"][0]["content"], SYSTEM_PROMPT);
    let user = body["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains("the document") && user.contains("quote quote") && !user.contains("<think>"), "{user}");
}

#[test]
fn queued_items_do_not_expire_while_waiting_for_a_slot() {
    let stub = Arc::new(Stub::default());
    // One request at a time, each 300 ms, a 1 s timeout: the eighth item waits ~2.1 s for its slot.
    let judge = analyser(serve(stub.clone()), 1, 1.0);
    let items: Vec<Item<'_>> = (0..8).map(|_| Item { response: "<think>SLOW</think>", prompt: "doc" }).collect();
    let results = judge.analyse(&items);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(stub.requests.load(Ordering::SeqCst), 8);
}

#[test]
fn an_unreachable_judge_leaves_items_unscored() {
    // Nothing listens on the port of a listener that was just closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let judge = analyser(format!("http://127.0.0.1:{port}/v1"), 2, 2.0);
    let results = judge.analyse(&[Item { response: "x", prompt: "doc" }]);
    assert!(results[0].as_ref().unwrap_err().contains("after 2 attempts"), "{results:?}");
}
