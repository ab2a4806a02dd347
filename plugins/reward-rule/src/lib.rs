//! The QwenLong-L1 rule verifier (reward component `rule`): the answer is the text after the last
//! `</think>`; each data source is routed to the doc-QA (sub-EM), DocMath (numeric match) or
//! multiple-choice (letter) rule of the reference verifier. Every score carries a breakdown.

pub mod choice;
pub mod docmath;
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
pub use crate::docqa::Metric;
pub use crate::routes::{RouteConfig, Router, Rule, default_routes};

const COMPONENT: &str = "reward/rule";

/// The reward's config table (`[[reward.components]] name = "rule"`, `config = { ... }`). Each field's
/// doc comment is its documentation in `longrl plugins inspect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RuleConfig {
    /// Score 0 when the response has no `</think>` (turn off for non-thinking models: the whole
    /// response is then the answer).
    pub require_think: bool,
    /// Doc-QA metric: `sub_em` (gold in prediction or prediction in gold; the recipe), `em` or `f1`.
    pub metric: Metric,
    /// Ordered list of `{prefix = "...", rule = "docqa|docmath|choice"}` or `{pattern = "regex", rule =
    /// ...}`; the first route matching a data source decides its rule; unknown sources are an error at
    /// start-up.
    pub routes: Vec<RouteConfig>,
    /// Option letters of multiple-choice questions (upper-case).
    pub choice_letters: String,
    /// DocMath relative tolerance (the reference: 0.0015).
    pub tolerance: f64,
    /// Let a doc-QA answer that normalises to nothing ("the answer is the.") match, as the reference's
    /// substring test does (Python's `"" in s` is true); off by default because a policy learns to
    /// exploit it.
    pub empty_matches: bool,
}

impl Default for RuleConfig {
    fn default() -> Self {
        RuleConfig {
            require_think: true,
            metric: Metric::SubEm,
            routes: default_routes(),
            choice_letters: "ABCD".into(),
            tolerance: docmath::DEFAULT_TOLERANCE,
            empty_matches: false,
        }
    }
}

pub struct RuleReward {
    config: RuleConfig,
    router: Router,
    choice: ChoiceParser,
}

impl Component for RuleReward {
    fn info() -> ComponentInfo {
        ComponentInfo {
            kind: ComponentKind::Reward,
            name: "rule".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "The QwenLong-L1 rule verifier: the answer after the last </think>, routed by data \
                          source to doc-QA sub-EM (SQuAD normalisation), the DocMath numeric match (0.15% \
                          tolerance, scale and rounding matches) or the multiple-choice letter. Never \
                          evaluates model text as code. The rule half of the hybrid reward."
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
        let choice = ChoiceParser::new(&config.choice_letters)
            .map_err(|message| longrl_core::Error::config(format!("{COMPONENT}: choice_letters"), message))?;
        if !(config.tolerance.is_finite() && config.tolerance >= 0.0) {
            return Err(longrl_core::Error::config(format!("{COMPONENT}: tolerance"), "must be a number >= 0"));
        }
        Ok(RuleReward { config, router, choice })
    }

    /// Score one response. Errors only for a data source no route matches.
    pub fn score_one(&self, input: &RewardInput) -> longrl_core::Result<RewardScore> {
        let Some(rule) = self.router.rule(&input.data_source) else {
            return Err(longrl_core::Error::msg(format!(
                "{COMPONENT}: no route for data source `{}` (add one to `routes`)",
                input.data_source
            )));
        };
        let base = json!({ "data_source": input.data_source, "route": rule.as_str() });
        let answer = match extract::after_think(&input.response) {
            Some(answer) => answer,
            None if self.config.require_think => {
                return Ok(verdict(0.0, "no_think", base, json!({})));
            }
            None => input.response.as_str(),
        };
        let answer = answer.trim();
        Ok(match rule {
            Rule::Docqa => self.docqa(answer, &input.ground_truth, base),
            Rule::Docmath => self.docmath(answer, &input.ground_truth, base),
            Rule::Choice => self.choice(answer, &input.ground_truth, base),
        })
    }

    fn docqa(&self, answer: &str, ground_truth: &str, base: serde_json::Value) -> RewardScore {
        let gold_raw = docqa::extract_gold(ground_truth);
        let gold = docqa::normalize_answer(&gold_raw);
        let Some(extracted) = docqa::extract_prediction(answer) else {
            return verdict(0.0, "no_answer", base, json!({ "answer": answer, "gold": gold }));
        };
        let prediction = docqa::normalize_answer(&extracted);
        let metric = self.config.metric;
        let score = docqa::score(metric, &prediction, &gold, self.config.empty_matches);
        let decided_by = if !self.config.empty_matches && (prediction.is_empty() || gold.is_empty()) {
            "docqa.empty".to_string()
        } else {
            format!("docqa.{}", metric.as_str())
        };
        let fields = json!({ "answer": answer, "extracted": extracted, "prediction": prediction, "gold": gold });
        verdict(score as f32, &decided_by, base, fields)
    }

    fn docmath(&self, answer: &str, ground_truth: &str, base: serde_json::Value) -> RewardScore {
        let gold = docmath::parse_gold(ground_truth);
        let Some(gold) = gold else {
            tracing::warn!(ground_truth, "DocMath ground truth states no number, list or boolean; scoring 0");
            return verdict(
                0.0,
                "docmath.bad_ground_truth",
                base,
                json!({ "answer": answer, "ground_truth": ground_truth }),
            );
        };
        let Some((extracted, prediction)) = docmath::extract_prediction(answer) else {
            return verdict(0.0, "no_answer", base, json!({ "answer": answer, "gold": gold }));
        };
        let (matched, check) = docmath::compare(&prediction, &gold, self.config.tolerance);
        let fields = json!({ "answer": answer, "extracted": extracted, "prediction": prediction, "gold": gold });
        verdict(if matched { 1.0 } else { 0.0 }, &format!("docmath.{check}"), base, fields)
    }

    fn choice(&self, answer: &str, ground_truth: &str, base: serde_json::Value) -> RewardScore {
        let Some(gold) = self.choice.gold(ground_truth) else {
            tracing::warn!(ground_truth, "multiple-choice ground truth names no option letter; scoring 0");
            return verdict(
                0.0,
                "choice.bad_ground_truth",
                base,
                json!({ "answer": answer, "ground_truth": ground_truth }),
            );
        };
        let Some(letter) = self.choice.extract(answer) else {
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

    /// (what, config, data_source, response, ground truth, score, decided_by).
    type Case = (&'static str, serde_json::Value, &'static str, &'static str, &'static str, f32, &'static str);

    fn cases() -> Vec<Case> {
        let plain = "Therefore, the answer is Paris.";
        let empty = "<think>x</think>Therefore, the answer is the.";
        let france = "<think>x</think>the answer is Paris, France";
        vec![
            (
                "docqa route",
                json!({}),
                "musique_v1",
                "<think>x</think>Therefore, the answer is the Eiffel Tower.",
                "Eiffel Tower",
                1.0,
                "docqa.sub_em",
            ),
            (
                "docmath route, percent vs fraction",
                json!({}),
                "docmath_v1",
                "<think>x</think>Therefore, the answer is 12.5%.",
                "0.125",
                1.0,
                "docmath.scale_x100",
            ),
            ("think required", json!({}), "musique", plain, "Paris", 0.0, "no_think"),
            (
                "answer phrase required",
                json!({}),
                "musique",
                "<think>the answer is Paris</think>I am not sure.",
                "Paris",
                0.0,
                "no_answer",
            ),
            ("think not required", json!({"require_think": false}), "musique", plain, "Paris", 1.0, "docqa.sub_em"),
            ("empty answer", json!({}), "musique", empty, "Paris", 0.0, "docqa.empty"),
            ("empty answer allowed", json!({"empty_matches": true}), "musique", empty, "Paris", 1.0, "docqa.sub_em"),
            ("metric em", json!({"metric": "em"}), "hotpotqa", france, "Paris", 0.0, "docqa.em"),
            ("metric f1", json!({"metric": "f1"}), "hotpotqa", france, "Paris", 2.0 / 3.0, "docqa.f1"),
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
    fn each_rule_decides_its_cases() {
        for (what, config, source, response, gold, score, rule) in cases() {
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
        assert!(make(json!({"choice_letters": "ab"})).contains("choice_letters"));
        assert!(make(json!({"tolerance": -1.0})).contains("tolerance"));
    }
}
