//! The QwenLong-L1 rule verifier (reward component `rule`): each data source is routed to the
//! doc-QA (sub-EM), DocMath (numeric match) or multiple-choice (letter) rule. Every score carries a
//! breakdown, with `provenance = "rule"`.
//!
//! By default it decides exactly as the official code does. Two protocols:
//! - `train` (default; `verl/utils/reward_score/{docqa,docmath,long}.py`, the RL reward): the answer
//!   is the text after the last `</think>`; a response without one scores 0. Doc-QA: the text after
//!   the last case-sensitive "the answer is", `*` and the two DeepSeek end tokens removed, SQuAD
//!   normalisation, sub-EM. DocMath: the first match of the official regex (the number right after
//!   "the answer is", [`docmath_official`]), the reference's checks (round-up to 3 decimals).
//!   Multiple choice: `The correct answer is (X)` then `The correct answer is X`, case-sensitive.
//! - `eval` (`eval/<bench>.py`, the default of `longrl eval`): the answer is the text after the last
//!   `</think>` when there is one and it is not empty, else the whole response (no think
//!   requirement); the doc-QA gold is the row's first answer as given; DocMath drops parentheses
//!   before its regex, reads the gold as `Therefore, the answer is {gold}.` and rounds up to 2
//!   decimals in its rounding check.
//!
//! Where longrl deliberately differs, it is a named option:
//! - `lenient = true` accepts what the official code rejects: "the answer is" in any case (doc-QA
//!   and DocMath); every Qwen/DeepSeek special token removed from a doc-QA answer; DocMath values
//!   after words, spaces, colons or other currency forms, in scientific notation, after the last `=`,
//!   booleans and lists ([`docmath`]); multiple-choice phrases in any case, with a colon or extra
//!   spaces, and "the answer is (X)" / "the answer is X".
//! - `empty_matches` (training default false): the official sub-EM lets a doc-QA answer that
//!   normalises to nothing ("the answer is the.", "the answer is (A)" -> "a" -> "") match every gold
//!   answer (Python's `"" in s`); a policy learns that exploit, so training refuses it unless
//!   `empty_matches = true`. Evaluation keeps the official behaviour (true).
//! - `require_think` overrides the protocol's think rule; `metric` = `em` or `f1` replaces sub-EM.
//! - The lenient multiple-choice patterns need the letter to stand alone ("the correct answer is
//!   Alice" names no option); the official second pattern reads it as A.
//! - Golds the official code cannot read (a bare DocMath number in training, a bare option letter)
//!   are read as the evaluation reads them instead of crashing or scoring 0.

pub mod choice;
pub mod docmath;
pub mod docmath_official;
pub mod docqa;
pub mod extract;
pub mod routes;

use longrl_core::abi::Component;
use longrl_core::api::{ComponentContext, ComponentInfo, ComponentKind, Reward, RewardInput, RewardScore};
use longrl_core::sdk::{config_keys, parse_config};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::choice::ChoiceParser;
use crate::docmath::{Checks, Value};
pub use crate::docqa::Metric;
pub use crate::routes::{Route, RouteConfig, Router, Rule, default_routes};

const COMPONENT: &str = "reward/rule";

/// Which official code the verifier follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// The RL reward (`verl/utils/reward_score/*.py`).
    Train,
    /// The evaluation scripts (`eval/<bench>.py`).
    Eval,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Train => "train",
            Protocol::Eval => "eval",
        }
    }
}

/// The reward's config table (`[[reward.components]] name = "rule"`, `config = { ... }`). Each field's
/// doc comment is its documentation in `longrl plugins inspect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RuleConfig {
    /// `train`: the official RL reward (answer after `</think>`, required); `eval`: the official
    /// evaluation scripts (answer after `</think>` when present, else the whole response; DocMath
    /// rounding to 2 decimals); `longrl eval` uses `eval` unless `eval.rule` says otherwise.
    pub protocol: Protocol,
    /// Accept what the official code rejects: "The answer is" in any case, every special token
    /// stripped, DocMath numbers after words/spaces/colons/currency forms, scientific notation,
    /// arithmetic, booleans and lists, multiple-choice phrases in any case or with a colon, and "the
    /// answer is (X)" (see the crate docs).
    pub lenient: bool,
    /// Score 0 when the response has no `</think>`; null: the protocol's rule (train: required, eval: not).
    pub require_think: Option<bool>,
    /// Doc-QA metric: `sub_em` (gold in prediction or prediction in gold; the recipe), `em` or `f1`.
    pub metric: Metric,
    /// Ordered list of `{prefix = "...", rule = "docqa|docmath|choice"}` or `{pattern = "regex", rule =
    /// ...}`, each with an optional `lenient` overriding the reward's for its sources; the first route
    /// matching a data source decides its rule; unknown sources are an error at start-up. Default: the
    /// recipe's and the benchmarks' sources, and longrl's synthetic ones (`synth_choice` lenient: its
    /// prompt asks for "Therefore, the answer is (X)").
    pub routes: Vec<RouteConfig>,
    /// Option letters of multiple-choice questions (upper-case; the reference: ABCD).
    pub choice_letters: String,
    /// DocMath relative tolerance (the reference: 0.0015).
    pub tolerance: f64,
    /// Let a doc-QA answer that normalises to nothing ("the answer is the.") match every gold, as the
    /// reference's substring test does; null: no in training (a policy learns to exploit it), yes in
    /// evaluation.
    pub empty_matches: Option<bool>,
}

impl Default for RuleConfig {
    fn default() -> Self {
        RuleConfig {
            protocol: Protocol::Train,
            lenient: false,
            require_think: None,
            metric: Metric::SubEm,
            routes: default_routes(),
            choice_letters: "ABCD".into(),
            tolerance: docmath::DEFAULT_TOLERANCE,
            empty_matches: None,
        }
    }
}

pub struct RuleReward {
    config: RuleConfig,
    router: Router,
    /// The official and the lenient multiple-choice patterns.
    choice: [ChoiceParser; 2],
    require_think: bool,
    empty_matches: bool,
}

impl Component for RuleReward {
    fn info() -> ComponentInfo {
        ComponentInfo {
            kind: ComponentKind::Reward,
            name: "rule".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "The QwenLong-L1 rule verifier, deciding as the official code does (protocol `train`: \
                          the RL reward; `eval`: the evaluation scripts): the answer after the last </think>, \
                          routed by data source to doc-QA sub-EM (SQuAD normalisation), the DocMath numeric \
                          match (0.15% tolerance, scale and rounding matches) or the multiple-choice letter; \
                          relaxed formats with `lenient = true`. Never evaluates model text as code. The rule \
                          half of the hybrid reward."
                .into(),
            config: config_keys::<RuleConfig>(),
        }
    }

    fn create(config: &serde_json::Value, _context: &ComponentContext) -> longrl_core::Result<Self> {
        let config: RuleConfig = parse_config(COMPONENT, config)?;
        Self::new(config)
    }
}

impl RuleReward {
    pub fn new(config: RuleConfig) -> longrl_core::Result<Self> {
        let router = Router::new(&config.routes)
            .map_err(|(key, message)| longrl_core::Error::config(format!("{COMPONENT}: {key}"), message))?;
        let parser = |lenient| {
            ChoiceParser::new(&config.choice_letters, lenient)
                .map_err(|message| longrl_core::Error::config(format!("{COMPONENT}: choice_letters"), message))
        };
        let choice = [parser(false)?, parser(true)?];
        if !(config.tolerance.is_finite() && config.tolerance >= 0.0) {
            return Err(longrl_core::Error::config(format!("{COMPONENT}: tolerance"), "must be a number >= 0"));
        }
        let training = config.protocol == Protocol::Train;
        let require_think = config.require_think.unwrap_or(training);
        let empty_matches = config.empty_matches.unwrap_or(!training);
        Ok(RuleReward { config, router, choice, require_think, empty_matches })
    }

    fn checks(&self) -> Checks {
        match self.config.protocol {
            Protocol::Train => Checks::TRAIN,
            Protocol::Eval => Checks::EVAL,
        }
    }

    /// Score one response. Errors only for a data source no route matches.
    pub fn score_one(&self, input: &RewardInput) -> longrl_core::Result<RewardScore> {
        let Some(route) = self.router.route(&input.data_source) else {
            return Err(longrl_core::Error::msg(format!(
                "{COMPONENT}: no route for data source `{}` (add one to `routes`)",
                input.data_source
            )));
        };
        let rule = route.rule;
        let lenient = route.lenient.unwrap_or(self.config.lenient);
        let base = json!({
            "provenance": "rule",
            "data_source": input.data_source,
            "route": rule.as_str(),
            "protocol": self.config.protocol.as_str(),
            "lenient": lenient,
        });
        let think = extract::after_think(&input.response);
        if think.is_none() && self.require_think {
            return Ok(verdict(0.0, "no_think", base, json!({})));
        }
        let answer = match (self.config.protocol, think) {
            (Protocol::Train, Some(after)) => after.trim(),
            (Protocol::Train, None) => input.response.trim(),
            (Protocol::Eval, _) => extract::eval_answer_text(&input.response),
        };
        Ok(match rule {
            Rule::Docqa => self.docqa(answer, &input.ground_truth, lenient, base),
            Rule::Docmath => self.docmath(answer, &input.ground_truth, lenient, base),
            Rule::Choice => self.choice(answer, &input.ground_truth, lenient, base),
        })
    }

    fn docqa(&self, answer: &str, ground_truth: &str, lenient: bool, base: serde_json::Value) -> RewardScore {
        // Evaluation compares with the row's answer as given; training reads a gold sentence too.
        let gold_raw = match self.config.protocol {
            Protocol::Train => docqa::extract_gold(ground_truth, lenient),
            Protocol::Eval => ground_truth.to_string(),
        };
        let gold = docqa::normalize_answer(&gold_raw);
        let Some(extracted) = docqa::extract_prediction(answer, lenient) else {
            return verdict(0.0, "no_answer", base, json!({ "answer": answer, "gold": gold }));
        };
        let prediction = docqa::normalize_answer(&extracted);
        let metric = self.config.metric;
        let score = docqa::score(metric, &prediction, &gold, self.empty_matches);
        let decided_by = if !self.empty_matches && (prediction.is_empty() || gold.is_empty()) {
            "docqa.empty".to_string()
        } else {
            format!("docqa.{}", metric.as_str())
        };
        let fields = json!({ "answer": answer, "extracted": extracted, "prediction": prediction, "gold": gold });
        verdict(score as f32, &decided_by, base, fields)
    }

    fn docmath(&self, answer: &str, ground_truth: &str, lenient: bool, base: serde_json::Value) -> RewardScore {
        let protocol = self.config.protocol;
        let gold = if lenient {
            docmath::parse_gold(ground_truth)
        } else {
            // A gold the official regex cannot read (a list, a boolean) falls back to the lenient parser.
            docmath_official::capture_gold(ground_truth, protocol)
                .map(|captured| Value::Number(docmath_official::value(&captured)))
                .or_else(|| docmath::parse_gold(ground_truth))
        };
        let Some(gold) = gold else {
            tracing::warn!(ground_truth, "DocMath ground truth states no number, list or boolean; scoring 0");
            return verdict(
                0.0,
                "docmath.bad_ground_truth",
                base,
                json!({ "answer": answer, "ground_truth": ground_truth }),
            );
        };
        let prediction = if lenient {
            docmath::extract_prediction(answer)
        } else {
            docmath_official::capture(answer, protocol)
                .map(|captured| (captured.clone(), Value::Number(docmath_official::value(&captured))))
        };
        let Some((extracted, prediction)) = prediction else {
            return verdict(0.0, "no_answer", base, json!({ "answer": answer, "gold": gold }));
        };
        let (matched, check) = docmath::compare(&prediction, &gold, self.config.tolerance, self.checks());
        let fields = json!({ "answer": answer, "extracted": extracted, "prediction": prediction, "gold": gold });
        verdict(if matched { 1.0 } else { 0.0 }, &format!("docmath.{check}"), base, fields)
    }

    fn choice(&self, answer: &str, ground_truth: &str, lenient: bool, base: serde_json::Value) -> RewardScore {
        let parser = &self.choice[usize::from(lenient)];
        let Some(gold) = parser.gold(ground_truth) else {
            tracing::warn!(ground_truth, "multiple-choice ground truth names no option letter; scoring 0");
            return verdict(
                0.0,
                "choice.bad_ground_truth",
                base,
                json!({ "answer": answer, "ground_truth": ground_truth }),
            );
        };
        let Some(letter) = parser.extract(answer) else {
            return verdict(0.0, "no_answer", base, json!({ "answer": answer, "gold": gold.to_string() }));
        };
        let fields = json!({ "answer": answer, "prediction": letter.to_string(), "gold": gold.to_string() });
        verdict(if letter == gold { 1.0 } else { 0.0 }, "choice.letter", base, fields)
    }
}

/// A score with `details` = the route facts, `decided_by` and the rule's own fields.
fn verdict(score: f32, decided_by: &str, base: serde_json::Value, fields: serde_json::Value) -> RewardScore {
    let mut details = base;
    if let (Some(details), serde_json::Value::Object(fields)) = (details.as_object_mut(), fields) {
        details.extend(fields);
        details.insert("decided_by".into(), json!(decided_by));
    }
    RewardScore { score, decided_by: decided_by.to_string(), details }
}

impl Reward for RuleReward {
    fn check_sources(&self, sources: &[String]) -> longrl_core::Result<()> {
        let mut unknown: Vec<&str> =
            sources.iter().filter(|s| self.router.rule(s).is_none()).map(String::as_str).collect();
        unknown.sort_unstable();
        unknown.dedup();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(longrl_core::Error::msg(format!(
            "{COMPONENT}: no route for data source(s) {}; add `{{prefix = \"...\", rule = \"docqa|docmath|choice\"}}` entries to the rule reward's `routes`",
            unknown.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
        )))
    }

    fn score(&self, batch: &[RewardInput]) -> longrl_core::Result<Vec<RewardScore>> {
        batch.iter().map(|input| self.score_one(input)).collect()
    }
}

longrl_core::export_plugin!(reward: [RuleReward]);

#[cfg(test)]
mod tests {
    use super::*;

    fn reward(config: serde_json::Value) -> RuleReward {
        RuleReward::create(&config, &ComponentContext::default()).unwrap()
    }

    fn input(source: &str, response: &str, gold: &str) -> RewardInput {
        RewardInput {
            response: response.into(),
            ground_truth: gold.into(),
            data_source: source.into(),
            ..Default::default()
        }
    }

    /// One rule on both sides: (what, protocol, data_source, response, ground truth, official score,
    /// official decided_by, lenient score). Each response comes from reading the official code.
    type Case = (&'static str, &'static str, &'static str, &'static str, &'static str, f32, &'static str, f32);

    fn official_cases() -> Vec<Case> {
        vec![
            // Doc-QA (`docqa.py`, `eval/<bench>.py`): case-sensitive "the answer is".
            (
                "docqa exact",
                "train",
                "musique_v1",
                "<think>x</think>Therefore, the answer is the Eiffel Tower.",
                "Eiffel Tower",
                1.0,
                "docqa.sub_em",
                1.0,
            ),
            (
                "docqa capitalised",
                "train",
                "musique_v1",
                "<think>x</think>The answer is Paris.",
                "Paris",
                0.0,
                "no_answer",
                1.0,
            ),
            (
                "docqa capitalised, eval",
                "eval",
                "hotpotqa",
                "<think>x</think>The answer is Paris.",
                "Paris",
                0.0,
                "no_answer",
                1.0,
            ),
            (
                "docqa no think, train",
                "train",
                "musique",
                "Therefore, the answer is Paris.",
                "Paris",
                0.0,
                "no_think",
                0.0,
            ),
            (
                "docqa no think, eval reads the whole response",
                "eval",
                "hotpotqa",
                "Therefore, the answer is Paris.",
                "Paris",
                1.0,
                "docqa.sub_em",
                1.0,
            ),
            // `eval`: nothing after `</think>` -> the whole response ("Paris</think>" contains "paris").
            (
                "docqa empty after think, train",
                "train",
                "musique",
                "<think>so the answer is Paris</think>",
                "Paris",
                0.0,
                "no_answer",
                0.0,
            ),
            (
                "docqa empty after think, eval",
                "eval",
                "hotpotqa",
                "<think>so the answer is Paris</think>",
                "Paris",
                1.0,
                "docqa.sub_em",
                1.0,
            ),
            (
                "docqa phrase inside think only",
                "train",
                "musique",
                "<think>the answer is Paris</think>I am not sure.",
                "Paris",
                0.0,
                "no_answer",
                0.0,
            ),
            // The official clean-up removes two DeepSeek tokens only: `<|im_end|>` stays (matters for EM, below).
            (
                "docqa DeepSeek end token",
                "train",
                "musique",
                "<think>x</think>the answer is Paris<｜end▁of▁sentence｜>",
                "Paris",
                1.0,
                "docqa.sub_em",
                1.0,
            ),
            // DocMath (`docmath.py`): IGNORECASE, the number right after "the answer is ".
            (
                "docmath capitalised is fine",
                "train",
                "docmath_v1",
                "<think>x</think>The answer is 3.",
                "3",
                1.0,
                "docmath.numeric",
                1.0,
            ),
            (
                "docmath percent vs fraction",
                "train",
                "docmath_v1",
                "<think>x</think>Therefore, the answer is 12.5%.",
                "0.125",
                1.0,
                "docmath.scale_x100",
                1.0,
            ),
            (
                "docmath approximately",
                "train",
                "docmath_v1",
                "<think>x</think>the answer is approximately 3.14",
                "3.14",
                0.0,
                "no_answer",
                1.0,
            ),
            (
                "docmath currency then space",
                "train",
                "docmath_v1",
                "<think>x</think>the answer is € 7.25",
                "7.25",
                0.0,
                "no_answer",
                1.0,
            ),
            (
                "docmath currency attached",
                "train",
                "docmath_v1",
                "<think>x</think>the answer is €7.25",
                "7.25",
                1.0,
                "docmath.numeric",
                1.0,
            ),
            (
                "docmath minus before currency",
                "train",
                "docmath_v1",
                "<think>x</think>the answer is -$5",
                "-5",
                0.0,
                "no_answer",
                1.0,
            ),
            ("docmath colon", "train", "docmath_v1", "<think>x</think>the answer is: 5", "5", 0.0, "no_answer", 1.0),
            (
                "docmath arithmetic line",
                "train",
                "docmath_v1",
                "<think>x</think>the answer is 35 - 20 = 15",
                "15",
                0.0,
                "docmath.numeric",
                1.0,
            ),
            (
                "docmath leading zeros",
                "train",
                "docmath_v1",
                "<think>x</think>the answer is 007",
                "7",
                0.0,
                "docmath.numeric",
                1.0,
            ),
            (
                "docmath parentheses, train",
                "train",
                "docmath_v1",
                "<think>x</think>the answer is (12.5)",
                "12.5",
                0.0,
                "no_answer",
                1.0,
            ),
            (
                "docmath parentheses, eval",
                "eval",
                "docmath",
                "<think>x</think>the answer is (12.5)",
                "12.5",
                1.0,
                "docmath.numeric",
                1.0,
            ),
            (
                "docmath round up to 3, train",
                "train",
                "docmath_v1",
                "<think>x</think>the answer is 0.121",
                "0.129",
                0.0,
                "docmath.numeric",
                0.0,
            ),
            (
                "docmath round up to 2, eval",
                "eval",
                "docmath",
                "<think>x</think>the answer is 0.121",
                "0.129",
                1.0,
                "docmath.round_up",
                1.0,
            ),
            // Multiple choice (`long.py`): the two exact patterns.
            (
                "choice exact",
                "train",
                "long_toc_choices_0_20000",
                "<think>x</think>The correct answer is (B).",
                "The correct answer is (B)",
                1.0,
                "choice.letter",
                1.0,
            ),
            (
                "choice lowercase phrase",
                "train",
                "long_toc_choices_0_20000",
                "<think>x</think>the correct answer is (D)",
                "D",
                0.0,
                "no_answer",
                1.0,
            ),
            (
                "choice doc-QA phrase",
                "train",
                "long_toc_choices_0_20000",
                "<think>x</think>Therefore, the answer is (D)",
                "D",
                0.0,
                "no_answer",
                1.0,
            ),
            (
                "choice colon",
                "train",
                "long_toc_choices_0_20000",
                "<think>x</think>The correct answer is: A",
                "A",
                0.0,
                "no_answer",
                1.0,
            ),
            (
                "choice letter not alone",
                "train",
                "long_toc_choices_0_20000",
                "<think>x</think>The correct answer is Alice",
                "A",
                1.0,
                "choice.letter",
                0.0,
            ),
            (
                "choice no think",
                "train",
                "long_toc_choices_0_20000",
                "The correct answer is (A)",
                "A",
                0.0,
                "no_think",
                0.0,
            ),
        ]
    }

    #[test]
    fn official_by_default_and_the_opposite_when_lenient() {
        for (what, protocol, source, response, gold, official, decided_by, lenient) in official_cases() {
            let strict = reward(json!({ "protocol": protocol })).score_one(&input(source, response, gold)).unwrap();
            assert_eq!((strict.score, strict.decided_by.as_str()), (official, decided_by), "{what}: {strict:?}");
            assert_eq!(strict.details["provenance"], "rule", "{what}");
            let relaxed = reward(json!({ "protocol": protocol, "lenient": true }))
                .score_one(&input(source, response, gold))
                .unwrap();
            assert_eq!(relaxed.score, lenient, "{what} (lenient): {relaxed:?}");
        }
    }

    /// (what, config, data_source, response, ground truth, score, decided_by).
    type OptionCase = (&'static str, serde_json::Value, &'static str, &'static str, &'static str, f32, &'static str);

    fn option_cases() -> Vec<OptionCase> {
        let plain = "Therefore, the answer is Paris.";
        let empty = "<think>x</think>Therefore, the answer is the.";
        let article = "<think>x</think>Therefore, the answer is (A).";
        let france = "<think>x</think>the answer is Paris, France";
        let qwen_end = "<think>x</think>the answer is Paris<|im_end|>";
        vec![
            ("think not required", json!({"require_think": false}), "musique", plain, "Paris", 1.0, "docqa.sub_em"),
            (
                "think required in eval",
                json!({"protocol": "eval", "require_think": true}),
                "musique",
                plain,
                "Paris",
                0.0,
                "no_think",
            ),
            ("empty answer, train", json!({}), "musique", empty, "Paris", 0.0, "docqa.empty"),
            ("article answer, train", json!({}), "musique", article, "Paris", 0.0, "docqa.empty"),
            ("empty answer allowed", json!({"empty_matches": true}), "musique", empty, "Paris", 1.0, "docqa.sub_em"),
            (
                "empty answer, eval (official)",
                json!({"protocol": "eval"}),
                "musique",
                empty,
                "Paris",
                1.0,
                "docqa.sub_em",
            ),
            (
                "empty answer refused in eval",
                json!({"protocol": "eval", "empty_matches": false}),
                "musique",
                empty,
                "Paris",
                0.0,
                "docqa.empty",
            ),
            ("metric em", json!({"metric": "em"}), "hotpotqa", france, "Paris", 0.0, "docqa.em"),
            ("metric f1", json!({"metric": "f1"}), "hotpotqa", france, "Paris", 2.0 / 3.0, "docqa.f1"),
            ("em keeps a Qwen token", json!({"metric": "em"}), "hotpotqa", qwen_end, "Paris", 0.0, "docqa.em"),
            (
                "em, lenient strips it",
                json!({"metric": "em", "lenient": true}),
                "hotpotqa",
                qwen_end,
                "Paris",
                1.0,
                "docqa.em",
            ),
            (
                "bad docmath ground truth",
                json!({}),
                "docmath",
                "</think>the answer is 3",
                "unknown",
                0.0,
                "docmath.bad_ground_truth",
            ),
            (
                "boolean docmath gold, lenient",
                json!({"lenient": true}),
                "docmath",
                "</think>the answer is yes",
                "True",
                1.0,
                "docmath.boolean",
            ),
            (
                "boolean docmath gold, official",
                json!({}),
                "docmath",
                "</think>the answer is yes",
                "True",
                0.0,
                "no_answer",
            ),
            (
                "bad choice ground truth",
                json!({}),
                "long_toc_choices",
                "</think>The correct answer is (A)",
                "Paris",
                0.0,
                "choice.bad_ground_truth",
            ),
        ]
    }

    #[test]
    fn options_decide_their_cases() {
        for (what, config, source, response, gold, score, rule) in option_cases() {
            let s = reward(config).score_one(&input(source, response, gold)).unwrap();
            assert!((s.score - score).abs() < 1e-6, "{what}: {s:?}");
            assert_eq!(s.decided_by, rule, "{what}");
        }
    }

    #[test]
    fn choice_details_name_both_letters() {
        let s = reward(json!({}))
            .score_one(&input(
                "long_toc_choices_0_20000",
                "<think>x</think>The correct answer is (B).",
                "The correct answer is (C)",
            ))
            .unwrap();
        assert_eq!((s.score, s.decided_by.as_str()), (0.0, "choice.letter"));
        assert_eq!(s.details["prediction"], "B");
        assert_eq!(s.details["gold"], "C");
    }

    #[test]
    fn unknown_sources_are_named() {
        let r = reward(json!({}));
        let sources = vec!["musique_v1".to_string(), "gsm8k".into(), "mbpp".into(), "gsm8k".into()];
        let err = r.check_sources(&sources).unwrap_err().to_string();
        assert!(err.contains("`gsm8k`, `mbpp`") && !err.contains("musique"), "{err}");
        assert!(r.score(&[input("gsm8k", "</think>the answer is 1", "1")]).unwrap_err().to_string().contains("gsm8k"));
        let r = reward(json!({"routes": [{"pattern": "^gsm", "rule": "docmath"}]}));
        r.check_sources(&["gsm8k".into()]).unwrap();
        assert!(r.check_sources(&["musique".into()]).is_err());
    }

    #[test]
    fn bad_config_names_the_key() {
        let make =
            |c: serde_json::Value| RuleReward::create(&c, &ComponentContext::default()).err().unwrap().to_string();
        assert!(make(json!({"metrik": "em"})).contains("metrik"));
        assert!(make(json!({"metric": "bleu"})).contains("bleu"));
        assert!(make(json!({"routes": [{"pattern": "(", "rule": "docqa"}]})).contains("routes[0]"));
        assert!(make(json!({"routes": [{"prefix": "a", "rule": "math"}]})).contains("math"));
        assert!(make(json!({"routes": [{"prefix": "a", "rule": "choice", "lenient": 1}]})).contains("routes[0]"));
        assert!(make(json!({"choice_letters": "ab"})).contains("choice_letters"));
        assert!(make(json!({"tolerance": -1.0})).contains("tolerance"));
        assert!(make(json!({"protocol": "test"})).contains("test"));
    }
}
