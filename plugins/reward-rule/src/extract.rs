//! Getting the answer out of a response: the text after the last `</think>`, the phrase after
//! "the answer is", special tokens and markdown emphasis removed.
//!
//! The official code (QwenLong-L1 `docqa.py`, `eval/<bench>.py`) matches "the answer is" as a
//! case-sensitive substring and removes exactly two DeepSeek tokens; the lenient forms (any case,
//! every Qwen/DeepSeek special token) are opt-in.

use std::sync::LazyLock;

use regex::Regex;

pub const THINK_END: &str = "</think>";
pub const ANSWER_IS: &str = "the answer is";

/// The two tokens the official extraction removes (`<｜Assistant｜>`, `<｜end▁of▁sentence｜>`).
pub const OFFICIAL_SPECIAL_TOKENS: [&str; 2] = ["<｜Assistant｜>", "<｜end▁of▁sentence｜>"];

/// `<|im_end|>`-style (Qwen) and `<｜end▁of▁sentence｜>`-style (DeepSeek, full-width bars) tokens.
static SPECIAL_TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<\|[^|<>]{0,64}\|>|<｜[^｜<>]{0,64}｜>").unwrap());
static ANSWER_IS_ANY_CASE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)the answer is").unwrap());

/// The text after the last `</think>`, or `None` when there is none.
pub fn after_think(response: &str) -> Option<&str> {
    response.rfind(THINK_END).map(|at| &response[at + THINK_END.len()..])
}

/// The answer text the official evaluation scripts read: the text after the last `</think>`,
/// stripped, unless that is empty or there is no `</think>`; then the whole (stripped) response.
pub fn eval_answer_text(response: &str) -> &str {
    match after_think(response).map(str::trim) {
        Some(after) if !after.is_empty() => after,
        _ => response.trim(),
    }
}

/// Every Qwen/DeepSeek special token removed (lenient).
pub fn strip_special_tokens(text: &str) -> String {
    SPECIAL_TOKEN.replace_all(text, "").into_owned()
}

/// The two tokens of [`OFFICIAL_SPECIAL_TOKENS`] removed, nothing else (official).
pub fn strip_official_special_tokens(text: &str) -> String {
    OFFICIAL_SPECIAL_TOKENS.iter().fold(text.to_string(), |text, token| text.replace(token, ""))
}

/// Markdown bold/italic markers hide the phrase ("the answer is **Paris**"); the reference drops every `*`.
pub fn strip_stars(text: &str) -> String {
    text.replace('*', "")
}

/// Byte ranges of each "the answer is" in `text`: exact case (official) or any case (lenient).
fn phrase_matches(text: &str, any_case: bool) -> Vec<(usize, usize)> {
    if any_case {
        ANSWER_IS_ANY_CASE.find_iter(text).map(|m| (m.start(), m.end())).collect()
    } else {
        text.match_indices(ANSWER_IS).map(|(at, phrase)| (at, at + phrase.len())).collect()
    }
}

/// The text after the last "the answer is" (Python's `rsplit("the answer is", 1)[-1]` when exact).
pub fn after_last_answer_is(text: &str, any_case: bool) -> Option<&str> {
    phrase_matches(text, any_case).last().map(|&(_, end)| &text[end..])
}

/// The text after each "the answer is", first occurrence first.
pub fn after_each_answer_is(text: &str, any_case: bool) -> Vec<&str> {
    phrase_matches(text, any_case).into_iter().map(|(_, end)| &text[end..]).collect()
}

pub fn mentions_answer_is(text: &str, any_case: bool) -> bool {
    !phrase_matches(text, any_case).is_empty()
}

/// The reference's clean-up of an extracted answer: trim, drop special tokens (the official two, or
/// every one when lenient), trim, strip periods at both ends, trim.
pub fn clean_answer(text: &str, lenient: bool) -> String {
    let text = text.trim();
    let text = if lenient { strip_special_tokens(text) } else { strip_official_special_tokens(text) };
    text.trim().trim_matches('.').trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn think_split_takes_the_last_closing_tag() {
        assert_eq!(after_think("<think>a</think>b</think> c"), Some(" c"));
        assert_eq!(after_think("no tag"), None);
        assert_eq!(after_think("</think>"), Some(""));
    }

    #[test]
    fn eval_answer_text_falls_back_to_the_whole_response() {
        assert_eq!(eval_answer_text("<think>x</think> Paris "), "Paris");
        assert_eq!(eval_answer_text(" no think, the answer is Paris "), "no think, the answer is Paris");
        // `extract_solution` gives "" after a final `</think>`; `"" if pred else response` reads the whole.
        assert_eq!(eval_answer_text("<think>the answer is X</think>  "), "<think>the answer is X</think>");
    }

    #[test]
    fn special_tokens_official_two_or_every_one() {
        assert_eq!(strip_special_tokens("Paris<|im_end|>"), "Paris");
        assert_eq!(strip_special_tokens("Paris<｜end▁of▁sentence｜><｜Assistant｜>"), "Paris");
        assert_eq!(strip_special_tokens("a < b | c > d"), "a < b | c > d");
        assert_eq!(strip_official_special_tokens("Paris<｜end▁of▁sentence｜><｜Assistant｜>"), "Paris");
        assert_eq!(strip_official_special_tokens("Paris<|im_end|>"), "Paris<|im_end|>");
    }

    #[test]
    fn answer_phrase_exact_or_any_case_and_last() {
        assert_eq!(after_last_answer_is("The answer is A. So THE ANSWER IS B", true), Some(" B"));
        assert_eq!(after_last_answer_is("The answer is A. So THE ANSWER IS B", false), None);
        assert_eq!(after_last_answer_is("The answer is A; the answer is B", false), Some(" B"));
        assert_eq!(after_last_answer_is("nothing here", true), None);
        assert_eq!(after_each_answer_is("the answer is 1, the answer is 2", false), vec![" 1, the answer is 2", " 2"]);
        assert!(mentions_answer_is("The Answer Is 3", true) && !mentions_answer_is("The Answer Is 3", false));
    }

    #[test]
    fn clean_answer_matches_the_reference_order() {
        assert_eq!(clean_answer("  Paris.<｜end▁of▁sentence｜> ", false), "Paris");
        assert_eq!(clean_answer("  Paris.<|im_end|> ", false), "Paris.<|im_end|>");
        assert_eq!(clean_answer("  Paris.<|im_end|> ", true), "Paris");
        assert_eq!(clean_answer("...x...", false), "x");
    }
}
