//! Prompts as the policy sees them: chat messages through the policy's chat template.

use longrl_core::api::{ChatMessage, Policy};

/// The chat-templated text of `messages`, with the assistant turn opened for the response.
pub fn prompt_text(policy: &dyn Policy, messages: &[ChatMessage]) -> anyhow::Result<String> {
    Ok(policy.apply_chat_template(messages, true)?)
}
