//! Breakdowns of the rule verifier over realistic model outputs, one table per route and mode
//! (official by default, then `lenient`). Each row states its expected score (checked here); the
//! snapshots pin the whole breakdown.

use longrl_core::abi::Component;
use longrl_core::api::{ComponentContext, RewardInput};
use longrl_reward_rule::RuleReward;
use serde_json::json;

struct Case {
    name: &'static str,
    data_source: &'static str,
    response: &'static str,
    ground_truth: &'static str,
    expected: f32,
}

/// Score `cases` with the rule reward configured by `config` (`{}`: the official RL reward).
fn run(config: serde_json::Value, cases: &[Case]) -> serde_json::Value {
    let reward = RuleReward::create(&config, &ComponentContext::default()).unwrap();
    let mut out = serde_json::Map::new();
    for case in cases {
        let input = RewardInput {
            response: case.response.into(),
            ground_truth: case.ground_truth.into(),
            data_source: case.data_source.into(),
            ..Default::default()
        };
        let score = reward.score_one(&input).unwrap();
        assert_eq!(score.score, case.expected, "{}: {score:?}", case.name);
        out.insert(
            case.name.into(),
            json!({ "score": score.score, "decided_by": score.decided_by, "details": score.details }),
        );
    }
    serde_json::Value::Object(out)
}

#[test]
fn docqa_breakdowns() {
    let cases = [
        Case {
            name: "r1_style_sub_em",
            data_source: "musique_v1",
            response: "<think>\nThe passage says the Tower was designed by Gustave Eiffel's company; the question asks who designed it.\n</think>\n\nBased on Passage 3, the Eiffel Tower was designed by the engineering firm of **Gustave Eiffel**.\n\nTherefore, the answer is **Gustave Eiffel**.<｜end▁of▁sentence｜>",
            ground_truth: "Gustave Eiffel",
            expected: 1.0,
        },
        Case {
            name: "gold_as_sentence",
            data_source: "multihoprag_v1",
            response: "<think>Both reports mention Apple.</think>Therefore, the answer is Apple Inc.",
            ground_truth: "Therefore, the answer is Apple.",
            expected: 1.0,
        },
        Case {
            name: "wrong_entity",
            data_source: "hotpotqa",
            response: "<think>Hmm, Lyon or Paris.</think>Therefore, the answer is Lyon.<|im_end|>",
            ground_truth: "Paris",
            expected: 0.0,
        },
        Case {
            name: "self_correction_last_phrase_wins",
            data_source: "2wikimqa",
            response: "<think>...</think>At first the answer is 1912, but re-reading passage 2, the answer is 1921.",
            ground_truth: "1921",
            expected: 1.0,
        },
        Case {
            name: "no_answer_phrase",
            data_source: "narrativeqa",
            response: "<think>The captain dies at the end.</think>The captain dies in the storm.",
            ground_truth: "The captain",
            expected: 0.0,
        },
        Case {
            name: "no_think_block",
            data_source: "qasper",
            response: "Therefore, the answer is BERT.",
            ground_truth: "BERT",
            expected: 0.0,
        },
        Case {
            name: "answer_only_an_article",
            data_source: "frames",
            response: "<think>?</think>Therefore, the answer is the.",
            ground_truth: "Mount Everest",
            expected: 0.0,
        },
        Case {
            name: "synthetic_lookup_punctuation",
            data_source: "synth_lookup",
            response: "<think>Paragraph 12: \"Varnel's capital is Ostrawick.\"</think>Therefore, the answer is ostrawick!",
            ground_truth: "Ostrawick",
            expected: 1.0,
        },
        Case {
            name: "capitalised_phrase_is_no_answer",
            data_source: "synth_lookup",
            response: "<think>Paragraph 12.</think>Therefore, THE ANSWER IS Ostrawick.",
            ground_truth: "Ostrawick",
            expected: 0.0,
        },
    ];
    insta::assert_json_snapshot!("docqa", run(json!({}), &cases));
}

#[test]
fn docmath_breakdowns() {
    let cases = [
        Case {
            name: "percent_vs_fraction_scale",
            data_source: "docmath_v1",
            response: "<think>Revenue grew from 200 to 225, i.e. 25/200 = 0.125.</think>The growth rate is 12.5%.\n\nTherefore, the answer is 12.5%.",
            ground_truth: "0.125",
            expected: 1.0,
        },
        Case {
            name: "currency_millions_thousands_separator",
            data_source: "docmath_v1",
            response: "<think>Sum the segments.</think>Therefore, the answer is $1,234.6 million.",
            ground_truth: "1234.56",
            expected: 1.0,
        },
        Case {
            name: "approximately_is_no_answer",
            data_source: "docmath_v1",
            response: "<think>3.14159 * 2</think>Therefore, the answer is approximately 6.28.",
            ground_truth: "Therefore, the answer is 6.2832.",
            expected: 0.0,
        },
        Case {
            name: "arithmetic_reads_the_first_number",
            data_source: "docmath_v1",
            response: "<think>35 minus 20</think>Therefore, the answer is 35 - 20 = 15.",
            ground_truth: "15",
            expected: 0.0,
        },
        Case {
            name: "scientific_mantissa_matches_by_power_of_ten",
            data_source: "docmath_v1",
            response: "<think>Tiny ratio.</think>Therefore, the answer is 2.5 × 10^-4.",
            ground_truth: "0.00025",
            expected: 1.0,
        },
        Case {
            name: "outside_tolerance",
            data_source: "docmath_v1",
            response: "<think>I estimate.</think>Therefore, the answer is 101.",
            ground_truth: "100",
            expected: 0.0,
        },
        Case {
            name: "code_is_never_run",
            data_source: "docmath_v1",
            response: "<think>.</think>Therefore, the answer is __import__('os').system('echo 1').",
            ground_truth: "0",
            expected: 0.0,
        },
        Case {
            name: "synthetic_numeric_difference",
            data_source: "synth_numeric",
            response: "<think>Orvane holds 412 units; Pellith holds 389.</think>Therefore, the answer is 23.",
            ground_truth: "23",
            expected: 1.0,
        },
    ];
    insta::assert_json_snapshot!("docmath", run(json!({}), &cases));
}

#[test]
fn docmath_lenient_breakdowns() {
    let cases = [
        Case {
            name: "approximately_within_tolerance",
            data_source: "docmath_v1",
            response: "<think>3.14159 * 2</think>Therefore, the answer is approximately 6.28.",
            ground_truth: "Therefore, the answer is 6.2832.",
            expected: 1.0,
        },
        Case {
            name: "arithmetic_then_equals",
            data_source: "docmath_v1",
            response: "<think>35 minus 20</think>Therefore, the answer is 35 - 20 = 15.",
            ground_truth: "15",
            expected: 1.0,
        },
        Case {
            name: "scientific_notation",
            data_source: "docmath_v1",
            response: "<think>Tiny ratio.</think>Therefore, the answer is 2.5 × 10^-4.",
            ground_truth: "0.00025",
            expected: 1.0,
        },
        Case {
            name: "boolean",
            data_source: "docmath_v1",
            response: "<think>Net income rose.</think>Therefore, the answer is Yes.",
            ground_truth: "True",
            expected: 1.0,
        },
        Case {
            name: "code_is_never_run",
            data_source: "docmath_v1",
            response: "<think>.</think>Therefore, the answer is __import__('os').system('echo 1').",
            ground_truth: "0",
            expected: 0.0,
        },
    ];
    insta::assert_json_snapshot!("docmath_lenient", run(json!({"lenient": true}), &cases));
}

#[test]
fn choice_breakdowns() {
    let cases = [
        Case {
            name: "parenthesised_letter",
            data_source: "long_toc_choices_0_20000",
            response: "<think>Section 4.2 comes before 4.3, so option B.</think>The correct answer is (B).",
            ground_truth: "The correct answer is (B)",
            expected: 1.0,
        },
        Case {
            name: "bare_letter_and_bare_gold",
            data_source: "long_toc_choices_20000_40000",
            response: "<think>...</think>**The correct answer is D**",
            ground_truth: "D",
            expected: 1.0,
        },
        Case {
            name: "wrong_letter",
            data_source: "long_toc_choices_0_20000",
            response: "<think>...</think>The correct answer is (A).",
            ground_truth: "(C)",
            expected: 0.0,
        },
        Case {
            name: "doc_qa_style_phrase_is_no_answer",
            data_source: "long_toc_choices_0_20000",
            response: "<think>Only option C is stated.</think>Therefore, the answer is (C).",
            ground_truth: "C",
            expected: 0.0,
        },
        Case {
            name: "letter_followed_by_text_reads_as_that_letter",
            data_source: "long_toc_choices_0_20000",
            response: "<think>...</think>The correct answer is Alice.",
            ground_truth: "A",
            expected: 1.0,
        },
        Case {
            name: "synthetic_route_reads_the_doc_qa_phrase",
            data_source: "synth_choice",
            response: "<think>Only option C is stated.</think>Therefore, the answer is (C).",
            ground_truth: "C",
            expected: 1.0,
        },
    ];
    insta::assert_json_snapshot!("choice", run(json!({}), &cases));
}

#[test]
fn choice_lenient_breakdowns() {
    let cases = [
        Case {
            name: "doc_qa_style_phrase",
            data_source: "synth_choice",
            response: "<think>Only option C is stated.</think>Therefore, the answer is (C).",
            ground_truth: "C",
            expected: 1.0,
        },
        Case {
            name: "names_no_option",
            data_source: "synth_choice",
            response: "<think>...</think>The correct answer is Alice.",
            ground_truth: "A",
            expected: 0.0,
        },
    ];
    insta::assert_json_snapshot!("choice_lenient", run(json!({"lenient": true}), &cases));
}
