//! `longrl score` end to end: the built binary with the built rule (and judge) plugins.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_longrl"))
}

/// The plugin library next to the binary, where the host looks for plugins.
fn require_plugin(crate_name: &str) {
    let file =
        format!("{}{}{}", std::env::consts::DLL_PREFIX, crate_name.replace('-', "_"), std::env::consts::DLL_SUFFIX);
    let path = binary().parent().unwrap().join(&file);
    assert!(path.exists(), "{} is missing: build the plugin first with `cargo build -p {crate_name}`", path.display());
}

fn write_jsonl(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn score(args: &[&str]) -> Output {
    Command::new(binary()).args(["--log-level", "warn", "score"]).args(args).output().unwrap()
}

fn stdout_lines(output: &Output) -> Vec<Value> {
    assert!(output.status.success(), "longrl score failed:\n{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn mixed_lines() -> Vec<String> {
    [
        json!({"id": "q1", "data_source": "musique_v1", "response": "<think>passage 2</think>Therefore, the answer is Gustave Eiffel.", "ground_truth": "Gustave Eiffel"}),
        json!({"data_source": "musique_v1", "response": "<think>hmm</think>Therefore, the answer is Lyon.", "ground_truth": "Paris",
               "prompt": [{"role": "user", "content": "<text>doc</text>\nWhere?\nFormat your response as follows: ..."}]}),
        json!({"data_source": "docmath_v1", "response": "<think>25/200</think>Therefore, the answer is 12.5%.", "ground_truth": 0.125}),
        json!({"data_source": "long_toc_choices_0_20000", "response": "<think>B</think>The correct answer is (B).", "ground_truth": "The correct answer is (B)"}),
    ]
    .iter()
    .map(Value::to_string)
    .collect()
}

#[test]
fn scores_each_line_and_summarises_by_source() {
    require_plugin("longrl-reward-rule");
    let dir = tempfile::tempdir().unwrap();
    let mut lines = mixed_lines();
    lines.insert(2, String::new()); // blank lines are skipped, line numbers still count them
    let data = write_jsonl(dir.path(), "responses.jsonl", &lines);
    let out = stdout_lines(&score(&["--data", data.to_str().unwrap()]));
    assert_eq!(out.len(), 5, "{out:?}");
    let scores: Vec<f64> = out[..4].iter().map(|l| l["score"].as_f64().unwrap()).collect();
    assert_eq!(scores, vec![1.0, 0.0, 1.0, 1.0]);
    let decided: Vec<&str> = out[..4].iter().map(|l| l["decided_by"].as_str().unwrap()).collect();
    assert_eq!(decided, vec!["docqa.sub_em", "docqa.sub_em", "docmath.scale_x100", "choice.letter"]);
    assert_eq!(out[0]["id"], "q1");
    assert_eq!(out.iter().take(4).map(|l| l["line"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 4, 5]);
    // The rule's breakdown sits under its component name.
    assert_eq!(out[1]["details"]["rule"]["details"]["prediction"], "lyon");
    assert_eq!(out[1]["details"]["rule"]["details"]["gold"], "paris");
    let summary = &out[4]["summary"];
    assert_eq!(summary["n"], 4);
    assert_eq!(summary["mean_score"], 0.75);
    assert_eq!(summary["unscored"], 0);
    assert_eq!(summary["by_source"]["musique_v1"], json!({"n": 2, "mean_score": 0.5, "unscored": 0}));
    assert_eq!(summary["by_source"]["docmath_v1"], json!({"n": 1, "mean_score": 1.0, "unscored": 0}));
}

#[test]
fn malformed_lines_are_named_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = mixed_lines();
    lines.insert(1, "{\"response\": \"x\", ".into());
    lines.push(json!({"response": "</think>the answer is 1", "ground_truth": "1"}).to_string());
    lines.push(json!({"response": 5, "ground_truth": "1", "data_source": "docmath"}).to_string());
    let data = write_jsonl(dir.path(), "bad.jsonl", &lines);
    let output = score(&["--data", data.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("3 malformed line(s)"), "{stderr}");
    assert!(stderr.contains("bad.jsonl:2:"), "{stderr}");
    assert!(stderr.contains("bad.jsonl:6: missing field `data_source`"), "{stderr}");
    assert!(stderr.contains("bad.jsonl:7:"), "{stderr}");
    assert!(!stderr.contains("bad.jsonl:1:"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn unknown_data_sources_fail_before_scoring() {
    require_plugin("longrl-reward-rule");
    let dir = tempfile::tempdir().unwrap();
    let mut lines = mixed_lines();
    lines.push(json!({"data_source": "gsm8k", "response": "</think>the answer is 4", "ground_truth": "4"}).to_string());
    lines.push(json!({"data_source": "mbpp", "response": "</think>the answer is 4", "ground_truth": "4"}).to_string());
    let data = write_jsonl(dir.path(), "mixed.jsonl", &lines);
    let output = score(&["--data", data.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`gsm8k`, `mbpp`") && stderr.contains("routes"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn rule_config_comes_from_the_reward_section() {
    require_plugin("longrl-reward-rule");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("score.toml");
    std::fs::write(
        &config,
        r#"
[[reward.components]]
name = "rule"
config = { require_think = false, routes = [{ pattern = "^gsm", rule = "docmath" }] }
"#,
    )
    .unwrap();
    let line =
        json!({"data_source": "gsm8k", "response": "So the answer is 1,024.", "ground_truth": "1024"}).to_string();
    let data = write_jsonl(dir.path(), "gsm.jsonl", &[line]);
    let out = stdout_lines(&score(&["--config", config.to_str().unwrap(), "--data", data.to_str().unwrap()]));
    assert_eq!(out[0]["score"], 1.0);
    assert_eq!(out[0]["decided_by"], "docmath.numeric");
}

#[test]
fn judge_url_without_model_is_refused() {
    let output = score(&["--data", "x.jsonl", "--judge-url", "http://127.0.0.1:9/v1"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--judge-model"));
}

/// A minimal OpenAI-compatible judge on loopback that answers every chat completion with `reply`.
fn fake_judge(reply: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            let mut request_line = String::new();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    break;
                }
                if request_line.is_empty() {
                    request_line = header.clone();
                }
                if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                if header == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            if request_line.starts_with("POST") && request_line.contains("/chat/completions") {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            let reply = json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "fake",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
            })
            .to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (url, requests)
}

#[test]
fn judge_url_adds_the_judge_where_the_rule_fails() {
    require_plugin("longrl-reward-rule");
    require_plugin("longrl-reward-judge");
    let (url, requests) = fake_judge("Both name the same city. [[YES]]");
    let dir = tempfile::tempdir().unwrap();
    let data = write_jsonl(dir.path(), "responses.jsonl", &mixed_lines());
    let out = stdout_lines(&score(&["--data", data.to_str().unwrap(), "--judge-url", &url, "--judge-model", "fake"]));
    // Only the one response the rule failed went to the judge, which said yes.
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    let scores: Vec<f64> = out[..4].iter().map(|l| l["score"].as_f64().unwrap()).collect();
    assert_eq!(scores, vec![1.0, 1.0, 1.0, 1.0]);
    assert_eq!(out[1]["decided_by"], "judge.yes");
    assert_eq!(out[1]["details"]["rule"]["score"], 0.0);
    assert!(out[0]["details"].get("judge").is_none());
}

#[test]
fn dead_judge_leaves_responses_the_rule_failed_unscored() {
    require_plugin("longrl-reward-rule");
    require_plugin("longrl-reward-judge");
    // A port nothing listens on: bind one, then free it.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("judge.toml");
    std::fs::write(
        &config,
        "[[reward.components]]\nname = \"rule\"\n\n[[reward.components]]\nname = \"judge\"\nconfig = { max_retries = 1, backoff_initial_ms = 10, timeout_secs = 2.0 }\n",
    )
    .unwrap();
    let data = write_jsonl(dir.path(), "responses.jsonl", &mixed_lines());
    let url = format!("http://127.0.0.1:{port}/v1");
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--judge-url",
        &url,
        "--judge-model",
        "m",
    ];
    let out = stdout_lines(&score(&args));
    // The rule decides three responses; the one it fails would need the judge, which is unreachable:
    // unscored (null), never a made-up 0, and left out of the summary's mean.
    let scores: Vec<Option<f64>> = out[..4].iter().map(|l| l["score"].as_f64()).collect();
    assert_eq!(scores, vec![Some(1.0), None, Some(1.0), Some(1.0)]);
    assert!(out[1]["score"].is_null(), "{}", out[1]);
    assert_eq!(out[1]["decided_by"], "judge.unscored");
    assert_eq!(out[1]["details"]["rule"]["score"], 0.0);
    let summary = &out[4]["summary"];
    assert_eq!((summary["n"].as_u64(), summary["unscored"].as_u64()), (Some(3), Some(1)), "{summary}");
    assert_eq!(summary["mean_score"].as_f64(), Some(1.0), "{summary}");
}
