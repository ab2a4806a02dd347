//! The `eval` protocol on real LongBench rows (`shared/data/longbench`, or `LONGBENCH_ROWS_DIR`):
//! the gold is the row's first answer, and each expected score is derived by hand from the official
//! scripts (`eval/<bench>.py`: answer after `</think>` else the whole response, case-sensitive
//! "the answer is", SQuAD normalisation, Python substring sub-EM).

use std::path::PathBuf;

use longrl_core::abi::Component;
use longrl_core::api::{ComponentContext, RewardInput};
use longrl_reward_rule::RuleReward;
use serde_json::{Value, json};

fn rows_dir() -> PathBuf {
    let dir = match std::env::var_os("LONGBENCH_ROWS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/longbench"),
    };
    assert!(dir.is_dir(), "{} is missing (set LONGBENCH_ROWS_DIR to the LongBench rows)", dir.display());
    dir
}

fn rows(bench: &str) -> Vec<Value> {
    let path = rows_dir().join(format!("{bench}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

fn first_answer(row: &Value) -> String {
    row["answers"][0].as_str().unwrap().to_string()
}

fn score(config: Value, bench: &str, response: &str, gold: &str) -> f32 {
    let reward = RuleReward::create(&config, &ComponentContext::default()).unwrap();
    let input = RewardInput {
        response: response.into(),
        ground_truth: gold.into(),
        data_source: bench.into(),
        ..Default::default()
    };
    reward.score_one(&input).unwrap().score
}

const BENCHES: [&str; 5] = ["2wikimqa", "hotpotqa", "musique", "narrativeqa", "qasper"];

#[test]
fn every_row_on_both_sides_of_each_rule() {
    let eval = json!({"protocol": "eval"});
    let train = json!({});
    for bench in BENCHES {
        for (i, row) in rows(bench).iter().enumerate() {
            let gold = first_answer(row);
            let at = format!("{bench} row {i} ({gold:?})");
            let stated = format!("<think>Reading the passages.</think>Therefore, the answer is {gold}.");
            assert_eq!(score(eval.clone(), bench, &stated, &gold), 1.0, "{at}: stated");
            let capitalised = format!("<think>x</think>The answer is {gold}.");
            assert_eq!(score(eval.clone(), bench, &capitalised, &gold), 0.0, "{at}: capitalised");
            assert_eq!(score(json!({"protocol": "eval", "lenient": true}), bench, &capitalised, &gold), 1.0, "{at}");
            let unthought = format!("Therefore, the answer is {gold}.");
            assert_eq!(score(eval.clone(), bench, &unthought, &gold), 1.0, "{at}: no think, eval");
            assert_eq!(score(train.clone(), bench, &unthought, &gold), 0.0, "{at}: no think, train");
            let unstated = format!("<think>x</think>{gold}");
            assert_eq!(score(eval.clone(), bench, &unstated, &gold), 0.0, "{at}: no phrase");
        }
    }
}

#[test]
fn hand_derived_rows() {
    // (bench, row, response after "</think>", expected): sub-EM on SQuAD-normalised strings.
    let cases = [
        // "Miller v. California" and "Miller v California" normalise alike.
        ("hotpotqa", 0, "the answer is Miller v California", 1.0),
        ("hotpotqa", 0, "the answer is the Miller case", 0.0),
        // The first answer is the gold: "Knowsley" is inside the longer second answer.
        ("musique", 1, "the answer is Metropolitan Borough of Knowsley", 1.0),
        // The apostrophe goes: "tatum oneal".
        ("musique", 3, "the answer is Tatum ONeal", 1.0),
        // A prediction inside the gold counts (sub-EM both ways): "guest" in "he is guest in home ...".
        ("narrativeqa", 0, "the answer is a guest", 1.0),
        ("narrativeqa", 0, "the answer is the Mulvilles' guest", 0.0),
        // Python substring test, not tokens: "no" is inside "not mentioned".
        ("qasper", 7, "the answer is Not mentioned", 1.0),
        ("qasper", 7, "the answer is Yes", 0.0),
        ("qasper", 6, "the answer is IMDb.", 1.0),
        ("2wikimqa", 7, "the answer is American", 1.0),
        ("2wikimqa", 0, "the answer is Zagreb", 0.0),
    ];
    for (bench, index, answer, expected) in cases {
        let gold = first_answer(&rows(bench)[index]);
        let response = format!("<think>x</think>{answer}");
        assert_eq!(score(json!({"protocol": "eval"}), bench, &response, &gold), expected, "{bench} {index}: {answer}");
    }
}
