//! Prompts as the reference harness builds them: the recipe's DocQA template, truncated in the
//! middle at token level when over the input limit, then sent as one user turn of the chat template.

use longrl_core::api::{ChatMessage, Policy};

use longrl_data::template::docqa_prompt;
use longrl_data::truncate::truncate_middle;

use super::bench::EvalRow;

/// A prompt ready for `generate`.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltPrompt {
    /// The user message the model saw (after truncation); judges read the problem from it.
    pub user: String,
    /// The chat-templated prompt's token ids.
    pub tokens: Vec<u32>,
    /// Tokens of the user message before truncation.
    pub user_tokens: usize,
    pub truncated: bool,
}

/// The user message of a row, untruncated.
pub fn user_message(row: &EvalRow) -> String {
    docqa_prompt(&row.document, &row.question)
}

/// The reference tokenises the user message, keeps the first and last halves of `max_input_tokens`
/// when it is longer, and decodes the kept ids (special tokens skipped) before the chat template.
pub fn build_prompt(policy: &dyn Policy, row: &EvalRow, max_input_tokens: usize) -> anyhow::Result<BuiltPrompt> {
    let mut user = user_message(row);
    let ids = policy.tokenize(&user, false)?;
    let user_tokens = ids.len();
    let truncated = user_tokens > max_input_tokens;
    if truncated {
        user = policy.decode(&truncate_middle(&ids, max_input_tokens), true)?;
    }
    let chat = policy.apply_chat_template(&[ChatMessage::new("user", user.clone())], true)?;
    // The template already wrote any BOS text; servers tokenise a rendered chat without adding more.
    let tokens = policy.tokenize(&chat, false)?;
    Ok(BuiltPrompt { user, tokens, user_tokens, truncated })
}
