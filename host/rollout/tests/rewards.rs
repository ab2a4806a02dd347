//! The hybrid reward (`RewardSet`) with in-process fake rewards: max over rewards, the judge asked
//! only when the rule is below 1, and a dead judge never stalling or lowering a score.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use longrl_core::api::{Reward, RewardInput, RewardScore};
use longrl_rollout::{RewardSet, is_unscored};
use serde_json::json;

/// Scores 1 when the response equals the ground truth; stands in for the rule.
struct ExactRule;

impl Reward for ExactRule {
    fn check_sources(&self, sources: &[String]) -> longrl_core::Result<()> {
        match sources.iter().find(|s| s.as_str() == "unknown") {
            Some(s) => Err(longrl_core::Error::msg(format!("no route for `{s}`"))),
            None => Ok(()),
        }
    }
    fn score(&self, batch: &[RewardInput]) -> longrl_core::Result<Vec<RewardScore>> {
        Ok(batch
            .iter()
            .map(|i| {
                let hit = i.response == i.ground_truth;
                RewardScore { score: if hit { 1.0 } else { 0.0 }, decided_by: "exact".into(), details: json!({}) }
            })
            .collect())
    }
}

/// What a judge does on each call.
#[derive(Clone, Copy)]
enum Mode {
    /// "yes" when the response contains the ground truth, case-insensitively.
    Answer,
    /// Every verdict `judge.unavailable` with score 0 (the judge plugin's fallback).
    Unavailable,
    /// Every verdict `judge.unscored` with score NaN (the judge plugin, unreachable after retries).
    Unscored,
    /// The call fails.
    Fail,
    /// Returns one score too few.
    Short,
}

/// A fake judge that records what it was asked.
struct FakeJudge {
    mode: Mutex<Mode>,
    calls: AtomicU64,
    asked: Mutex<Vec<String>>,
    report_fallbacks: bool,
    fallbacks: AtomicU64,
}

impl FakeJudge {
    fn new(mode: Mode) -> Self {
        FakeJudge {
            mode: Mutex::new(mode),
            calls: AtomicU64::new(0),
            asked: Mutex::new(Vec::new()),
            report_fallbacks: false,
            fallbacks: AtomicU64::new(0),
        }
    }
}

impl Reward for &'static FakeJudge {
    fn check_sources(&self, _sources: &[String]) -> longrl_core::Result<()> {
        Ok(())
    }
    fn score(&self, batch: &[RewardInput]) -> longrl_core::Result<Vec<RewardScore>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.asked.lock().unwrap().extend(batch.iter().map(|i| i.response.clone()));
        let mode = *self.mode.lock().unwrap();
        let verdict = |i: &RewardInput| match mode {
            Mode::Answer if i.response.to_lowercase().contains(&i.ground_truth.to_lowercase()) => {
                RewardScore { score: 1.0, decided_by: "judge.yes".into(), details: json!({"rationale": "same"}) }
            }
            Mode::Unavailable => {
                self.fallbacks.fetch_add(1, Ordering::SeqCst);
                RewardScore { score: 0.0, decided_by: "judge.unavailable".into(), details: json!({}) }
            }
            Mode::Unscored => {
                RewardScore { score: f32::NAN, decided_by: "judge.unscored".into(), details: json!({"unscored": true}) }
            }
            _ => RewardScore { score: 0.0, decided_by: "judge.no".into(), details: json!({}) },
        };
        match mode {
            Mode::Fail => Err(longrl_core::Error::msg("connection refused")),
            Mode::Short => Ok(batch.iter().skip(1).map(verdict).collect()),
            _ => Ok(batch.iter().map(verdict).collect()),
        }
    }
    fn take_metrics(&self) -> longrl_core::Result<BTreeMap<String, f64>> {
        let mut out = BTreeMap::from([("judge_calls".to_string(), self.calls.load(Ordering::SeqCst) as f64)]);
        if self.report_fallbacks {
            out.insert("judge_fallbacks".into(), self.fallbacks.swap(0, Ordering::SeqCst) as f64);
        }
        Ok(out)
    }
}

fn judge(mode: Mode) -> &'static FakeJudge {
    Box::leak(Box::new(FakeJudge::new(mode)))
}

fn hybrid(judge: &'static FakeJudge) -> RewardSet {
    RewardSet::new(vec![("rule".into(), Box::new(ExactRule)), ("judge".into(), Box::new(judge))], true, 1.0)
}

fn input(response: &str, gold: &str) -> RewardInput {
    RewardInput {
        response: response.into(),
        ground_truth: gold.into(),
        data_source: "musique".into(),
        ..Default::default()
    }
}

fn batch() -> Vec<RewardInput> {
    vec![input("Paris", "Paris"), input("It is paris, France", "Paris"), input("Lyon", "Paris")]
}

#[test]
fn judge_is_asked_only_when_the_rule_fails_and_max_wins() {
    let judge = judge(Mode::Answer);
    let set = hybrid(judge);
    let scores = set.score(&batch()).unwrap();
    assert_eq!(scores.iter().map(|s| s.score).collect::<Vec<_>>(), vec![1.0, 1.0, 0.0]);
    assert_eq!(scores.iter().map(|s| s.decided_by.as_str()).collect::<Vec<_>>(), vec!["exact", "judge.yes", "exact"]);
    assert_eq!(judge.calls.load(Ordering::SeqCst), 1);
    assert_eq!(*judge.asked.lock().unwrap(), vec!["It is paris, France".to_string(), "Lyon".to_string()]);
    // Every reward's breakdown is kept; the judge's only where it was asked.
    assert_eq!(scores[0].details["rule"]["decided_by"], "exact");
    assert!(scores[0].details.get("judge").is_none());
    assert_eq!(scores[1].details["judge"]["details"]["rationale"], "same");
    assert_eq!(scores[2].details["judge"]["decided_by"], "judge.no");
}

#[test]
fn judge_is_not_called_when_the_rule_solves_everything() {
    let judge = judge(Mode::Answer);
    let set = hybrid(judge);
    set.score(&[input("Paris", "Paris"), input("Rome", "Rome")]).unwrap();
    assert_eq!(judge.calls.load(Ordering::SeqCst), 0);
}

#[test]
fn without_cascade_every_reward_scores_everything() {
    let judge = judge(Mode::Answer);
    let set = RewardSet::new(vec![("rule".into(), Box::new(ExactRule)), ("judge".into(), Box::new(judge))], false, 1.0);
    let scores = set.score(&batch()).unwrap();
    assert_eq!(judge.asked.lock().unwrap().len(), 3);
    // A tie keeps the earlier reward's verdict.
    assert_eq!(scores[0].decided_by, "exact");
}

#[test]
fn unavailable_judge_keeps_the_rule_score_and_counts_the_fallback() {
    let judge = judge(Mode::Unavailable);
    let set = hybrid(judge);
    let scores = set.score(&batch()).unwrap();
    assert_eq!(scores.iter().map(|s| s.score).collect::<Vec<_>>(), vec![1.0, 0.0, 0.0]);
    assert_eq!(scores[1].decided_by, "exact");
    assert_eq!(scores[1].details["judge"]["decided_by"], "judge.unavailable");
    let metrics = set.take_metrics().unwrap();
    assert_eq!(metrics["judge_fallbacks"], 2.0);
    assert_eq!(metrics["judge_calls"], 1.0);
    // Counters reset once taken.
    assert_eq!(set.take_metrics().unwrap()["judge_fallbacks"], 0.0);
}

#[test]
fn a_judge_counting_its_own_fallbacks_is_not_double_counted() {
    let judge = Box::leak(Box::new(FakeJudge { report_fallbacks: true, ..FakeJudge::new(Mode::Unavailable) }));
    let set = hybrid(judge);
    set.score(&batch()).unwrap();
    assert_eq!(set.take_metrics().unwrap()["judge_fallbacks"], 2.0);
}

/// The scores as `Some(score)`, `None` for unscored responses.
fn decided(scores: &[RewardScore]) -> Vec<Option<f32>> {
    scores.iter().map(|s| (!is_unscored(s)).then_some(s.score)).collect()
}

#[test]
fn an_unscored_verdict_where_the_rule_failed_leaves_the_response_unscored() {
    let set = hybrid(judge(Mode::Unscored));
    let scores = set.score(&batch()).unwrap();
    // The rule decided the first; the judge could not decide the other two: no made-up 0.
    assert_eq!(decided(&scores), vec![Some(1.0), None, None]);
    assert_eq!(scores[1].decided_by, "judge.unscored");
    assert_eq!(scores[1].details["rule"]["score"], 0.0);
    assert!(scores[1].details["judge"]["score"].is_null(), "{}", scores[1].details);
    // Without cascade the judge is asked about everything; a rule score at max_score stands.
    let all = RewardSet::new(
        vec![("rule".into(), Box::new(ExactRule)), ("judge".into(), Box::new(judge(Mode::Unscored)))],
        false,
        1.0,
    );
    assert_eq!(decided(&all.score(&batch()).unwrap()), vec![Some(1.0), None, None]);
    // Only `*.unscored` verdicts may be NaN.
    struct Nan;
    impl Reward for Nan {
        fn check_sources(&self, _: &[String]) -> longrl_core::Result<()> {
            Ok(())
        }
        fn score(&self, batch: &[RewardInput]) -> longrl_core::Result<Vec<RewardScore>> {
            Ok(batch
                .iter()
                .map(|_| RewardScore { score: f32::NAN, decided_by: "nan".into(), details: json!({}) })
                .collect())
        }
    }
    let bad = RewardSet::new(vec![("nan".into(), Box::new(Nan))], true, 1.0);
    assert!(bad.score(&batch()).unwrap_err().to_string().contains("non-finite"));
}

#[test]
fn failing_judge_never_stalls_scoring() {
    let judge = judge(Mode::Fail);
    let set = hybrid(judge);
    for _ in 0..3 {
        let scores = set.score(&batch()).unwrap();
        // The rule's decision stands where it matched; where it failed the response is unscored.
        assert_eq!(decided(&scores), vec![Some(1.0), None, None]);
        assert_eq!(scores[2].decided_by, "judge.failed");
        assert!(scores[2].details["judge"]["error"].as_str().unwrap().contains("connection refused"));
    }
    let metrics = set.take_metrics().unwrap();
    assert_eq!(metrics["judge_fallbacks"], 6.0);
    assert_eq!(metrics["reward_failed_calls"], 3.0);
    // The judge comes back: its verdicts count again.
    *judge.mode.lock().unwrap() = Mode::Answer;
    assert_eq!(set.score(&batch()).unwrap()[1].score, 1.0);
    assert_eq!(set.take_metrics().unwrap()["judge_fallbacks"], 0.0);
}

#[test]
fn wrong_score_count_is_a_fallback_for_a_later_reward_and_an_error_for_the_first() {
    let set = hybrid(judge(Mode::Short));
    let scores = set.score(&batch()).unwrap();
    assert!(scores[1].details["judge"]["error"].as_str().unwrap().contains("returned 1 scores for 2"));
    assert_eq!(decided(&scores), vec![Some(1.0), None, None]);
    let first = RewardSet::new(vec![("judge".into(), Box::new(judge(Mode::Short)))], true, 1.0);
    let err = first.score(&batch()).unwrap_err().to_string();
    assert!(err.contains("reward `judge`") && err.contains("2 scores for 3"), "{err}");
    let failing_first = RewardSet::new(vec![("judge".into(), Box::new(judge(Mode::Fail)))], true, 1.0);
    assert!(failing_first.score(&batch()).unwrap_err().to_string().contains("connection refused"));
}

#[test]
fn check_sources_names_the_reward_and_empty_sets_fail() {
    let set = hybrid(judge(Mode::Answer));
    set.check_sources(&["musique".into()]).unwrap();
    let err = set.check_sources(&["musique".into(), "unknown".into()]).unwrap_err().to_string();
    assert!(err.contains("reward `rule`") && err.contains("`unknown`"), "{err}");
    let empty = RewardSet::new(Vec::new(), true, 1.0);
    assert!(empty.score(&batch()).unwrap_err().to_string().contains("reward.components"));
    // A rule-only set reports no judge metrics.
    let rule_only = RewardSet::new(vec![("rule".into(), Box::new(ExactRule))], true, 1.0);
    rule_only.score(&batch()).unwrap();
    assert!(rule_only.take_metrics().unwrap().is_empty());
}

#[test]
fn cascade_threshold_is_max_score() {
    let judge = judge(Mode::Answer);
    // A partial score reaching max_score is good enough; below it the judge is asked.
    struct Half;
    impl Reward for Half {
        fn check_sources(&self, _: &[String]) -> longrl_core::Result<()> {
            Ok(())
        }
        fn score(&self, batch: &[RewardInput]) -> longrl_core::Result<Vec<RewardScore>> {
            Ok(batch
                .iter()
                .map(|_| RewardScore { score: 0.5, decided_by: "half".into(), details: json!({}) })
                .collect())
        }
    }
    let set = RewardSet::new(vec![("half".into(), Box::new(Half)), ("judge".into(), Box::new(judge))], true, 0.5);
    set.score(&batch()).unwrap();
    assert_eq!(judge.calls.load(Ordering::SeqCst), 0);
    let set = RewardSet::new(vec![("half".into(), Box::new(Half)), ("judge".into(), Box::new(judge))], true, 1.0);
    let scores = set.score(&batch()).unwrap();
    assert_eq!(scores.iter().map(|s| s.score).collect::<Vec<_>>(), vec![1.0, 1.0, 0.5]);
}
