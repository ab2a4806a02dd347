//! Doc-QA answers (MultiHopRAG, MuSiQue, HotpotQA, ...): SQuAD normalisation, then sub-EM, EM or
//! token F1, as the reference `docqa.py`.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::extract;

static ARTICLE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b(a|an|the)\b").unwrap());

/// How a normalised prediction is compared with the normalised gold answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Gold contained in the prediction or the prediction contained in gold (the recipe's reward).
    SubEm,
    /// Equal after normalisation.
    Em,
    /// Token-level F1 (a fractional score).
    F1,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::SubEm => "sub_em",
            Metric::Em => "em",
            Metric::F1 => "f1",
        }
    }
}

/// SQuAD normalisation: lower-case, drop ASCII punctuation, drop articles, fold whitespace.
pub fn normalize_answer(text: &str) -> String {
    let lower = text.to_lowercase();
    let no_punct: String = lower.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    let no_articles = ARTICLE.replace_all(&no_punct, " ");
    no_articles.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The predicted answer of a model answer text: after the last "the answer is" (exact case, or any
/// case when `lenient`), cleaned; `None` when the phrase is missing or nothing follows it (the
/// reference's `if pred_status:` treats an empty string as no answer).
pub fn extract_prediction(answer_text: &str, lenient: bool) -> Option<String> {
    let text = extract::strip_stars(answer_text);
    let raw = extract::after_last_answer_is(&text, lenient)?;
    Some(extract::clean_answer(raw, lenient)).filter(|a| !a.is_empty())
}

/// The gold answer, given bare ("Paris") or as a sentence ("Therefore, the answer is Paris.").
pub fn extract_gold(ground_truth: &str, lenient: bool) -> String {
    let text = extract::strip_stars(ground_truth);
    match extract::after_last_answer_is(&text, lenient) {
        Some(raw) => extract::clean_answer(raw, lenient),
        None => extract::clean_answer(&text, lenient),
    }
}

pub fn sub_em(prediction: &str, gold: &str) -> bool {
    gold.contains(prediction) || prediction.contains(gold)
}

/// Token F1 on normalised answers, with the reference's rule that yes/no/noanswer must match exactly.
pub fn f1(prediction: &str, gold: &str) -> f64 {
    let special = ["yes", "no", "noanswer"];
    if (special.contains(&prediction) || special.contains(&gold)) && prediction != gold {
        return 0.0;
    }
    let pred_tokens: Vec<&str> = prediction.split(' ').filter(|t| !t.is_empty()).collect();
    let gold_tokens: Vec<&str> = gold.split(' ').filter(|t| !t.is_empty()).collect();
    let mut gold_counts: HashMap<&str, usize> = HashMap::new();
    for t in &gold_tokens {
        *gold_counts.entry(t).or_default() += 1;
    }
    let mut same = 0usize;
    for t in &pred_tokens {
        if let Some(n) = gold_counts.get_mut(t).filter(|n| **n > 0) {
            *n -= 1;
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / pred_tokens.len() as f64;
    let recall = same as f64 / gold_tokens.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// The score of normalised answers under `metric`. With `empty_matches` false, an answer that
/// normalises to nothing ("the answer is the.") scores 0 instead of being a substring of everything.
pub fn score(metric: Metric, prediction: &str, gold: &str, empty_matches: bool) -> f64 {
    if !empty_matches && (prediction.is_empty() || gold.is_empty()) {
        return 0.0;
    }
    match metric {
        Metric::SubEm => f64::from(u8::from(sub_em(prediction, gold))),
        Metric::Em => f64::from(u8::from(prediction == gold)),
        Metric::F1 => f1(prediction, gold),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squad_normalisation() {
        assert_eq!(normalize_answer("The  Eiffel-Tower!"), "eiffeltower");
        assert_eq!(normalize_answer("A cat, an owl and THE dog."), "cat owl and dog");
        assert_eq!(normalize_answer("theatre"), "theatre");
        assert_eq!(normalize_answer("  "), "");
    }

    #[test]
    fn prediction_and_gold_extraction() {
        assert_eq!(extract_prediction("So **the answer is Paris**.", false).as_deref(), Some("Paris"));
        let two = "the answer is 1. Then the answer is Lyon<|im_end|>";
        assert_eq!(extract_prediction(two, true).as_deref(), Some("Lyon"));
        assert_eq!(extract_prediction(two, false).as_deref(), Some("Lyon<|im_end|>"));
        assert_eq!(extract_prediction("Paris", true), None);
        assert_eq!(extract_prediction("the answer is .", true), None);
        // The official phrase is case-sensitive: a capitalised one is no answer unless lenient.
        assert_eq!(extract_prediction("The answer is Paris.", false), None);
        assert_eq!(extract_prediction("The answer is Paris.", true).as_deref(), Some("Paris"));
        assert_eq!(extract_gold("Paris", false), "Paris");
        assert_eq!(extract_gold("Therefore, the answer is Paris.", false), "Paris");
    }

    #[test]
    fn metrics() {
        assert!(sub_em("eiffel tower in paris", "eiffel tower"));
        assert!(sub_em("tower", "eiffel tower"));
        assert!(!sub_em("london", "paris"));
        assert_eq!(score(Metric::Em, "paris", "paris", false), 1.0);
        assert_eq!(score(Metric::Em, "paris france", "paris", false), 0.0);
        assert!((f1("paris france", "paris") - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(f1("yes", "yes it is"), 0.0);
        assert_eq!(f1("no", "no"), 1.0);
        // The reference's Python `in` makes an empty answer a substring of every gold answer.
        assert_eq!(score(Metric::SubEm, "", "paris", true), 1.0);
        assert_eq!(score(Metric::SubEm, "", "paris", false), 0.0);
    }
}
