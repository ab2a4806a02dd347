//! Prompts as the reference harness builds them: the recipe's DocQA template as one user turn,
//! truncated by the host's one rule (`longrl_data::prompt`: the first and last halves of the user
//! message's tokens when over the input limit) before the chat template.

use longrl_core::api::{ChatMessage, Policy};
use longrl_data::prompt::{self, BuiltPrompt};
use longrl_data::template::docqa_prompt;

use super::bench::EvalRow;

/// The user message of a row, untruncated.
pub fn user_message(row: &EvalRow) -> String {
    docqa_prompt(&row.document, &row.question)
}

/// The row's prompt; `max_input_tokens` counts the user message's tokens, as the reference does.
pub fn build_prompt(policy: &dyn Policy, row: &EvalRow, max_input_tokens: usize) -> anyhow::Result<BuiltPrompt> {
    prompt::build(policy, &[ChatMessage::new("user", user_message(row))], Some(max_input_tokens))
}
