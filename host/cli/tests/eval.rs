//! `longrl eval` on real benchmark rows and saved predictions, scored by the real `rule` plugin.
//!
//! Needs the plugin library: `cargo build -p longrl-reward-rule` (or `cargo xtask test`).

use std::path::{Path, PathBuf};
use std::process::Command;

use longrl_core::api::ComponentContext;
use longrl_eval::{self as eval, Bench, Suite};
use longrl_plugins::PluginSet;
use longrl_rollout::RewardSet;
use serde_json::{Value, json};

/// `target/<profile>`: the `longrl` binary and the plugin libraries.
fn artifact_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_longrl")).parent().unwrap().to_path_buf()
}

fn rule_plugin() -> PathBuf {
    let path = artifact_dir().join(format!("liblongrl_reward_rule.{}", std::env::consts::DLL_EXTENSION));
    assert!(path.exists(), "{} is missing: run `cargo build -p longrl-reward-rule` first", path.display());
    path
}

fn rule_rewards(plugins: &PluginSet) -> RewardSet {
    let rule = plugins.reward("rule", &json!({}), &ComponentContext::default()).unwrap();
    RewardSet::new(vec![("rule".into(), rule)], true, 1.0)
}

/// The LongBench rows kept beside the repository (`../shared/data/longbench`).
fn longbench_dir() -> PathBuf {
    let dir = match std::env::var_os("LONGBENCH_ROWS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/longbench"),
    };
    assert!(dir.is_dir(), "{} is missing (set LONGBENCH_ROWS_DIR to the LongBench rows)", dir.display());
    dir
}

#[test]
fn real_longbench_rows_load_for_every_task() {
    let dir = longbench_dir();
    for bench in [Bench::TwoWikiMqa, Bench::HotpotQa, Bench::Musique, Bench::NarrativeQa, Bench::Qasper] {
        let file = dir.join(format!("{}.jsonl", bench.name()));
        let suite = Suite::load(bench, &file, 0).unwrap_or_else(|e| panic!("{}: {e:#}", file.display()));
        let raw: Vec<Value> =
            std::fs::read_to_string(&file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(!raw.is_empty() && suite.rows.len() == raw.len(), "{}", bench.name());
        for (row, raw) in suite.rows.iter().zip(&raw) {
            assert_eq!(raw["dataset"].as_str(), Some(bench.name()));
            assert_eq!(row.id, raw["_id"].as_str().unwrap());
            assert_eq!(row.gold, raw["answers"][0].as_str().unwrap());
            assert_eq!(row.question, raw["input"].as_str().unwrap().trim());
            assert_eq!(row.document, raw["context"].as_str().unwrap().trim());
            assert!(row.document.len() > 1000, "{} {}: context is the long document", bench.name(), row.id);
        }
        let limited = Suite::load(bench, &file, 2).unwrap();
        assert_eq!(limited.evaluated_rows(), &suite.rows[..2]);
    }
}

fn write_jsonl(path: &Path, rows: &[Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// Small benchmark files in each published format.
fn tiny_benchmarks(dir: &Path) {
    write_jsonl(
        &dir.join("hotpotqa.jsonl"),
        &[
            json!({"_id": "h1", "input": "Which case came first?", "context": "Passage 1: ...", "answers": ["Miller v. California"], "length": 3, "dataset": "hotpotqa", "all_classes": null}),
            json!({"_id": "h2", "input": "Who directed it?", "context": "Passage 2: ...", "answers": ["Norman", "Norman Foster"], "length": 3, "dataset": "hotpotqa", "all_classes": null}),
        ],
    );
    write_jsonl(
        &dir.join("docmath.jsonl"),
        &[
            json!({"question": "What is the growth rate in percent?", "paragraphs": ["Revenue grew.", "A table."], "ground_truth": 12.5}),
            json!({"question": "How many units?", "paragraphs": ["Units: 1,200."], "ground_truth": 1200}),
        ],
    );
    write_jsonl(
        &dir.join("frames.jsonl"),
        &[
            json!({"Prompt": "Which river is longer?", "Answer": "The Nile", "wiki_items": [{"title": "Nile", "text": "The Nile is long."}]}),
        ],
    );
}

/// (bench, id, response, expected rule score) — expected by hand from the reference verifier:
/// the answer is the text after the last `</think>`, then after the last "the answer is"; doc-QA
/// is sub-EM on SQuAD-normalised strings, DocMath a numeric match within 0.15%.
const CASES: &[(&str, &str, &str, f64)] = &[
    ("hotpotqa", "h1", "<think>x</think>Therefore, the answer is Miller v. California.", 1.0),
    ("hotpotqa", "h1", "<think>x</think>Therefore, the answer is **Miller**.", 1.0), // prediction inside gold
    ("hotpotqa", "h1", "<think>x</think>Therefore, the answer is Gates v. Collier.", 0.0),
    ("hotpotqa", "h1", "Therefore, the answer is Miller v. California.", 0.0), // no </think>
    ("hotpotqa", "h2", "<think>x</think>Therefore, the answer is Norman Foster.", 1.0), // gold inside prediction
    ("hotpotqa", "h2", "<think>the answer is Norman</think>I cannot tell.", 0.0), // only the text after </think> counts
    ("docmath", "0", "<think>x</think>Therefore, the answer is 12.5%.", 1.0),
    ("docmath", "0", "<think>x</think>Therefore, the answer is 12.51.", 1.0), // within 0.15%
    ("docmath", "0", "<think>x</think>Therefore, the answer is 13.", 0.0),
    ("docmath", "1", "<think>x</think>Therefore, the answer is 1,200 units.", 1.0),
    ("frames", "0", "<think>x</think>Therefore, the answer is the Nile.", 1.0),
    ("frames", "0", "<think>x</think>Therefore, the answer is the Amazon.", 0.0),
];

fn write_predictions(path: &Path) {
    let lines: Vec<Value> =
        CASES.iter().map(|(bench, id, response, _)| json!({"bench": bench, "id": id, "response": response})).collect();
    write_jsonl(path, &lines);
}

/// Per benchmark: the mean over questions of the mean score of each question's cases.
fn hand_accuracy(bench: &str) -> (f64, usize) {
    let mut questions: Vec<(&str, Vec<f64>)> = Vec::new();
    for (_, id, _, score) in CASES.iter().filter(|c| c.0 == bench) {
        match questions.iter_mut().find(|(q, _)| q == id) {
            Some((_, scores)) => scores.push(*score),
            None => questions.push((*id, vec![*score])),
        }
    }
    let mean =
        questions.iter().map(|(_, s)| s.iter().sum::<f64>() / s.len() as f64).sum::<f64>() / questions.len() as f64;
    (100.0 * mean, questions.len())
}

#[test]
fn saved_predictions_score_like_the_hand_computed_metric() {
    let dir = tempfile::tempdir().unwrap();
    tiny_benchmarks(dir.path());
    let predictions = dir.path().join("predictions.jsonl");
    write_predictions(&predictions);
    let plugins = PluginSet::load(&[rule_plugin()]).unwrap();
    let rewards = rule_rewards(&plugins);
    let benches = [Bench::DocMath, Bench::Frames, Bench::HotpotQa];
    let suites: Vec<Suite> = eval::bench::resolve_files(&benches, dir.path(), &Default::default())
        .unwrap()
        .into_iter()
        .map(|(bench, file)| Suite::load(bench, &file, 0).unwrap())
        .collect();
    let out = dir.path().join("out");
    let summary = eval::score_predictions(&rewards, &suites, &predictions, "saved", Some(&out)).unwrap();

    // Every response scored as expected, in file order within each benchmark.
    let examples: Vec<Value> = std::fs::read_to_string(out.join("examples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(examples.len(), CASES.len());
    for (bench, id, response, expected) in CASES {
        let found: Vec<&Value> = examples
            .iter()
            .filter(|e| e["bench"] == *bench && e["id"] == *id && e["response"] == response.trim())
            .collect();
        assert_eq!(found.len(), 1, "{bench} {id} {response}");
        assert_eq!(found[0]["score"].as_f64(), Some(*expected), "{bench} {id} `{response}`: {}", found[0]);
    }
    let mut average = 0.0;
    for name in ["docmath", "frames", "hotpotqa"] {
        let (accuracy, n) = hand_accuracy(name);
        let got = summary.benchmarks.iter().find(|b| b.bench == name).unwrap();
        assert!((got.accuracy - accuracy).abs() < 1e-9 && got.n == n, "{name}: {got:?} vs {accuracy} over {n}");
        average += accuracy / 3.0;
    }
    assert!((summary.average - average).abs() < 1e-9);
    let json: Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["benchmarks"]["hotpotqa"]["n"], 2);
    assert!((json["average"].as_f64().unwrap() - average).abs() < 1e-9);
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("| Model | DocMath | Frames | HQA | Avg |"), "{md}");
}

fn longrl(args: &[&str]) -> std::process::Output {
    let plugin = rule_plugin();
    Command::new(env!("CARGO_BIN_EXE_longrl"))
        .args(args)
        .arg("--set")
        .arg(format!("plugins.paths=[\"{}\"]", plugin.display()))
        .env("LONGRL_PLUGIN_PATH", "")
        .output()
        .unwrap()
}

#[test]
fn cli_scores_predictions_and_writes_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    tiny_benchmarks(dir.path());
    let predictions = dir.path().join("preds.jsonl");
    write_predictions(&predictions);
    let out = dir.path().join("out");
    let output = longrl(&[
        "eval",
        "--bench",
        "hotpotqa,docmath",
        "--data",
        dir.path().to_str().unwrap(),
        "--predictions",
        predictions.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("| Model | DocMath | HQA | Avg |"), "{stdout}");
    // The frames predictions are not of a selected benchmark: counted, not scored.
    assert!(stdout.contains("frames: 2 prediction(s) of this benchmark, which was not selected"), "{stdout}");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let keys: Vec<&String> = json["benchmarks"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["docmath", "hotpotqa"]);
    assert!((json["benchmarks"]["docmath"]["accuracy"].as_f64().unwrap() - hand_accuracy("docmath").0).abs() < 1e-9);

    // One benchmark, --data naming its file, --limit 1: h2's predictions are past the limit.
    let output = longrl(&[
        "eval",
        "--bench",
        "hotpotqa",
        "--data",
        dir.path().join("hotpotqa.jsonl").to_str().unwrap(),
        "--limit",
        "1",
        "--predictions",
        predictions.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // h1's four responses: three right, as the official eval scripts score them (`longrl eval`'s
    // default protocol): the one without `</think>` is read whole (the RL reward would give it 0).
    assert!(stdout.contains("| preds | 75.0 | 75.0 |"), "{stdout}");
    assert!(stdout.contains("hotpotqa: 2 prediction(s) for rows past --limit left out"), "{stdout}");
}

#[test]
fn cli_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    tiny_benchmarks(dir.path());
    let predictions = dir.path().join("preds.jsonl");
    write_predictions(&predictions);
    let data = dir.path().to_str().unwrap();

    // A bad benchmark row.
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("hotpotqa.jsonl"), "{\"_id\": \"h1\", \"input\": \"q\", \"context\": \"c\", \"answers\": [\"a\"]}\n{\"_id\": \"h2\", \"input\": \"q\", \"context\": \"c\"}\n").unwrap();
    let output = longrl(&[
        "eval",
        "--bench",
        "hotpotqa",
        "--data",
        bad.to_str().unwrap(),
        "--predictions",
        predictions.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("{}: line 2: missing key `answers`", bad.join("hotpotqa.jsonl").display())),
        "{stderr}"
    );

    // A prediction for an id no row has.
    let unknown = dir.path().join("unknown.jsonl");
    std::fs::write(&unknown, "{\"bench\": \"hotpotqa\", \"id\": \"h1\", \"response\": \"x\"}\n{\"bench\": \"hotpotqa\", \"id\": \"h9\", \"response\": \"x\"}\n").unwrap();
    let output = longrl(&["eval", "--bench", "hotpotqa", "--data", data, "--predictions", unknown.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains(&format!("{}: 1 prediction(s) match no benchmark row", unknown.display())), "{stderr}");
    assert!(stderr.contains("line 2: hotpotqa has no row with id `h9`"), "{stderr}");

    // A malformed prediction line.
    let malformed = dir.path().join("malformed.jsonl");
    std::fs::write(&malformed, "{\"bench\": \"hotpotqa\", \"id\": \"h1\", \"response\": \"x\"}\n{\"bench\": \"hotpotqa\", \"response\": \"x\"}\n").unwrap();
    let output = longrl(&["eval", "--bench", "hotpotqa", "--data", data, "--predictions", malformed.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{}: line 2: missing key `id`", malformed.display())), "{stderr}");

    // Several benchmarks but --data is one file.
    let output = longrl(&[
        "eval",
        "--bench",
        "hotpotqa,frames",
        "--data",
        dir.path().join("hotpotqa.jsonl").to_str().unwrap(),
        "--predictions",
        predictions.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is a file, but 2 benchmarks are named"), "{stderr}");
}

fn qwen_plugin() -> PathBuf {
    let path = artifact_dir().join(format!("liblongrl_policy_qwen.{}", std::env::consts::DLL_EXTENSION));
    assert!(path.exists(), "{} is missing: run `cargo build -p longrl-policy-qwen` first", path.display());
    path
}

/// A tiny random Qwen2 (hidden 32, 2 layers) with a BPE tokenizer trained on `texts`.
fn tiny_model(dir: &Path, texts: &[String]) -> PathBuf {
    use longrl_data::synth::tokenizer;
    let tok_dir = dir.join("tokenizer");
    std::fs::create_dir_all(&tok_dir).unwrap();
    let trained = tokenizer::train(texts.iter().map(String::as_str), 400).unwrap();
    tokenizer::save(&trained, &tok_dir, 32768).unwrap();
    let model = dir.join("model");
    let paths = format!("plugins.paths=[\"{}\"]", qwen_plugin().display());
    let output = Command::new(env!("CARGO_BIN_EXE_longrl"))
        .args([
            "model",
            "init",
            "--hidden",
            "32",
            "--layers",
            "2",
            "--heads",
            "4",
            "--kv-heads",
            "2",
            "--intermediate",
            "64",
        ])
        .arg("--tokenizer")
        .arg(tok_dir.join("tokenizer.json"))
        .arg("--out")
        .arg(&model)
        .args(["--set", &paths, "--set", "device=\"cpu\""])
        .env("LONGRL_PLUGIN_PATH", "")
        .output()
        .unwrap();
    assert!(output.status.success(), "model init: {}", String::from_utf8_lossy(&output.stderr));
    model
}

#[test]
fn a_tiny_model_runs_end_to_end_on_two_rows_per_benchmark() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    tiny_benchmarks(&data);
    // The frames file needs a second row; the LongBench ones are the real rows' first two lines.
    write_jsonl(
        &data.join("frames.jsonl"),
        &[
            json!({"Prompt": "Which river is longer?", "Answer": "The Nile", "wiki_items": [{"title": "Nile", "text": "The Nile is long."}]}),
            json!({"Prompt": "Which is older?", "Answer": "Rome", "wiki_items": [{"title": "Rome", "text": "Founded 753 BC."}, {"title": "Paris", "text": "Later."}]}),
        ],
    );
    let mut texts = Vec::new();
    for bench in [Bench::TwoWikiMqa, Bench::HotpotQa, Bench::Musique, Bench::NarrativeQa, Bench::Qasper] {
        let source = std::fs::read_to_string(longbench_dir().join(format!("{}.jsonl", bench.name()))).unwrap();
        let lines: Vec<&str> = source.lines().take(2).collect();
        std::fs::write(data.join(format!("{}.jsonl", bench.name())), lines.join("\n") + "\n").unwrap();
        for line in lines {
            let row: Value = serde_json::from_str(line).unwrap();
            texts.push(row["context"].as_str().unwrap().chars().take(4000).collect::<String>());
        }
    }
    texts.push(longrl_data::template::docqa_prompt("doc", "question"));
    let model = tiny_model(dir.path(), &texts);
    let out = dir.path().join("out");
    let paths = format!("plugins.paths=[\"{}\", \"{}\"]", qwen_plugin().display(), rule_plugin().display());
    let output = Command::new(env!("CARGO_BIN_EXE_longrl"))
        .args(["eval", "--bench", "docmath,frames,2wikimqa,hotpotqa,musique,narrativeqa,qasper"])
        .arg("--model")
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .args(["--limit", "2", "--samples", "2", "--max-input-tokens", "200", "--max-output-tokens", "6"])
        .arg("--out")
        .arg(&out)
        .args(["--set", &paths, "--set", "device=\"cpu\""])
        .env("LONGRL_PLUGIN_PATH", "")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    let json: Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let benchmarks = json["benchmarks"].as_object().unwrap();
    assert_eq!(benchmarks.len(), 7);
    for (name, b) in benchmarks {
        assert_eq!(b["n"], 2, "{name}");
        let accuracy = b["accuracy"].as_f64().unwrap();
        let ci: Vec<f64> = b["ci95"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!((0.0..=100.0).contains(&accuracy) && ci[0] <= accuracy && accuracy <= ci[1], "{name}: {b}");
    }
    let examples: Vec<Value> = std::fs::read_to_string(out.join("examples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 7 benchmarks x 2 rows x 2 samples, each scored by the rule (a random model never writes </think>).
    assert_eq!(examples.len(), 28);
    assert!(examples.iter().all(|e| e["decided_by"].as_str().is_some() && e["finish"].is_string()), "{}", examples[0]);
    // The real LongBench contexts are far over 200 tokens: their prompts were truncated.
    assert!(examples.iter().filter(|e| e["bench"] == "narrativeqa").all(|e| e["truncated_prompt"] == true));
    assert!(stdout.contains("| Model | DocMath | Frames | 2Wiki | HQA | Musi | NarQA | Qasp | Avg |"), "{stdout}");
    assert!(stdout.contains("| pass@2 |"), "{stdout}");
}
