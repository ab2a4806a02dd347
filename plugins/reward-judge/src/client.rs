//! One judge request: a bounded number of concurrent requests, each with a timeout, retried with
//! exponential backoff on 429 / 5xx / timeouts / connection errors, behind a circuit breaker.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use tokio::sync::Semaphore;

use crate::config::JudgeConfig;

/// The API key, kept out of every `Debug` and log line.
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: String) -> Self {
        ApiKey(key)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Counters shared by the requests of every batch; read and reset by `take_metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub calls: AtomicU64,
    pub requests: AtomicU64,
    pub yes: AtomicU64,
    pub no: AtomicU64,
    pub unparsed: AtomicU64,
    pub failures: AtomicU64,
    pub cache_hits: AtomicU64,
    pub unscored: AtomicU64,
    pub circuit_open: AtomicU64,
    pub no_answer: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn bump_by(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// `(metric name, value)` of every counter, each reset to 0.
    pub fn take(&self) -> Vec<(&'static str, u64)> {
        let take = |c: &AtomicU64| c.swap(0, Ordering::Relaxed);
        vec![
            ("judge_calls", take(&self.calls)),
            ("judge_requests", take(&self.requests)),
            ("judge_yes", take(&self.yes)),
            ("judge_no", take(&self.no)),
            ("judge_unparsed", take(&self.unparsed)),
            ("judge_failures", take(&self.failures)),
            ("judge_cache_hits", take(&self.cache_hits)),
            ("judge_unscored", take(&self.unscored)),
            ("judge_circuit_open", take(&self.circuit_open)),
            ("judge_no_answer", take(&self.no_answer)),
        ]
    }
}

/// A reply the endpoint gave.
#[derive(Debug, Clone)]
pub struct Reply {
    pub text: String,
    pub attempts: u32,
    pub latency: Duration,
}

/// Why an item got no reply.
#[derive(Debug, Clone)]
pub enum CallError {
    /// The circuit is open: the judge was not asked.
    CircuitOpen,
    /// Every attempt failed, or one failed in a way retrying cannot fix.
    Failed { attempts: u32, message: String },
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::CircuitOpen => f.write_str("circuit breaker open (recent requests failed)"),
            CallError::Failed { attempts, message } => write!(f, "failed after {attempts} attempt(s): {message}"),
        }
    }
}

struct AttemptError {
    retryable: bool,
    message: String,
    retry_after: Option<Duration>,
}

/// Consecutive failed items open the circuit for a cool-down; after it, one more failure re-opens it.
#[derive(Debug)]
struct Breaker {
    threshold: u32,
    cooldown: Duration,
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    fn allows(&mut self, now: Instant) -> bool {
        match self.open_until {
            Some(until) if now < until => false,
            Some(_) => {
                // Half-open: let requests through, but a single failure opens it again.
                self.open_until = None;
                self.consecutive_failures = self.threshold.saturating_sub(1);
                true
            }
            None => true,
        }
    }

    fn success(&mut self) {
        self.consecutive_failures = 0;
        self.open_until = None;
    }

    fn failure(&mut self, now: Instant) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.consecutive_failures >= self.threshold && self.open_until.is_none() {
            self.open_until = Some(now + self.cooldown);
        }
    }
}

pub struct JudgeClient {
    http: reqwest::Client,
    chat_url: String,
    model: String,
    max_tokens: u32,
    seed: Option<u64>,
    api_key: Option<ApiKey>,
    timeout: Duration,
    /// The whole item's budget, counted from the moment it holds a slot.
    item_deadline: Duration,
    max_retries: u32,
    backoff: JudgeConfig,
    slots: Semaphore,
    breaker: Mutex<Breaker>,
    pub counters: Counters,
}

impl JudgeClient {
    pub fn new(config: &JudgeConfig, api_key: Option<ApiKey>) -> longrl_core::Result<Self> {
        let timeout = config.timeout();
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .pool_max_idle_per_host(config.max_in_flight)
            .build()
            .map_err(|e| longrl_core::Error::msg(format!("reward/judge: cannot build the HTTP client: {e}")))?;
        Ok(JudgeClient {
            http,
            chat_url: config.chat_url(),
            model: config.model.clone(),
            max_tokens: config.max_tokens,
            seed: config.seed(),
            api_key,
            timeout,
            item_deadline: config.worst_case_per_item() + Duration::from_secs(1),
            max_retries: config.max_retries,
            backoff: config.clone(),
            slots: Semaphore::new(config.max_in_flight),
            breaker: Mutex::new(Breaker {
                threshold: config.circuit_breaker_failures,
                cooldown: config.cooldown(),
                consecutive_failures: 0,
                open_until: None,
            }),
            counters: Counters::default(),
        })
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Ask the judge once (with retries). Waits for one of the `max_in_flight` slots, holds it
    /// throughout, and only then starts the item's deadline: an item queued behind slow ones never
    /// expires in the queue.
    pub async fn ask(&self, system: &str, user: &str) -> Result<Reply, CallError> {
        let Ok(_slot) = self.slots.acquire().await else {
            return Err(CallError::Failed { attempts: 0, message: "client shut down".into() });
        };
        let attempts = AtomicU64::new(0);
        match tokio::time::timeout(self.item_deadline, self.attempts(system, user, &attempts)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(CallError::Failed {
                attempts: attempts.load(Ordering::Relaxed) as u32,
                message: format!(
                    "item deadline ({:.1} s after it got a slot) passed",
                    self.item_deadline.as_secs_f64()
                ),
            }),
        }
    }

    /// The attempts of one item (retries with backoff), counted in `attempts` as they start.
    async fn attempts(&self, system: &str, user: &str, attempts: &AtomicU64) -> Result<Reply, CallError> {
        let body = self.request_body(system, user);
        let started = Instant::now();
        loop {
            if !self.breaker().allows(Instant::now()) {
                return Err(CallError::CircuitOpen);
            }
            let attempt = attempts.fetch_add(1, Ordering::Relaxed) as u32 + 1;
            Counters::bump(&self.counters.requests);
            // reqwest's timeout covers connect to end of body; the outer one is a second fence.
            let outcome = match tokio::time::timeout(self.timeout + Duration::from_secs(1), self.attempt(&body)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(AttemptError { retryable: true, message: "timed out".into(), retry_after: None }),
            };
            match outcome {
                Ok(text) => {
                    self.breaker().success();
                    return Ok(Reply { text, attempts: attempt, latency: started.elapsed() });
                }
                Err(error) => {
                    Counters::bump(&self.counters.failures);
                    if !error.retryable || attempt > self.max_retries {
                        self.breaker().failure(Instant::now());
                        return Err(CallError::Failed { attempts: attempt, message: error.message });
                    }
                    let backoff = self.backoff.backoff(attempt - 1);
                    let cap = Duration::from_millis(self.backoff.backoff_max_ms);
                    let delay = error.retry_after.map_or(backoff, |after| after.min(cap).max(backoff));
                    tokio::time::sleep(jitter(delay)).await;
                }
            }
        }
    }

    fn request_body(&self, system: &str, user: &str) -> serde_json::Value {
        let mut body = serde_json::json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "temperature": 0.0,
            "max_tokens": self.max_tokens,
            "n": 1,
            "stream": false,
        });
        if let Some(seed) = self.seed {
            body["seed"] = seed.into();
        }
        body
    }

    async fn attempt(&self, body: &serde_json::Value) -> Result<String, AttemptError> {
        let mut request = self.http.post(&self.chat_url).json(body);
        if let Some(ApiKey(key)) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let transport = |e: reqwest::Error| AttemptError {
            retryable: true,
            message: describe_transport_error(&e),
            retry_after: None,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = response.text().await.map_err(transport)?;
        if !status.is_success() {
            let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            return Err(AttemptError {
                retryable,
                message: format!("HTTP {status}: {}", snippet(&text)),
                retry_after: if retryable { retry_after } else { None },
            });
        }
        parse_reply(&text).map_err(|message| AttemptError { retryable: false, message, retry_after: None })
    }
}

/// The first choice's message content of a chat completion (`null` content reads as empty).
fn parse_reply(text: &str) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("reply is not JSON ({e}): {}", snippet(text)))?;
    let message = value
        .pointer("/choices/0/message")
        .ok_or_else(|| format!("reply has no choices[0].message: {}", snippet(text)))?;
    match message.get("content") {
        Some(serde_json::Value::String(content)) => Ok(content.clone()),
        Some(serde_json::Value::Null) | None => Ok(String::new()),
        Some(other) => Err(format!("choices[0].message.content is not a string: {}", snippet(&other.to_string()))),
    }
}

fn describe_transport_error(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "transport error"
    };
    // The URL in reqwest's message is the endpoint (never the key, which travels in a header).
    let mut message = format!("{kind}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        message.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    message
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}

fn snippet(text: &str) -> String {
    const MAX: usize = 300;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Spread retries of requests that failed together over [75%, 100%] of the delay.
fn jitter(delay: Duration) -> Duration {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let fraction = 0.75 + 0.25 * f64::from(nanos % 1000) / 1000.0;
    delay.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_threshold_and_half_opens_after_cooldown() {
        let start = Instant::now();
        let mut breaker =
            Breaker { threshold: 2, cooldown: Duration::from_secs(10), consecutive_failures: 0, open_until: None };
        assert!(breaker.allows(start));
        breaker.failure(start);
        assert!(breaker.allows(start));
        breaker.failure(start);
        assert!(!breaker.allows(start + Duration::from_secs(9)));
        // After the cool-down one failure is enough to open it again.
        assert!(breaker.allows(start + Duration::from_secs(11)));
        breaker.failure(start + Duration::from_secs(11));
        assert!(!breaker.allows(start + Duration::from_secs(12)));
        assert!(breaker.allows(start + Duration::from_secs(22)));
        breaker.success();
        breaker.failure(start + Duration::from_secs(22));
        assert!(breaker.allows(start + Duration::from_secs(23)));
    }

    #[test]
    fn replies_are_read_from_the_first_choice() {
        let ok = r#"{"choices":[{"message":{"role":"assistant","content":"Same. [[YES]]"}}]}"#;
        assert_eq!(parse_reply(ok).unwrap(), "Same. [[YES]]");
        assert_eq!(parse_reply(r#"{"choices":[{"message":{"content":null}}]}"#).unwrap(), "");
        assert!(parse_reply("<html>").unwrap_err().contains("not JSON"));
        assert!(parse_reply(r#"{"choices":[]}"#).unwrap_err().contains("choices[0]"));
    }

    #[test]
    fn api_key_is_never_printed() {
        let key = ApiKey::new("sk-secret".into());
        assert!(!format!("{key:?}").contains("secret"));
    }

    #[test]
    fn snippets_cut_on_char_boundaries() {
        let long = "é".repeat(400);
        assert!(snippet(&long).len() <= 304);
    }
}
