//! Prompts as the policy sees them, and the host's one truncation rule.
//!
//! **The rule** (QwenLong-L1's evaluation harness): a prompt over its budget keeps the first and the
//! last halves of the budget of its *last user message*'s tokens, decoded with special tokens
//! skipped; the chat template is applied afterwards, so its markers are never cut. On the recipe's
//! DocQA template the middle of the document goes while the instructions before it and the
//! question after it stay.
//!
//! Where the budget comes from differs by purpose, not the rule: benchmarks, stage evaluations and
//! `longrl difficulty` count it on the user message (as the reference eval scripts do); training
//! admission counts a phase's limit on the whole templated prompt and gives the user message what
//! the template leaves ([`crate::admit`]).

use longrl_core::api::{ChatMessage, Policy};

use crate::truncate::truncate_middle;

/// A prompt ready for `generate`.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltPrompt {
    /// The last user message as the model sees it (after truncation): what rewards and judges read
    /// the problem from.
    pub user: String,
    /// The chat-templated prompt's token ids.
    pub ids: Vec<u32>,
    /// Tokens of the user message before truncation (measured only under a budget; else 0).
    pub user_tokens: usize,
    pub truncated: bool,
}

/// The chat-templated text of `messages`, with the assistant turn opened for the response.
pub fn prompt_text(policy: &dyn Policy, messages: &[ChatMessage]) -> anyhow::Result<String> {
    Ok(policy.apply_chat_template(messages, true)?)
}

/// `messages` templated and tokenized, the last user message first cut to `max_user_tokens` by the
/// rule (`None`: as is).
pub fn build(
    policy: &dyn Policy,
    messages: &[ChatMessage],
    max_user_tokens: Option<usize>,
) -> anyhow::Result<BuiltPrompt> {
    let fitted = match max_user_tokens {
        Some(budget) => fit_user_message(policy, messages, budget)?,
        None => Fitted { messages: messages.to_vec(), user_tokens: 0, truncated: false },
    };
    let text = prompt_text(policy, &fitted.messages)?;
    // The template already wrote any BOS text; servers tokenise a rendered chat without adding more.
    let ids = policy.tokenize(&text, false)?;
    let user = last_user(&fitted.messages).map(|i| fitted.messages[i].content.clone()).unwrap_or_default();
    Ok(BuiltPrompt { user, ids, user_tokens: fitted.user_tokens, truncated: fitted.truncated })
}

/// Messages after the rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub messages: Vec<ChatMessage>,
    /// Tokens of the last user message before truncation.
    pub user_tokens: usize,
    pub truncated: bool,
}

/// The rule: the last user message of `messages`, when longer than `budget` tokens, keeps the first
/// and last halves of `budget` tokens. Messages without a user turn are returned as they are.
pub fn fit_user_message(policy: &dyn Policy, messages: &[ChatMessage], budget: usize) -> anyhow::Result<Fitted> {
    let mut messages = messages.to_vec();
    let Some(turn) = last_user(&messages) else {
        return Ok(Fitted { messages, user_tokens: 0, truncated: false });
    };
    let ids = policy.tokenize(&messages[turn].content, false)?;
    let truncated = ids.len() > budget;
    if truncated {
        messages[turn].content = policy.decode(&truncate_middle(&ids, budget), true)?;
    }
    Ok(Fitted { messages, user_tokens: ids.len(), truncated })
}

fn last_user(messages: &[ChatMessage]) -> Option<usize> {
    messages.iter().rposition(|m| m.role == "user")
}
