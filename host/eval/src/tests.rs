//! The harness end to end with an in-process policy (one token per character) and a substring reward,
//! so that every number can be computed by hand.

use std::path::Path;
use std::sync::{Arc, Mutex};

use longrl_core::api::{
    ChatMessage, FinishReason, GenerateOutput, Generation, GenerationParams, LogprobOptions, LogprobOutput, Policy,
    PolicyDescription, Reward, RewardInput, RewardScore, Sequence,
};
use serde_json::json;

use super::*;

/// Characters are tokens; the chat template wraps the user turn; responses come from a script.
struct CharPolicy {
    /// (prompt text, sample index) → response.
    script: Box<dyn Fn(&str, usize) -> String + Send>,
    /// Every prompt generated for, decoded, and the params of each call.
    seen: Arc<Mutex<Vec<(String, GenerationParams)>>>,
}

impl Policy for CharPolicy {
    fn describe(&self) -> longrl_core::Result<PolicyDescription> {
        unimplemented!("not used by the harness")
    }
    fn tokenize(&self, text: &str, _add_special_tokens: bool) -> longrl_core::Result<Vec<u32>> {
        Ok(text.chars().map(|c| c as u32).collect())
    }
    fn decode(&self, ids: &[u32], _skip_special_tokens: bool) -> longrl_core::Result<String> {
        Ok(ids.iter().map(|&i| char::from_u32(i).unwrap()).collect())
    }
    fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> longrl_core::Result<String> {
        assert!(add_generation_prompt && messages.len() == 1 && messages[0].role == "user");
        Ok(format!("<U>{}<A>", messages[0].content))
    }
    fn generate(&mut self, prompts: &[Vec<u32>], params: &GenerationParams) -> longrl_core::Result<GenerateOutput> {
        let mut generations = Vec::new();
        for prompt in prompts {
            let text = self.decode(prompt, true)?;
            for j in 0..params.rollouts as usize {
                let response = (self.script)(&text, j);
                generations.push(Generation {
                    tokens: vec![0; response.len()],
                    text: format!(" {response}\n"),
                    logprobs: vec![0.0; response.len()],
                    finish: if response.ends_with("...") { FinishReason::Length } else { FinishReason::Stop },
                });
            }
            self.seen.lock().unwrap().push((text, params.clone()));
        }
        Ok(GenerateOutput { generations, ..Default::default() })
    }
    fn logprobs(&mut self, _batch: &[Sequence], _options: &LogprobOptions) -> longrl_core::Result<LogprobOutput> {
        unimplemented!("not used by the harness")
    }
    fn parameters(&self) -> longrl_core::Result<Vec<(String, tch::Tensor)>> {
        unimplemented!("not used by the harness")
    }
    fn save(&self, _dir: &Path) -> longrl_core::Result<()> {
        unimplemented!("not used by the harness")
    }
    fn load_weights(&mut self, _dir: &Path) -> longrl_core::Result<()> {
        unimplemented!("not used by the harness")
    }
}

/// 1 when the text after "the answer is" equals the gold, else 0; records what it was asked.
struct ExactReward {
    inputs: Arc<Mutex<Vec<RewardInput>>>,
}

impl Reward for ExactReward {
    fn check_sources(&self, sources: &[String]) -> longrl_core::Result<()> {
        match sources.iter().find(|s| Bench::parse(s).is_none()) {
            Some(s) => Err(longrl_core::Error::msg(format!("no route for {s}"))),
            None => Ok(()),
        }
    }
    fn score(&self, batch: &[RewardInput]) -> longrl_core::Result<Vec<RewardScore>> {
        self.inputs.lock().unwrap().extend(batch.iter().cloned());
        Ok(batch
            .iter()
            .map(|input| {
                let answer = input.response.rsplit("the answer is ").next().unwrap_or("").trim_end_matches('.');
                let score = if answer == input.ground_truth { 1.0 } else { 0.0 };
                RewardScore { score, decided_by: "exact".into(), details: json!({ "answer": answer }) }
            })
            .collect())
    }
}

fn reward_set() -> (RewardSet, Arc<Mutex<Vec<RewardInput>>>) {
    let inputs = Arc::new(Mutex::new(Vec::new()));
    let reward: Box<dyn Reward> = Box::new(ExactReward { inputs: inputs.clone() });
    (RewardSet::new(vec![("exact".into(), reward)], true, 1.0), inputs)
}

fn row(id: &str, document: &str, question: &str, gold: &str) -> EvalRow {
    EvalRow { id: id.into(), line: 1, question: question.into(), document: document.into(), gold: gold.into() }
}

fn suite(bench: Bench, rows: Vec<EvalRow>) -> Suite {
    let evaluated = rows.len();
    Suite { bench, file: format!("{}.jsonl", bench.name()).into(), rows, evaluated }
}

fn spec(suites: Vec<Suite>, rollouts: u32, max_input_tokens: u32) -> EvalSpec {
    EvalSpec {
        suites,
        rollouts,
        max_input_tokens,
        generation: GenerationParams { seed: 7, ..Default::default() },
        batch_prompts: 2,
        label: "fake".into(),
        policy: "char".into(),
    }
}

/// The question's gold answer on the samples listed in `right`, a wrong one on the others.
fn scripted(right: &'static [(&'static str, &'static [usize])]) -> Box<dyn Fn(&str, usize) -> String + Send> {
    Box::new(move |prompt, j| {
        let (gold, samples) =
            right.iter().find(|(q, _)| prompt.contains(&format!("{q}?"))).map_or(("?", &[][..]), |(q, s)| (*q, *s));
        if samples.contains(&j) {
            format!("Therefore, the answer is {}.", gold.to_uppercase())
        } else {
            "the answer is nope.".into()
        }
    })
}

#[test]
fn generation_scores_k_samples_with_mean_accuracy_and_pass_at_k() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    // Questions a?, b?, c? with gold A, B, C; 4 samples each: a right on 4, b on 1, c on none.
    let mut policy = CharPolicy { script: scripted(&[("a", &[0, 1, 2, 3]), ("b", &[2])]), seen: seen.clone() };
    let (rewards, inputs) = reward_set();
    let hotpot = suite(
        Bench::HotpotQa,
        vec![row("r1", "doc one", "a?", "A"), row("r2", "doc two", "b?", "B"), row("r3", "d3", "c?", "C")],
    );
    let summary = run_eval(&mut policy, &rewards, &spec(vec![hotpot], 4, 1000), None).unwrap();

    let b = &summary.benchmarks[0];
    assert_eq!((b.bench, b.n, b.samples), ("hotpotqa", 3, [4, 4]));
    // Mean accuracy (4/4 + 1/4 + 0/4) / 3 = 5/12.
    assert!((b.accuracy - 100.0 * 5.0 / 12.0).abs() < 1e-9, "{}", b.accuracy);
    assert!((summary.average - b.accuracy).abs() < 1e-12);
    // pass@1 = accuracy; pass@2 = (1 + (1 - C(3,2)/C(4,2)) + 0)/3 = (1 + 0.5)/3; pass@4 = 2/3.
    let pass: Vec<(usize, f64)> = b.pass_at.clone();
    assert_eq!(pass.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 2, 4]);
    assert!((pass[0].1 - 100.0 * 5.0 / 12.0).abs() < 1e-9);
    assert!((pass[1].1 - 50.0).abs() < 1e-9);
    assert!((pass[2].1 - 100.0 * 2.0 / 3.0).abs() < 1e-9);
    let (lo, hi) = stats::wilson_interval(5.0 / 12.0, 3);
    assert_eq!(b.ci95, [100.0 * lo, 100.0 * hi]);

    // Two prompts per call, n = K, seeds advancing per call; the prompt is the template in the chat turn.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].0, format!("<U>{}<A>", longrl_data::template::docqa_prompt("doc one", "a?")));
    assert!(seen.iter().all(|(_, p)| p.rollouts == 4));
    assert_eq!(seen.iter().map(|(_, p)| p.seed).collect::<Vec<_>>(), vec![7, 7, 8]);
    // The reward saw the stripped response, the bench name as data source and the user message.
    let inputs = inputs.lock().unwrap();
    assert_eq!(inputs.len(), 12);
    assert_eq!(inputs[0].data_source, "hotpotqa");
    assert_eq!(inputs[0].response, "Therefore, the answer is A.");
    assert_eq!(inputs[0].prompt, longrl_data::template::docqa_prompt("doc one", "a?"));
    assert_eq!((inputs[0].question.as_str(), inputs[0].ground_truth.as_str()), ("a?", "A"));
}

#[test]
fn long_prompts_keep_the_first_and_last_halves_of_the_user_message() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut policy = CharPolicy { script: scripted(&[]), seen: seen.clone() };
    let (rewards, _) = reward_set();
    let document: String = (0..500).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let long = row("long", &document, "q?", "x");
    let short = row("short", "tiny", "q?", "x");
    let full = prompt::user_message(&long);
    let limit = 301;
    let summary =
        run_eval(&mut policy, &rewards, &spec(vec![suite(Bench::Qasper, vec![long, short.clone()])], 1, limit), None)
            .unwrap();
    assert_eq!(summary.benchmarks[0].truncated_prompts, 1);
    let chars: Vec<char> = full.chars().collect();
    let kept: String = chars[..150].iter().chain(&chars[chars.len() - 151..]).collect();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0, format!("<U>{kept}<A>"));
    assert!(
        kept.ends_with("q?\n\nFormat your response as follows: \"Therefore, the answer is (insert answer here)\".")
    );
    assert_eq!(seen[1].0, format!("<U>{}<A>", prompt::user_message(&short)));
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn predictions_are_matched_by_id_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (rewards, _) = reward_set();
    let rows = vec![row("r1", "d", "a?", "A"), row("r2", "d", "b?", "B"), row("r3", "d", "c?", "C")];
    let mut hotpot = suite(Bench::HotpotQa, rows);
    hotpot.evaluated = 2; // --limit 2
    let file = write(
        dir.path(),
        "preds.jsonl",
        concat!(
            r#"{"bench": "hotpotqa", "id": "r1", "response": "the answer is A"}"#,
            "\n",
            r#"{"bench": "hotpotqa", "id": "r1", "response": "the answer is Z"}"#,
            "\n",
            "\n",
            r#"{"bench": "hotpotqa", "id": "r3", "response": "the answer is C"}"#,
            "\n",
            r#"{"bench": "qasper", "id": "q", "response": "x"}"#,
            "\n",
        ),
    );
    let out = dir.path().join("out");
    let summary = score_predictions(&rewards, &[hotpot], &file, "saved", Some(&out)).unwrap();
    let b = &summary.benchmarks[0];
    // r1 answered twice (1 of 2 right), r2 has no prediction, r3 is past the limit.
    assert_eq!((b.n, b.no_prediction, b.beyond_limit, b.samples), (1, 1, 1, [2, 2]));
    assert!((b.accuracy - 50.0).abs() < 1e-9);
    assert_eq!(summary.other_benches, vec![("qasper", 1)]);

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let (lo, hi) = stats::wilson_interval(0.5, 1);
    let ci = json["benchmarks"]["hotpotqa"]["ci95"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect::<Vec<_>>();
    assert!(ci.len() == 2 && (ci[0] - 100.0 * lo).abs() < 1e-9 && (ci[1] - 100.0 * hi).abs() < 1e-9, "{ci:?}");
    let mut shape = json.clone();
    shape["benchmarks"]["hotpotqa"]["ci95"] = json!([]);
    assert_eq!(shape, json!({"benchmarks": {"hotpotqa": {"accuracy": 50.0, "n": 1, "ci95": []}}, "average": 50.0}));
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("| Model | HQA | Avg |"), "{md}");
    assert!(md.contains("| saved | 50.0 | 50.0 |"), "{md}");
    assert!(md.contains("| pass@2 | 100.0 | 100.0 |"), "{md}");
    assert!(md.contains("hotpotqa: 1 row(s) had no prediction"), "{md}");
    assert!(md.contains("qasper: 1 prediction(s) of this benchmark, which was not selected"), "{md}");
    let examples: Vec<serde_json::Value> = std::fs::read_to_string(out.join("examples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(examples.len(), 2);
    assert_eq!(
        (examples[0]["id"].as_str(), examples[0]["score"].as_f64(), examples[1]["sample"].as_u64()),
        (Some("r1"), Some(1.0), Some(1))
    );
}

#[test]
fn unknown_prediction_ids_are_errors_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let (rewards, _) = reward_set();
    let file = write(
        dir.path(),
        "preds.jsonl",
        concat!(
            r#"{"bench": "hotpotqa", "id": "r1", "response": "x"}"#,
            "\n",
            r#"{"bench": "hotpotqa", "id": "nope", "response": "x"}"#,
            "\n",
            r#"{"bench": "hotpotqa", "id": 7, "response": "x"}"#,
            "\n",
        ),
    );
    let hotpot = suite(Bench::HotpotQa, vec![row("r1", "d", "a?", "A")]);
    let error = score_predictions(&rewards, &[hotpot], &file, "x", None).unwrap_err().to_string();
    assert!(error.contains("2 prediction(s) match no benchmark row"), "{error}");
    assert!(error.contains("line 2: hotpotqa has no row with id `nope`"), "{error}");
    assert!(error.contains("line 3: hotpotqa has no row with id `7`"), "{error}");
}

#[test]
fn malformed_prediction_lines_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("{\"bench\": \"hotpotqa\", \"id\": \"r1\"}", "line 2: missing key `response`"),
        ("{\"bench\": \"hotpot\", \"id\": \"r1\", \"response\": \"x\"}", "line 2: unknown benchmark `hotpot`"),
        ("{\"bench\": \"hotpotqa\", \"id\": -1, \"response\": \"x\"}", "line 2: key `id`"),
        ("not json", "line 2: invalid JSON"),
        ("[1]", "line 2: not a JSON object"),
    ];
    for (bad, expected) in cases {
        let file = write(
            dir.path(),
            "p.jsonl",
            &format!("{{\"bench\": \"hotpotqa\", \"id\": \"r1\", \"response\": \"x\"}}\n{bad}\n"),
        );
        let error = predictions::read_predictions(&file).unwrap_err().to_string();
        assert!(error.contains(&format!("{}: {expected}", file.display())), "`{error}` lacks `{expected}`");
    }
}
