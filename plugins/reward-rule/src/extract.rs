//! Getting the answer out of a response: the text after the last `</think>`, the phrase after
//! "the answer is", special tokens and markdown emphasis removed.

use std::sync::LazyLock;

use regex::Regex;

pub const THINK_END: &str = "</think>";

/// `<|im_end|>`-style (Qwen) and `<｜end▁of▁sentence｜>`-style (DeepSeek, full-width bars) tokens.
static SPECIAL_TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<\|[^|<>]{0,64}\|>|<｜[^｜<>]{0,64}｜>").unwrap());
static ANSWER_IS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)the answer is").unwrap());

/// The text after the last `</think>`, or `None` when there is none.
pub fn after_think(response: &str) -> Option<&str> {
    response.rfind(THINK_END).map(|at| &response[at + THINK_END.len()..])
}

pub fn strip_special_tokens(text: &str) -> String {
    SPECIAL_TOKEN.replace_all(text, "").into_owned()
}

/// Markdown bold/italic markers hide the phrase ("the answer is **Paris**"); the reference drops every `*`.
pub fn strip_stars(text: &str) -> String {
    text.replace('*', "")
}

/// The text after the last "the answer is" (any case).
pub fn after_last_answer_is(text: &str) -> Option<&str> {
    ANSWER_IS.find_iter(text).last().map(|m| &text[m.end()..])
}

/// The text after each "the answer is" (any case), first occurrence first.
pub fn after_each_answer_is(text: &str) -> impl Iterator<Item = &str> {
    ANSWER_IS.find_iter(text).map(move |m| &text[m.end()..])
}

pub fn mentions_answer_is(text: &str) -> bool {
    ANSWER_IS.is_match(text)
}

/// The reference's clean-up of an extracted answer: trim, drop special tokens, trim, strip periods
/// at both ends, trim.
pub fn clean_answer(text: &str) -> String {
    strip_special_tokens(text.trim()).trim().trim_matches('.').trim().to_string()
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
    fn special_tokens_of_both_families_are_removed() {
        assert_eq!(strip_special_tokens("Paris<|im_end|>"), "Paris");
        assert_eq!(strip_special_tokens("Paris<｜end▁of▁sentence｜><｜Assistant｜>"), "Paris");
        assert_eq!(strip_special_tokens("a < b | c > d"), "a < b | c > d");
    }

    #[test]
    fn answer_phrase_is_case_insensitive_and_last() {
        assert_eq!(after_last_answer_is("The answer is A. So THE ANSWER IS B"), Some(" B"));
        assert_eq!(after_last_answer_is("nothing here"), None);
        let all: Vec<&str> = after_each_answer_is("the answer is 1, the answer is 2").collect();
        assert_eq!(all, vec![" 1, the answer is 2", " 2"]);
    }

    #[test]
    fn clean_answer_matches_the_reference_order() {
        assert_eq!(clean_answer("  Paris.<｜end▁of▁sentence｜> "), "Paris");
        assert_eq!(clean_answer("...x..."), "x");
    }
}
