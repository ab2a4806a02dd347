//! One row (a JSON object from parquet or JSONL) → an [`Example`] or an [`SftExample`]. Errors name
//! the key that is missing or ill-typed; the caller adds the file and row.

use longrl_core::api::ChatMessage;
use serde_json::{Map, Value};

use super::template::{docqa_prompt, problem_of};
use super::{Example, SftExample};

/// Columns read into the example's fields; every other column goes to `extra`.
const KNOWN: &[&str] = &[
    "id",
    "data_source",
    "prompt",
    "ability",
    "reward_model",
    "extra_info",
    "context",
    "question",
    "answer",
    "ground_truth",
];

/// Where a row sits, for ids.
pub struct RowPlace<'a> {
    pub file_stem: &'a str,
    /// 1-based.
    pub row: usize,
}

/// An RL example from a verl row (`prompt` chat list + `reward_model.ground_truth`), a
/// `prompt`/`ground_truth` row (prompt a string or a chat list) or a `context`/`question`/`answer` row.
pub fn example(row: &Map<String, Value>, place: &RowPlace<'_>, default_source: &str) -> Result<Example, String> {
    let prompt = prompt_messages(row)?;
    let ground_truth = match (row.get("reward_model"), row.get("ground_truth"), row.get("answer")) {
        (Some(Value::Object(rm)), _, _) => {
            text_of(rm.get("ground_truth").ok_or("`reward_model` has no `ground_truth`")?, "reward_model.ground_truth")?
        }
        (Some(other), _, _) if !other.is_null() => {
            return Err(format!("`reward_model` is {}, expected a struct", kind(other)));
        }
        (_, Some(gt), _) => text_of(gt, "ground_truth")?,
        (_, None, Some(answer)) => text_of(answer, "answer")?,
        _ => return Err("missing key `reward_model.ground_truth` (verl), `ground_truth` or `answer`".into()),
    };
    let extra_info = match row.get("extra_info") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(other) => return Err(format!("`extra_info` is {}, expected a struct", kind(other))),
    };
    let question = match (extra_info.get("question"), row.get("question")) {
        (Some(Value::String(q)), _) => q.clone(),
        (_, Some(Value::String(q))) => q.clone(),
        _ => prompt
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .and_then(|m| problem_of(&m.content))
            .unwrap_or("")
            .to_string(),
    };
    let mut extra = extra_info;
    for (key, value) in row {
        if !KNOWN.contains(&key.as_str()) {
            extra.insert(key.clone(), value.clone());
        }
    }
    Ok(Example {
        id: row_id(row, place)?,
        data_source: optional_string(row, "data_source")?.unwrap_or_else(|| default_source.to_string()),
        prompt,
        question,
        ground_truth,
        ability: optional_string(row, "ability")?.unwrap_or_default(),
        extra: Value::Object(extra),
    })
}

/// An SFT trace: `response` plus a prompt given as `prompt` (string or chat list) or `context` + `question`.
pub fn sft_example(row: &Map<String, Value>, place: &RowPlace<'_>) -> Result<SftExample, String> {
    let response = match row.get("response") {
        Some(Value::String(r)) => r.clone(),
        Some(other) => return Err(format!("`response` is {}, expected a string", kind(other))),
        None => return Err("missing key `response`".into()),
    };
    Ok(SftExample { id: row_id(row, place)?, prompt: prompt_messages(row)?, response })
}

fn prompt_messages(row: &Map<String, Value>) -> Result<Vec<ChatMessage>, String> {
    match (row.get("prompt"), row.get("context"), row.get("question")) {
        (Some(Value::String(text)), _, _) => Ok(vec![ChatMessage::new("user", text.clone())]),
        (Some(Value::Array(messages)), _, _) => {
            if messages.is_empty() {
                return Err("`prompt` is an empty list".into());
            }
            messages.iter().enumerate().map(|(i, m)| message(m, i)).collect()
        }
        (Some(other), _, _) if !other.is_null() => {
            Err(format!("`prompt` is {}, expected a string or a list of {{role, content}}", kind(other)))
        }
        (_, Some(Value::String(context)), Some(Value::String(question))) => {
            Ok(vec![ChatMessage::new("user", docqa_prompt(context, question))])
        }
        (_, Some(context), _) if !context.is_string() => {
            Err(format!("`context` is {}, expected a string", kind(context)))
        }
        (_, Some(_), Some(question)) => Err(format!("`question` is {}, expected a string", kind(question))),
        (_, Some(_), None) => Err("missing key `question` (needed with `context`)".into()),
        _ => Err("missing key `prompt` (or `context` + `question`)".into()),
    }
}

fn message(value: &Value, index: usize) -> Result<ChatMessage, String> {
    let field = |key: &str| match value.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("`prompt[{index}].{key}` is {}, expected a string", kind(other))),
        None => Err(format!("missing key `prompt[{index}].{key}`")),
    };
    if !value.is_object() {
        return Err(format!("`prompt[{index}]` is {}, expected {{role, content}}", kind(value)));
    }
    Ok(ChatMessage::new(field("role")?, field("content")?))
}

/// The row's own id (`id`, else `extra_info.id`), else `<file stem>:<row>`.
fn row_id(row: &Map<String, Value>, place: &RowPlace<'_>) -> Result<String, String> {
    let own = row.get("id").filter(|v| !v.is_null()).or_else(|| row.get("extra_info").and_then(|e| e.get("id")));
    match own {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Null) | None => Ok(format!("{}:{}", place.file_stem, place.row)),
        Some(other) => Err(format!("`id` is {}, expected a string or a number", kind(other))),
    }
}

fn optional_string(row: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("`{key}` is {}, expected a string", kind(other))),
    }
}

/// A ground truth as text: strings as they are, numbers and booleans printed, lists as JSON.
fn text_of(value: &Value, key: &str) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Array(_) => Ok(value.to_string()),
        Value::Null => Err(format!("`{key}` is null")),
        Value::Object(_) => Err(format!("`{key}` is a struct, expected a string, number or list")),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a struct",
    }
}
