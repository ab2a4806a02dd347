//! The example third-party plugin of the author guide (docs/plugins.md): a reward of 1.0 when the
//! answer (the text after the last `</think>`) contains a configured phrase.

use longrl_core::abi::Component;
use longrl_core::api::{ComponentContext, ComponentInfo, ComponentKind, Reward, RewardInput, RewardScore};
use longrl_core::sdk::{config_keys, parse_config};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The reward's config table (`[[reward.components]] name = "contains"`, `config = { ... }`).
/// Each field's doc comment is its documentation in `longrl plugins inspect`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ContainsConfig {
    /// The phrase the answer must contain.
    pub phrase: String,
    /// Compare case-insensitively.
    pub ignore_case: bool,
    /// The score of an answer containing the phrase (0 otherwise).
    pub score: f32,
}

impl Default for ContainsConfig {
    fn default() -> Self {
        ContainsConfig { phrase: "the answer is".into(), ignore_case: true, score: 1.0 }
    }
}

pub struct ContainsReward {
    config: ContainsConfig,
}

impl Component for ContainsReward {
    fn info() -> ComponentInfo {
        ComponentInfo {
            kind: ComponentKind::Reward,
            name: "contains".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Example reward: scores an answer by whether it contains a configured phrase. \
                          Shows a third-party plugin end to end; not meant for training."
                .into(),
            config: config_keys::<ContainsConfig>(),
        }
    }

    fn create(config: &serde_json::Value, _context: &ComponentContext) -> longrl_core::Result<Self> {
        let config: ContainsConfig = parse_config("reward/contains", config)?;
        if config.phrase.is_empty() {
            return Err(longrl_core::Error::config("phrase", "must not be empty"));
        }
        tracing::info!(phrase = %config.phrase, "contains reward ready");
        Ok(ContainsReward { config })
    }
}

impl Reward for ContainsReward {
    fn check_sources(&self, _sources: &[String]) -> longrl_core::Result<()> {
        Ok(()) // every data source is scored the same way
    }

    fn score(&self, batch: &[RewardInput]) -> longrl_core::Result<Vec<RewardScore>> {
        Ok(batch.iter().map(|input| self.score_one(&input.response)).collect())
    }
}

impl ContainsReward {
    fn score_one(&self, response: &str) -> RewardScore {
        let answer = response.rsplit_once("</think>").map_or(response, |(_, after)| after);
        let found = if self.config.ignore_case {
            answer.to_lowercase().contains(&self.config.phrase.to_lowercase())
        } else {
            answer.contains(&self.config.phrase)
        };
        RewardScore {
            score: if found { self.config.score } else { 0.0 },
            decided_by: if found { "contains.found".into() } else { "contains.missing".into() },
            // Who decided (rule, judge or error): a phrase test is a rule.
            details: serde_json::json!({ "provenance": "rule", "answer": answer.trim(), "phrase": self.config.phrase }),
        }
    }
}

longrl_core::export_plugin!(reward: [ContainsReward]);

#[cfg(test)]
mod tests {
    use super::*;

    fn reward(config: serde_json::Value) -> ContainsReward {
        ContainsReward::create(&config, &ComponentContext::default()).unwrap()
    }

    #[test]
    fn scores_only_the_answer_after_thinking() {
        let r = reward(serde_json::json!({"phrase": "Paris"}));
        let inputs = [
            RewardInput { response: "<think>Paris?</think>It is London.".into(), ..Default::default() },
            RewardInput { response: "<think>hmm</think>Therefore, the answer is paris.".into(), ..Default::default() },
        ];
        let scores = r.score(&inputs).unwrap();
        assert_eq!(scores[0].score, 0.0);
        assert_eq!(scores[1].score, 1.0);
        assert_eq!(scores[1].decided_by, "contains.found");
        assert!(scores.iter().all(|s| s.details["provenance"] == "rule"));
    }

    #[test]
    fn case_sensitivity_and_bad_config() {
        let r = reward(serde_json::json!({"phrase": "Paris", "ignore_case": false, "score": 0.5}));
        let s = r.score(&[RewardInput { response: "paris".into(), ..Default::default() }]).unwrap();
        assert_eq!(s[0].score, 0.0);
        let s = r.score(&[RewardInput { response: "Paris".into(), ..Default::default() }]).unwrap();
        assert_eq!(s[0].score, 0.5);
        let err =
            ContainsReward::create(&serde_json::json!({"phrase": ""}), &ComponentContext::default()).err().unwrap();
        assert!(err.to_string().contains("phrase"));
        let err =
            ContainsReward::create(&serde_json::json!({"frase": "x"}), &ComponentContext::default()).err().unwrap();
        assert!(err.to_string().contains("frase"));
    }
}
