//! Properties of the rule verifier over generated inputs.

use longrl_core::abi::Component;
use longrl_core::api::{ComponentContext, Reward, RewardInput};
use longrl_reward_rule::{Protocol, RuleReward, docmath, docmath_official, docqa, extract};
use proptest::prelude::*;
use regex::Regex;

fn reward(config: serde_json::Value) -> RuleReward {
    RuleReward::create(&config, &ComponentContext::default()).unwrap()
}

fn input(source: &str, response: String, gold: String) -> RewardInput {
    RewardInput { response, ground_truth: gold, data_source: source.into(), ..Default::default() }
}

/// Free text that cannot itself state an answer or close the thinking block.
fn filler() -> impl Strategy<Value = String> {
    let stating = Regex::new(r"(?i)answer\s*is").unwrap();
    any::<String>().prop_filter("states no answer", move |s| {
        let s = s.replace('*', "");
        !stating.is_match(&s) && !s.contains(extract::THINK_END) && !s.contains("</think")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn squad_normalisation_is_idempotent(text in any::<String>()) {
        let once = docqa::normalize_answer(&text);
        prop_assert_eq!(docqa::normalize_answer(&once), once.clone());
    }

    #[test]
    fn docqa_answer_is_found_in_any_reasoning(
        reasoning in filler(),
        preamble in filler(),
        answer in "[A-Z][a-z]{1,12}( [A-Z][a-z]{1,12}){0,3}",
    ) {
        prop_assume!(!docqa::normalize_answer(&answer).is_empty()); // "The" alone is no answer
        let response = format!("<think>{reasoning}</think>{preamble}\n\nTherefore, the answer is {answer}.");
        let score = reward(serde_json::json!({})).score_one(&input("musique_v1", response, answer.clone())).unwrap();
        prop_assert_eq!(score.details["extracted"].as_str(), Some(answer.as_str()));
        prop_assert_eq!(score.score, 1.0);
        prop_assert_eq!(score.decided_by.as_str(), "docqa.sub_em");
    }

    #[test]
    fn docmath_value_is_found_in_any_reasoning(
        reasoning in filler(),
        preamble in filler(),
        after in filler(),
        value in -1.0e9f64..1.0e9,
    ) {
        let response = format!("<think>{reasoning}</think>{preamble}\nSo the answer is {value}.\n{after}");
        let score = reward(serde_json::json!({})).score_one(&input("docmath_v1", response, value.to_string())).unwrap();
        prop_assert_eq!(score.details["prediction"].as_f64(), Some(value));
        prop_assert_eq!(score.score, 1.0);
    }

    #[test]
    fn choice_letter_is_found_in_any_reasoning(reasoning in filler(), preamble in filler(), letter in "[ABCD]") {
        let response = format!("<think>{reasoning}</think>{preamble}\nThe correct answer is ({letter}).");
        let gold = format!("The correct answer is ({letter})");
        let score = reward(serde_json::json!({})).score_one(&input("long_toc_choices_0_20000", response, gold)).unwrap();
        prop_assert_eq!(score.details["prediction"].as_str(), Some(letter.as_str()));
        prop_assert_eq!(score.score, 1.0);
    }

    #[test]
    fn numbers_within_tolerance_match(gold in 1.0f64..1.0e6, negative: bool, rel in -0.0014f64..0.0014) {
        let gold = if negative { -gold } else { gold };
        let pred = gold * (1.0 + rel);
        prop_assert_eq!(docmath::compare_numbers(pred, gold, docmath::DEFAULT_TOLERANCE, docmath::Checks::TRAIN), Some("numeric"));
        let response = format!("<think></think>the answer is {pred}");
        let score = reward(serde_json::json!({})).score_one(&input("docmath", response, gold.to_string())).unwrap();
        prop_assert_eq!(score.score, 1.0);
    }

    #[test]
    fn numbers_outside_tolerance_do_not_match(gold in 1.0f64..1.0e6, negative: bool, rel in 0.002f64..0.4, above: bool) {
        // Away from the reference's scale (x100...), power-of-ten and 3-decimal rounding matches.
        let gold = if negative { -gold } else { gold };
        let pred = gold * if above { 1.0 + rel } else { 1.0 - rel };
        prop_assert_eq!(docmath::compare_numbers(pred, gold, docmath::DEFAULT_TOLERANCE, docmath::Checks::TRAIN), None);
        let response = format!("<think></think>the answer is {pred}");
        let score = reward(serde_json::json!({})).score_one(&input("docmath", response, gold.to_string())).unwrap();
        prop_assert_eq!(score.score, 0.0);
        prop_assert_eq!(score.decided_by.as_str(), "docmath.numeric");
    }

    #[test]
    fn no_input_panics_the_verifier(
        response in any::<String>(),
        gold in any::<String>(),
        source in prop::sample::select(vec!["musique", "docmath", "long_toc_choices", "synth_numeric"]),
        require_think: bool,
        lenient: bool,
        protocol in prop::sample::select(vec!["train", "eval"]),
        metric in prop::sample::select(vec!["sub_em", "em", "f1"]),
    ) {
        let config = serde_json::json!({
            "require_think": require_think, "metric": metric, "lenient": lenient, "protocol": protocol,
        });
        let r = reward(config);
        for response in [response.clone(), format!("</think>the answer is {response}"), format!("</think>The correct answer is {response}")] {
            let score = r.score(&[input(source, response, gold.clone())]).unwrap().remove(0);
            prop_assert!((0.0..=1.0).contains(&score.score));
            prop_assert!(!score.decided_by.is_empty());
        }
        let _ = docmath::parse_value(&gold);
    }

    #[test]
    fn numeric_looking_text_never_panics(text in r"[-+−$£€¥=≈~`%°(),.\[\]x×^{}eE0-9 ]{0,40}") {
        if let Some(docmath::Value::Number(n)) = docmath::parse_value(&text) {
            prop_assert!(n.is_finite());
        }
        let _ = docmath::parse_gold(&text);
        for protocol in [Protocol::Train, Protocol::Eval] {
            if let Some(captured) = docmath_official::capture(&format!("the answer is {text}"), protocol) {
                let _ = docmath_official::value(&captured);
            }
        }
    }
}
