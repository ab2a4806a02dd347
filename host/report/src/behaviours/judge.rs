//! The LLM analyser: any OpenAI-compatible `/chat/completions` endpoint (vLLM, SGLang, `longrl
//! serve`, a hosted API) reads the document and the response and answers with the four counts in a
//! strict format. The reply is parsed, never evaluated: a reply that breaks the format, a failed
//! request or a timeout leaves that response unscored (an `Err` with the reason), never 0.
//!
//! The prompt ([`SYSTEM_PROMPT`], [`user_message`]) defines each behaviour as the paper does and asks
//! for exactly four lines at the end of the reply:
//!
//! ```text
//! GROUNDING: <count>
//! SUBGOALS: <count>
//! BACKTRACKING: <count>
//! VERIFICATION: <count>
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::{Analyser, Analysis, Behaviour, Counts, Item, reasoning_part};

pub const SYSTEM_PROMPT: &str = "You analyse how a model reasons about a long document. \
Count how often each of four behaviours occurs in the model's reasoning:\n\
- GROUNDING: the reasoning points to or quotes a specific part of the document to support a step.\n\
- SUBGOALS: the reasoning breaks the question into smaller steps or sub-questions and states them.\n\
- BACKTRACKING: the reasoning notices a mistake or a dead end and goes back to try another way.\n\
- VERIFICATION: the reasoning checks an answer it reached against the document or the question.\n\
Count occurrences, not sentences: a behaviour that never occurs counts 0. \
You may explain briefly first. End your reply with exactly these four lines, each with a whole number:\n\
GROUNDING: <count>\nSUBGOALS: <count>\nBACKTRACKING: <count>\nVERIFICATION: <count>";

/// The user turn: the (possibly shortened) document and the reasoning to analyse.
pub fn user_message(prompt: &str, reasoning: &str, max_document_chars: usize) -> String {
    format!("Document and question:\n{}\n\nModel reasoning:\n{reasoning}\n", shorten_middle(prompt, max_document_chars))
}

/// Keep the start and the end of `text` within `max_chars` characters (the middle is what the
/// recipe's truncation drops too), marking the cut.
fn shorten_middle(text: &str, max_chars: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= max_chars {
        return text.to_string();
    }
    let head = max_chars / 2;
    let tail = max_chars - head;
    let mut out: String = chars[..head].iter().collect();
    out.push_str("\n[... middle of the document omitted ...]\n");
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// Parse the four counts from a reply: each of the four lines exactly once (`NAME: <whole number>`,
/// case-sensitive name, spaces around the number allowed), anything else on other lines ignored.
pub fn parse_counts(reply: &str) -> Result<Counts, String> {
    let mut counts = Counts::default();
    let mut seen = [false; 4];
    for line in reply.lines() {
        let line = line.trim();
        for (i, behaviour) in Behaviour::ALL.into_iter().enumerate() {
            let name = behaviour.as_str().to_uppercase();
            let Some(rest) = line.strip_prefix(name.as_str()).and_then(|r| r.strip_prefix(':')) else { continue };
            let value: u32 =
                rest.trim().parse().map_err(|_| format!("`{line}`: the count of {name} is not a whole number"))?;
            if seen[i] {
                return Err(format!("the reply gives {name} twice"));
            }
            seen[i] = true;
            counts.add(behaviour, value);
        }
    }
    let missing: Vec<String> =
        Behaviour::ALL.into_iter().zip(seen).filter(|(_, s)| !s).map(|(b, _)| b.as_str().to_uppercase()).collect();
    if !missing.is_empty() {
        return Err(format!("the reply lacks the line(s) {}", missing.join(", ")));
    }
    Ok(counts)
}

/// Where and how to ask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeSettings {
    /// Base URL of the OpenAI-compatible API, e.g. `http://127.0.0.1:8000/v1`.
    pub url: String,
    pub model: String,
    /// Environment variable holding the API key (none sent when unset or empty).
    pub api_key_env: String,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    /// Seconds one request may take, counted from when it gets its slot.
    pub timeout_s: f64,
    /// Further attempts after a failed request (5xx, 429, timeout, connection error).
    pub retries: u32,
    pub max_tokens: u32,
    /// Characters of the prompt shown to the judge (start and end kept).
    pub max_document_chars: usize,
}

impl Default for JudgeSettings {
    fn default() -> Self {
        JudgeSettings {
            url: String::new(),
            model: String::new(),
            api_key_env: "OPENAI_API_KEY".into(),
            max_in_flight: 8,
            timeout_s: 120.0,
            retries: 2,
            max_tokens: 512,
            max_document_chars: 20_000,
        }
    }
}

pub struct JudgeAnalyser {
    settings: JudgeSettings,
    client: reqwest::Client,
    api_key: Option<String>,
}

impl JudgeAnalyser {
    pub fn new(settings: JudgeSettings) -> anyhow::Result<Self> {
        if settings.url.is_empty() || settings.model.is_empty() {
            anyhow::bail!("the behaviour judge needs `url` and `model`");
        }
        if settings.max_in_flight == 0 || !(settings.timeout_s > 0.0) {
            anyhow::bail!("the behaviour judge needs `max_in_flight` >= 1 and `timeout_s` > 0");
        }
        let api_key = std::env::var(&settings.api_key_env).ok().filter(|k| !k.is_empty());
        Ok(JudgeAnalyser { settings, client: reqwest::Client::new(), api_key })
    }

    async fn ask(&self, item_prompt: &str, response: &str) -> Result<Counts, String> {
        let url = format!("{}/chat/completions", self.settings.url.trim_end_matches('/'));
        let (_, reasoning) = reasoning_part(response);
        let body = serde_json::json!({
            "model": self.settings.model,
            "temperature": 0.0,
            "max_tokens": self.settings.max_tokens,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user_message(item_prompt, reasoning, self.settings.max_document_chars)},
            ],
        });
        let timeout = Duration::from_secs_f64(self.settings.timeout_s);
        let mut last_error = String::new();
        for attempt in 0..=self.settings.retries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt.min(6))).await;
            }
            let mut request = self.client.post(&url).json(&body).timeout(timeout);
            if let Some(key) = &self.api_key {
                request = request.bearer_auth(key);
            }
            let reply = match request.send().await {
                Ok(reply) => reply,
                Err(e) => {
                    last_error = format!("{url}: {e}");
                    continue;
                }
            };
            let status = reply.status();
            if status.is_server_error() || status.as_u16() == 429 {
                last_error = format!("{url}: HTTP {status}");
                continue;
            }
            if !status.is_success() {
                return Err(format!("{url}: HTTP {status}"));
            }
            let json: serde_json::Value = match reply.json().await {
                Ok(json) => json,
                Err(e) => return Err(format!("{url}: the reply is not JSON: {e}")),
            };
            let text = json["choices"][0]["message"]["content"]
                .as_str()
                .ok_or_else(|| format!("{url}: the reply has no choices[0].message.content"))?;
            return parse_counts(text);
        }
        Err(format!("{last_error} (after {} attempts)", self.settings.retries + 1))
    }
}

impl Analyser for JudgeAnalyser {
    fn name(&self) -> &str {
        "judge"
    }

    fn analyse(&self, items: &[Item<'_>]) -> Vec<Result<Analysis, String>> {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => return items.iter().map(|_| Err(format!("cannot start the judge's runtime: {e}"))).collect(),
        };
        let slots = Arc::new(Semaphore::new(self.settings.max_in_flight));
        runtime.block_on(async {
            let tasks = items.iter().map(|item| {
                let slots = slots.clone();
                async move {
                    // The timeout starts when the request has its slot, so queued items never expire.
                    let _slot = slots.acquire().await.map_err(|e| e.to_string())?;
                    self.ask(item.prompt, item.response).await
                }
            });
            let results = futures_util::future::join_all(tasks).await;
            results.into_iter().map(|r| r.map(|counts| Analysis { counts, cues: Vec::new() })).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_format_parses() {
        let reply = "The model quotes twice.\nGROUNDING: 2\nSUBGOALS: 0\nBACKTRACKING: 1\nVERIFICATION: 3\n";
        assert_eq!(
            parse_counts(reply).unwrap(),
            Counts { grounding: 2, subgoals: 0, backtracking: 1, verification: 3 }
        );
    }

    #[test]
    fn malformed_replies_are_errors_not_zeros() {
        let missing = "GROUNDING: 2\nSUBGOALS: 0\nBACKTRACKING: 1\n";
        assert!(parse_counts(missing).unwrap_err().contains("VERIFICATION"));
        let twice = "GROUNDING: 2\nGROUNDING: 1\nSUBGOALS: 0\nBACKTRACKING: 1\nVERIFICATION: 0";
        assert!(parse_counts(twice).unwrap_err().contains("twice"));
        let words = "GROUNDING: two\nSUBGOALS: 0\nBACKTRACKING: 1\nVERIFICATION: 0";
        assert!(parse_counts(words).unwrap_err().contains("not a whole number"));
        let negative = "GROUNDING: -1\nSUBGOALS: 0\nBACKTRACKING: 1\nVERIFICATION: 0";
        assert!(parse_counts(negative).is_err());
        assert!(parse_counts("grounding: 1\nsubgoals: 0\nbacktracking: 0\nverification: 0").is_err());
    }

    #[test]
    fn long_documents_keep_their_start_and_end() {
        let doc: String = "a".repeat(100) + &"b".repeat(100);
        let short = shorten_middle(&doc, 50);
        assert!(short.starts_with(&"a".repeat(25)) && short.ends_with(&"b".repeat(25)) && short.contains("omitted"));
        assert_eq!(shorten_middle("short", 50), "short");
    }
}
