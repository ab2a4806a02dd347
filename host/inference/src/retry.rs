//! Retries with exponential backoff, and which failures deserve one.

use std::time::Duration;

/// Why one HTTP attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptError {
    /// 5xx, 408, 429, timeouts, connection errors and aborted generations are worth retrying; a 4xx
    /// or an answer that does not follow the server's schema is not.
    pub retryable: bool,
    pub message: String,
}

impl AttemptError {
    pub fn retryable(message: impl Into<String>) -> Self {
        AttemptError { retryable: true, message: message.into() }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        AttemptError { retryable: false, message: message.into() }
    }

    /// A failed HTTP status with the body's first bytes.
    pub fn status(status: reqwest::StatusCode, body: &str) -> Self {
        let retryable = status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT;
        AttemptError { retryable, message: format!("HTTP {status}: {}", snippet(body)) }
    }

    /// A transport failure (connect, timeout, reset): always retryable.
    pub fn transport(error: &reqwest::Error) -> Self {
        let kind = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "cannot connect"
        } else {
            "transport error"
        };
        let mut message = format!("{kind}: {error}");
        let mut cause = std::error::Error::source(error);
        while let Some(inner) = cause {
            message.push_str(&format!(": {inner}"));
            cause = inner.source();
        }
        AttemptError::retryable(message)
    }
}

/// How often and how patiently a request is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl RetryPolicy {
    /// Sleep before retry number `retry` (0-based): the initial backoff doubled per retry, capped.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(30));
        self.backoff_initial.saturating_mul(factor).min(self.backoff_max)
    }

    /// Run `attempt` until it succeeds, fails for good, or the retries are spent. The error names
    /// how many attempts were made and the last failure.
    pub async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<T, Exhausted>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) if error.retryable && attempts <= self.max_retries => {
                    let delay = self.backoff(attempts - 1);
                    tracing::warn!(
                        attempt = attempts,
                        delay_ms = delay.as_millis() as u64,
                        "{}; retrying",
                        error.message
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(error) => return Err(Exhausted { attempts, last: error }),
            }
        }
    }
}

/// Every attempt failed (or one failed for good).
#[derive(Debug, Clone, PartialEq)]
pub struct Exhausted {
    pub attempts: u32,
    pub last: AttemptError,
}

impl std::fmt::Display for Exhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let noun = if self.attempts == 1 { "attempt" } else { "attempts" };
        write!(f, "failed after {} {noun}: {}", self.attempts, self.last.message)
    }
}

/// The first bytes of a body, for error messages.
pub fn snippet(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_retries: 3,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
    };

    #[test]
    fn backoff_doubles_and_is_capped() {
        let delays: Vec<u128> = (0..5).map(|r| POLICY.backoff(r).as_millis()).collect();
        assert_eq!(delays, vec![10, 20, 40, 50, 50]);
        assert_eq!(POLICY.backoff(u32::MAX), Duration::from_millis(50));
    }

    #[test]
    fn statuses_are_classified() {
        use reqwest::StatusCode as S;
        for (status, retryable) in [
            (S::INTERNAL_SERVER_ERROR, true),
            (S::SERVICE_UNAVAILABLE, true),
            (S::TOO_MANY_REQUESTS, true),
            (S::REQUEST_TIMEOUT, true),
            (S::BAD_REQUEST, false),
            (S::NOT_FOUND, false),
        ] {
            assert_eq!(AttemptError::status(status, "x").retryable, retryable, "{status}");
        }
        assert!(AttemptError::status(S::BAD_REQUEST, "bad top_k").message.contains("bad top_k"));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_then_stops() {
        let calls = AtomicU32::new(0);
        let value = POLICY
            .run(|| async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n < 2 { Err(AttemptError::retryable("503")) } else { Ok(n) }
            })
            .await
            .unwrap();
        assert_eq!((value, calls.load(Ordering::SeqCst)), (2, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_retries_and_at_once_on_fatal() {
        let calls = AtomicU32::new(0);
        let error = POLICY
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(AttemptError::retryable("HTTP 500"))
            })
            .await
            .unwrap_err();
        assert_eq!((error.attempts, calls.load(Ordering::SeqCst)), (4, 4));
        assert_eq!(error.to_string(), "failed after 4 attempts: HTTP 500");

        calls.store(0, Ordering::SeqCst);
        let error = POLICY
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(AttemptError::fatal("HTTP 400"))
            })
            .await
            .unwrap_err();
        assert_eq!((error.attempts, calls.load(Ordering::SeqCst)), (1, 1));
    }

    #[test]
    fn snippets_cut_long_bodies_on_char_boundaries() {
        assert_eq!(snippet("short"), "short");
        let long = "é".repeat(400);
        let cut = snippet(&long);
        assert_eq!(cut.chars().count(), 301);
    }
}
