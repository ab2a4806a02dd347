//! The LLM-as-judge reward of QwenLong-L1: asks an OpenAI-compatible chat endpoint whether the
//! response's final answer is equivalent to the gold answer, and scores 1 on a yes.
//!
//! By default it is called as the official code calls it (`protocol = "train"`: the RL reward;
//! `"eval"`: the evaluation scripts): the prediction is what the official rule extracts (after a
//! case-sensitive "the answer is"; a response without it is not sent), the verdict is yes when the
//! reply contains "YES". `lenient` and `verdict_rule` relax or tighten that.
//!
//! Requests run concurrently on a tokio runtime the component owns; every wait is bounded (request
//! timeout, retries, circuit breaker, a per-item deadline that starts when the item holds a
//! concurrency slot, a deadline for the whole batch), so a dead judge never stalls a run.
//!
//! Every score says who decided it in `details.provenance`:
//! - `"judge"`: the judge replied (`decided_by` = `judge.yes`, `judge.no` or `judge.unparsed`;
//!   score 1 or 0; `details.cached` when the verdict came from the LRU cache);
//! - `"rule"`: the judge was not asked because the response states no answer the official code
//!   would send (`judge.no_answer`, score 0);
//! - `"error"`: the judge could not be reached after its retries (or its circuit is open, or a
//!   deadline passed): the response is **unscored**: `decided_by = "judge.unscored"`, score NaN
//!   (never a made-up 0), `details.unscored = true` and `details.error` saying why. Counted in the
//!   `judge_unscored` metric. The host leaves such responses out of summaries and training.

mod audit;
mod client;
mod config;
mod prompt;

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use longrl_core::abi::Component;
use longrl_core::api::{ComponentContext, ComponentInfo, ComponentKind, Reward, RewardInput, RewardScore};
use longrl_core::sdk::{config_keys, parse_config};
use longrl_core::{Error, Result};
use lru::LruCache;

use audit::{Audit, AuditRecord};
use client::{ApiKey, CallError, Counters, JudgeClient, Reply};
pub use config::{JudgeConfig, Protocol, VerdictRule};
pub use prompt::{
    DEFAULT_SYSTEM_PROMPT, DEFAULT_USER_TEMPLATE, Extraction, Verdict, extract_answer, extract_problem, parse_verdict,
};

const COMPONENT: &str = "reward/judge";
/// `decided_by` of a response the judge could not score.
pub const UNSCORED: &str = "judge.unscored";

/// What one (problem, prediction, gold) asks the judge.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Question {
    problem: String,
    prediction: String,
    gold: String,
}

#[derive(Debug, Clone)]
struct CachedVerdict {
    verdict: Verdict,
    rationale: String,
}

/// Unscored items since the judge last answered: one warning when a burst starts, one line when it ends.
#[derive(Debug, Default)]
struct Burst {
    unscored: u64,
}

pub struct JudgeReward {
    config: JudgeConfig,
    runtime: Option<tokio::runtime::Runtime>,
    client: Arc<JudgeClient>,
    /// Least-recently-used verdicts; `None` with `cache_entries = 0`.
    cache: Mutex<Option<LruCache<Question, CachedVerdict>>>,
    audit: Mutex<Option<Audit>>,
    burst: Mutex<Burst>,
}

impl Component for JudgeReward {
    fn info() -> ComponentInfo {
        ComponentInfo {
            kind: ComponentKind::Reward,
            name: "judge".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "LLM-as-judge (QwenLong-L1): asks any OpenAI-compatible /v1/chat/completions endpoint \
                          whether the final answer equals the gold one; 1 on [[YES]]. Concurrent requests with \
                          timeouts, retries, a circuit breaker, an LRU verdict cache and a JSONL audit. Called as \
                          the official code calls it by default. When the judge is unreachable the item is \
                          unscored (`judge.unscored`, score NaN, provenance `error`), never a made-up 0."
                .into(),
            config: config_keys::<JudgeConfig>(),
        }
    }

    fn create(config: &serde_json::Value, context: &ComponentContext) -> Result<Self> {
        let config: JudgeConfig = parse_config(COMPONENT, config)?;
        config.validate()?;
        let api_key = read_api_key(&config.api_key_env)?;
        let audit_path = match (&config.audit_file, &context.run_dir) {
            (Some(path), Some(run_dir)) if path.is_relative() => Some(run_dir.join(path)),
            (Some(path), _) => Some(path.clone()),
            (None, Some(run_dir)) => Some(run_dir.join("judge_audit.jsonl")),
            (None, None) => None,
        };
        let audit = audit_path.map(|path| Audit::open(&path)).transpose()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("longrl-judge")
            .enable_all()
            .build()
            .map_err(|e| Error::msg(format!("{COMPONENT}: cannot start its async runtime: {e}")))?;
        // reqwest's client must be built inside the runtime that drives it.
        let client = {
            let _guard = runtime.enter();
            JudgeClient::new(&config, api_key)?
        };
        tracing::info!(
            url = %config.chat_url(),
            model = %config.model,
            max_in_flight = config.max_in_flight,
            audit = %audit.as_ref().map_or("none".to_string(), |a| a.path().display().to_string()),
            "judge reward ready"
        );
        let cache = NonZeroUsize::new(config.cache_entries).map(LruCache::new);
        Ok(JudgeReward {
            config,
            runtime: Some(runtime),
            client: Arc::new(client),
            cache: Mutex::new(cache),
            audit: Mutex::new(audit),
            burst: Mutex::new(Burst::default()),
        })
    }
}

fn read_api_key(env_name: &str) -> Result<Option<ApiKey>> {
    let env_name = env_name.trim();
    if env_name.is_empty() {
        return Ok(None);
    }
    match std::env::var(env_name) {
        Ok(key) if !key.trim().is_empty() => Ok(Some(ApiKey::new(key.trim().to_string()))),
        _ => Err(Error::config(
            "api_key_env",
            format!("the environment variable `{env_name}` named for the judge's API key is unset or empty"),
        )),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for JudgeReward {
    fn drop(&mut self) {
        // Never block (or panic) in drop, whatever context the host drops us in.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Reward for JudgeReward {
    fn check_sources(&self, _sources: &[String]) -> Result<()> {
        Ok(()) // the judge reads any data source the same way
    }

    fn score(&self, batch: &[RewardInput]) -> Result<Vec<RewardScore>> {
        let mut scores: Vec<Option<RewardScore>> = vec![None; batch.len()];
        let mut pending: Vec<(Question, Vec<usize>)> = Vec::new();
        let mut pending_index: HashMap<Question, usize> = HashMap::new();
        let mut problem_sources = vec!["missing"; batch.len()];
        let how = Extraction {
            eval: self.config.protocol == Protocol::Eval,
            require_think: self.config.require_think(),
            lenient: self.config.lenient,
        };
        for (i, input) in batch.iter().enumerate() {
            let (problem, source) = extract_problem(&input.prompt, &input.question);
            problem_sources[i] = source.as_str();
            let prediction = prompt::extract_prediction(&input.response, how);
            let Some(prediction) = prediction.filter(|p| !p.is_empty()) else {
                Counters::bump(&self.client.counters.no_answer);
                scores[i] = Some(RewardScore {
                    score: 0.0,
                    decided_by: "judge.no_answer".into(),
                    details: serde_json::json!({
                        "provenance": "rule",
                        "reason": "no final answer to send (no </think>, or no \"the answer is\")",
                    }),
                });
                continue;
            };
            let question = Question { problem, prediction, gold: extract_answer(&input.ground_truth) };
            let cached = lock(&self.cache).as_mut().and_then(|cache| cache.get(&question).cloned());
            if let Some(cached) = cached {
                Counters::bump(&self.client.counters.cache_hits);
                self.audit(&question, &input.data_source, AuditOutcome::Cached(&cached));
                scores[i] = Some(verdict_score(&question, source.as_str(), cached.verdict, &cached.rationale, true, 0));
                continue;
            }
            match pending_index.get(&question) {
                Some(&slot) => {
                    // The same question twice in one batch is asked once.
                    Counters::bump(&self.client.counters.cache_hits);
                    pending[slot].1.push(i);
                }
                None => {
                    pending_index.insert(question.clone(), pending.len());
                    pending.push((question, vec![i]));
                }
            }
        }
        if !pending.is_empty() {
            let outcomes = self.ask_all(&pending);
            let mut answered = false;
            let mut first_error = None;
            let mut unscored = 0u64;
            for ((question, indices), outcome) in pending.iter().zip(outcomes) {
                let data_source = &batch[indices[0]].data_source;
                match outcome {
                    Ok(reply) => {
                        answered = true;
                        let verdict = parse_verdict(&reply.text, self.config.verdict_rule);
                        let counter = match verdict {
                            Verdict::Yes => &self.client.counters.yes,
                            Verdict::No => &self.client.counters.no,
                            Verdict::Unparsed => &self.client.counters.unparsed,
                        };
                        Counters::bump(counter);
                        self.audit(question, data_source, AuditOutcome::Replied { verdict, reply: &reply });
                        self.remember(question, verdict, &reply.text);
                        for &i in indices {
                            scores[i] = Some(verdict_score(
                                question,
                                problem_sources[i],
                                verdict,
                                &reply.text,
                                false,
                                reply.attempts,
                            ));
                        }
                    }
                    Err(error) => {
                        if matches!(error, CallError::CircuitOpen) {
                            Counters::bump(&self.client.counters.circuit_open);
                        }
                        self.audit(question, data_source, AuditOutcome::Unavailable(&error));
                        for &i in indices {
                            Counters::bump(&self.client.counters.unscored);
                            unscored += 1;
                            scores[i] = Some(unscored_score(question, problem_sources[i], &error));
                        }
                        first_error.get_or_insert(error);
                    }
                }
            }
            self.log_burst(answered, first_error, unscored);
        }
        if let Some(audit) = lock(&self.audit).as_mut() {
            audit.flush();
        }
        scores
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.ok_or_else(|| Error::msg(format!("{COMPONENT}: internal: input {i} was never scored"))))
            .collect()
    }

    fn take_metrics(&self) -> Result<BTreeMap<String, f64>> {
        Ok(self.client.counters.take().into_iter().map(|(name, value)| (name.to_string(), value as f64)).collect())
    }
}

enum AuditOutcome<'a> {
    Replied { verdict: Verdict, reply: &'a Reply },
    Cached(&'a CachedVerdict),
    Unavailable(&'a CallError),
}

impl JudgeReward {
    /// Ask every question concurrently; one outcome per question, in order. Each item's deadline
    /// runs from when it holds a slot (in the client); the batch waits at most for every round of
    /// slots to use its deadline, and questions still unanswered then are reported failed.
    fn ask_all(&self, pending: &[(Question, Vec<usize>)]) -> Vec<std::result::Result<Reply, CallError>> {
        Counters::bump_by(&self.client.counters.calls, pending.len() as u64);
        let mut outcomes: Vec<Option<std::result::Result<Reply, CallError>>> = vec![None; pending.len()];
        let Some(runtime) = &self.runtime else {
            return outcomes.into_iter().map(|_| Err(deadline_error("runtime stopped"))).collect();
        };
        let (sender, receiver) = std::sync::mpsc::channel();
        let system = Arc::new(self.config.system_prompt.clone());
        for (slot, (question, _)) in pending.iter().enumerate() {
            let user =
                prompt::render(&self.config.user_template, &question.problem, &question.prediction, &question.gold);
            let (client, system, sender) = (self.client.clone(), system.clone(), sender.clone());
            runtime.spawn(async move {
                let _ = sender.send((slot, client.ask(&system, &user).await));
            });
        }
        drop(sender);
        // Slots are shared, so items queue behind one another: the batch needs at most this long.
        let per_item = self.config.worst_case_per_item() + Duration::from_secs(1);
        let rounds = pending.len().div_ceil(self.config.max_in_flight) as u32;
        let deadline = Instant::now() + per_item * rounds + Duration::from_secs(5);
        let mut received = 0;
        while received < pending.len() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(remaining) {
                Ok((slot, outcome)) => {
                    outcomes[slot] = Some(outcome);
                    received += 1;
                }
                Err(_) => break, // deadline passed, or every task ended
            }
        }
        outcomes.into_iter().map(|o| o.unwrap_or_else(|| Err(deadline_error("batch deadline passed")))).collect()
    }

    /// Keep a verdict; a full cache evicts its least recently used one.
    fn remember(&self, question: &Question, verdict: Verdict, rationale: &str) {
        if let Some(cache) = lock(&self.cache).as_mut() {
            cache.put(question.clone(), CachedVerdict { verdict, rationale: rationale.to_string() });
        }
    }

    fn audit(&self, question: &Question, data_source: &str, outcome: AuditOutcome<'_>) {
        let mut audit = lock(&self.audit);
        let Some(audit) = audit.as_mut() else { return };
        let (verdict, rationale, error, cached, attempts, latency_ms) = match outcome {
            AuditOutcome::Replied { verdict, reply } => (
                verdict.as_str(),
                Some(reply.text.as_str()),
                None,
                false,
                reply.attempts,
                Some(reply.latency.as_secs_f64() * 1e3),
            ),
            AuditOutcome::Cached(cached) => {
                (cached.verdict.as_str(), Some(cached.rationale.as_str()), None, true, 0, None)
            }
            AuditOutcome::Unavailable(error) => {
                let attempts = match error {
                    CallError::Failed { attempts, .. } => *attempts,
                    CallError::CircuitOpen => 0,
                };
                ("unscored", None, Some(error.to_string()), false, attempts, None)
            }
        };
        audit.write(&AuditRecord {
            time: audit::unix_time(),
            model: &self.config.model,
            data_source,
            verdict,
            score: if verdict == "yes" { 1.0 } else { 0.0 },
            problem: &question.problem,
            prediction: &question.prediction,
            gold: &question.gold,
            rationale,
            error: error.as_deref(),
            cached,
            attempts,
            latency_ms,
        });
    }

    /// One warning when unscored items start, one line when the judge answers again: never one per item.
    fn log_burst(&self, answered: bool, first_error: Option<CallError>, unscored: u64) {
        let mut burst = lock(&self.burst);
        match first_error {
            Some(error) => {
                if burst.unscored == 0 {
                    tracing::warn!(
                        url = %self.config.chat_url(),
                        "judge unavailable ({error}); affected responses are unscored (`judge.unscored`, counted \
                         in judge_unscored; logged once until the judge answers again)"
                    );
                }
                burst.unscored += unscored;
            }
            None if answered && burst.unscored > 0 => {
                tracing::info!(unscored = burst.unscored, "judge answering again");
                burst.unscored = 0;
            }
            None => {}
        }
    }
}

fn deadline_error(what: &str) -> CallError {
    CallError::Failed { attempts: 0, message: what.to_string() }
}

/// The verdict of a response the judge could not score: NaN, never a made-up 0.
fn unscored_score(question: &Question, problem_source: &str, error: &CallError) -> RewardScore {
    RewardScore {
        score: f32::NAN,
        decided_by: UNSCORED.into(),
        details: serde_json::json!({
            "provenance": "error",
            "unscored": true,
            "problem_source": problem_source,
            "prediction": question.prediction,
            "gold": question.gold,
            "error": error.to_string(),
        }),
    }
}

fn verdict_score(
    question: &Question,
    problem_source: &str,
    verdict: Verdict,
    rationale: &str,
    cached: bool,
    attempts: u32,
) -> RewardScore {
    const RATIONALE_CHARS: usize = 600;
    let rationale: String = rationale.chars().take(RATIONALE_CHARS).collect();
    RewardScore {
        score: if verdict == Verdict::Yes { 1.0 } else { 0.0 },
        decided_by: format!("judge.{}", verdict.as_str()),
        details: serde_json::json!({
            "provenance": "judge",
            "problem_source": problem_source,
            "prediction": question.prediction,
            "gold": question.gold,
            "verdict": verdict.as_str(),
            "rationale": rationale,
            "cached": cached,
            "attempts": attempts,
        }),
    }
}

longrl_core::export_plugin!(reward: [JudgeReward]);

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(config: serde_json::Value) -> Result<JudgeReward> {
        JudgeReward::create(&config, &ComponentContext::default())
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = judge(serde_json::json!({})).err().unwrap().to_string();
        assert!(err.contains("model"), "{err}");
        let err = judge(serde_json::json!({"model": "m", "urll": "x"})).err().unwrap().to_string();
        assert!(err.contains("urll"), "{err}");
        let err = judge(serde_json::json!({"model": "m", "api_key_env": "LONGRL_TEST_SURELY_UNSET_KEY"}))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("api_key_env") && err.contains("LONGRL_TEST_SURELY_UNSET_KEY"), "{err}");
    }

    #[test]
    fn responses_without_an_answer_are_not_sent() {
        // Port 9 (discard) on loopback: any request would fail and count as a fallback.
        let judge = judge(serde_json::json!({"model": "m", "url": "http://127.0.0.1:9/v1"})).unwrap();
        let inputs = [
            RewardInput {
                response: "never closed <think> the answer is 4".into(),
                ground_truth: "4".into(),
                ..Default::default()
            },
            RewardInput { response: "<think>x</think>  ".into(), ground_truth: "4".into(), ..Default::default() },
        ];
        let scores = judge.score(&inputs).unwrap();
        assert!(scores.iter().all(|s| s.score == 0.0 && s.decided_by == "judge.no_answer"));
        assert!(scores.iter().all(|s| s.details["provenance"] == "rule"));
        let metrics = judge.take_metrics().unwrap();
        assert_eq!(metrics["judge_no_answer"], 2.0);
        assert_eq!(metrics["judge_calls"], 0.0);
        assert_eq!(judge.take_metrics().unwrap()["judge_no_answer"], 0.0, "metrics reset when taken");
    }

    #[test]
    fn an_unreachable_judge_leaves_the_item_unscored() {
        let judge = judge(serde_json::json!({"model": "m", "url": "http://127.0.0.1:9/v1", "max_retries": 0})).unwrap();
        let input = RewardInput {
            response: "<think>x</think>the answer is 4".into(),
            ground_truth: "4".into(),
            ..Default::default()
        };
        let score = judge.score(&[input]).unwrap().remove(0);
        assert!(score.score.is_nan(), "never a made-up 0: {score:?}");
        assert_eq!(score.decided_by, UNSCORED);
        assert_eq!(score.details["provenance"], "error");
        assert_eq!(score.details["unscored"], true);
        assert!(score.details["error"].as_str().unwrap().contains("attempt"), "{}", score.details);
        assert_eq!(judge.take_metrics().unwrap()["judge_unscored"], 1.0);
    }

    #[test]
    fn audit_defaults_to_the_run_dir() {
        let dir = tempfile::tempdir().unwrap();
        let context = ComponentContext { run_dir: Some(dir.path().to_path_buf()), ..Default::default() };
        let judge = JudgeReward::create(&serde_json::json!({"model": "m"}), &context).unwrap();
        assert_eq!(lock(&judge.audit).as_ref().unwrap().path(), dir.path().join("judge_audit.jsonl"));
        let config = serde_json::json!({"model": "m", "audit_file": "sub/audit.jsonl"});
        let judge = JudgeReward::create(&config, &context).unwrap();
        assert_eq!(lock(&judge.audit).as_ref().unwrap().path(), dir.path().join("sub/audit.jsonl"));
    }
}
