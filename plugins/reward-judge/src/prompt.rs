//! What the judge is asked and how its reply is read: the QwenLong-L1 prompts, the problem taken
//! from the DocQA prompt, the answer taken from the response, and the `[[YES]]`/`[[NO]]` verdict.

use crate::config::VerdictRule;

/// The QwenLong-L1 judge system prompt, verbatim.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are an expert in verifying if two answers are the same.
Your input is a problem and two answers, Answer 1 and Answer 2. You need to check if they are equivalent.
Your task is to determine if two answers are equivalent, without attempting to solve the original problem.
Compare the answers to verify they represent identical values or meaning, even when written in different forms or notations.

Your output must follow the following format:
1) Provide an explanation for why the answers are equivalent or not.
2) Then provide your final answer in the form of: [[YES]] or [[NO]]";

/// The QwenLong-L1 judge user message, verbatim (Answer 1 = prediction, Answer 2 = gold).
pub const DEFAULT_USER_TEMPLATE: &str = "\nProblem: {problem}\nAnswer 1: {answer_1}\nAnswer 2: {answer_2}\n";

const TEXT_END: &str = "</text>";
const FORMAT_LINE: &str = "Format your response as follows:";
const ANSWER_MARKER: &str = "the answer is";
const THINK_END: &str = "</think>";
/// End-of-text tokens a decoded response may still carry (lenient clean-up).
const SPECIAL_TOKENS: &[&str] =
    &["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<｜end▁of▁sentence｜>", "</s>", "<|end|>"];
/// The two tokens the official clean-up removes.
const OFFICIAL_SPECIAL_TOKENS: [&str; 2] = ["<｜Assistant｜>", "<｜end▁of▁sentence｜>"];

/// Where the problem text came from, for the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemSource {
    Prompt,
    Question,
    Missing,
}

impl ProblemSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemSource::Prompt => "prompt",
            ProblemSource::Question => "question",
            ProblemSource::Missing => "missing",
        }
    }
}

/// The problem: the prompt text between `</text>` and `Format your response as follows:` (as the
/// reference does), else the example's question.
pub fn extract_problem(prompt: &str, question: &str) -> (String, ProblemSource) {
    if let Some(end) = prompt.rfind(FORMAT_LINE) {
        if let Some(start) = prompt[..end].rfind(TEXT_END) {
            let problem = prompt[start + TEXT_END.len()..end].trim();
            if !problem.is_empty() {
                return (problem.to_string(), ProblemSource::Prompt);
            }
        }
    }
    let question = question.trim();
    if question.is_empty() {
        (String::new(), ProblemSource::Missing)
    } else {
        (question.to_string(), ProblemSource::Question)
    }
}

/// How the answer sent to the judge is read from a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extraction {
    /// The evaluation scripts' answer text: after `</think>` when that is not empty, else the whole.
    pub eval: bool,
    pub require_think: bool,
    pub lenient: bool,
}

/// The prediction sent to the judge, or `None` when the official code would not ask it: no
/// `</think>` when thinking is required, or (unless lenient) no case-sensitive "the answer is".
/// The official reward asks the judge with exactly what the rule extracted (`pred_status`).
pub fn extract_prediction(response: &str, how: Extraction) -> Option<String> {
    let after = response.rfind(THINK_END).map(|at| &response[at + THINK_END.len()..]);
    let text = match after {
        None if how.require_think => return None,
        Some(after) if !(how.eval && after.trim().is_empty()) => after,
        _ => response,
    };
    if how.lenient { Some(extract_answer(text)) } else { official_answer(text) }
}

/// The official `parse_model_answer`: drop `*`, the text after the last case-sensitive "the answer
/// is", stripped, the two DeepSeek end tokens removed, periods stripped at both ends.
pub fn official_answer(text: &str) -> Option<String> {
    let text = text.replace('*', "");
    let at = text.rfind(ANSWER_MARKER)?;
    let mut answer = text[at + ANSWER_MARKER.len()..].trim().to_string();
    for token in OFFICIAL_SPECIAL_TOKENS {
        answer = answer.replace(token, "");
    }
    Some(answer.trim().trim_matches('.').trim().to_string())
}

/// Lenient (and the gold's reading): drop `*`, keep what follows the last "the answer is"
/// (case-insensitive), drop end-of-text tokens and a trailing period. Text without the phrase is
/// kept whole (the judge can still read it).
pub fn extract_answer(text: &str) -> String {
    let text = text.replace('*', "");
    let lower = text.to_lowercase();
    // Lower-casing can change byte lengths (rare non-ASCII cases); only cut when offsets agree.
    let answer = match lower.rfind(ANSWER_MARKER) {
        Some(at) if lower.len() == text.len() && text.is_char_boundary(at + ANSWER_MARKER.len()) => {
            &text[at + ANSWER_MARKER.len()..]
        }
        _ => text.as_str(),
    };
    let mut answer = answer.to_string();
    for token in SPECIAL_TOKENS {
        answer = answer.replace(token, "");
    }
    let answer = answer.trim();
    let answer = answer.strip_prefix(':').unwrap_or(answer).trim();
    answer.strip_suffix('.').unwrap_or(answer).trim().to_string()
}

/// Fill `{problem}`, `{answer_1}` and `{answer_2}` in one pass, so braces inside the values are
/// never re-expanded.
pub fn render(template: &str, problem: &str, answer_1: &str, answer_2: &str) -> String {
    let mut out = String::with_capacity(template.len() + problem.len() + answer_1.len() + answer_2.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        let (value, used) = if tail.starts_with("{problem}") {
            (Some(problem), "{problem}".len())
        } else if tail.starts_with("{answer_1}") {
            (Some(answer_1), "{answer_1}".len())
        } else if tail.starts_with("{answer_2}") {
            (Some(answer_2), "{answer_2}".len())
        } else {
            (None, 1)
        };
        out.push_str(value.unwrap_or("{"));
        rest = &tail[used..];
    }
    out.push_str(rest);
    out
}

/// The placeholders a user template must contain.
pub const PLACEHOLDERS: [&str; 3] = ["{problem}", "{answer_1}", "{answer_2}"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Yes,
    No,
    /// Neither `[[YES]]` nor `[[NO]]`: scored as no, and counted.
    Unparsed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Yes => "yes",
            Verdict::No => "no",
            Verdict::Unparsed => "unparsed",
        }
    }
}

/// The verdict of a reply under `rule`.
pub fn parse_verdict(reply: &str, rule: VerdictRule) -> Verdict {
    match rule {
        VerdictRule::ContainsYes => {
            if reply.contains("YES") {
                Verdict::Yes
            } else {
                Verdict::No
            }
        }
        VerdictRule::LastMarker => last_marker(reply),
    }
}

/// The last `[[YES]]` or `[[NO]]` of the reply (the explanation comes first and may quote the
/// format line, which names both).
fn last_marker(reply: &str) -> Verdict {
    let upper = reply.to_uppercase();
    match (upper.rfind("[[YES]]"), upper.rfind("[[NO]]")) {
        (Some(yes), Some(no)) => {
            if yes > no {
                Verdict::Yes
            } else {
                Verdict::No
            }
        }
        (Some(_), None) => Verdict::Yes,
        (None, Some(_)) => Verdict::No,
        (None, None) => Verdict::Unparsed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCQA_PROMPT: &str = "Please read the following text and answer the question below.\n\n<text>\nThe capital of France is Paris.\n</text>\n\nWhat is the capital of France?\n\nFormat your response as follows: \"Therefore, the answer is (insert answer here)\".";

    #[test]
    fn problem_is_cut_from_the_docqa_prompt() {
        let (problem, source) = extract_problem(DOCQA_PROMPT, "ignored");
        assert_eq!(problem, "What is the capital of France?");
        assert_eq!(source, ProblemSource::Prompt);
    }

    #[test]
    fn problem_falls_back_to_the_question() {
        assert_eq!(extract_problem("no markers here", " Who? "), ("Who?".to_string(), ProblemSource::Question));
        // Markers in the wrong order are not a problem text.
        let reversed = "Format your response as follows: x </text> y";
        assert_eq!(extract_problem(reversed, "Q").1, ProblemSource::Question);
        assert_eq!(extract_problem("", "").1, ProblemSource::Missing);
    }

    const TRAIN: Extraction = Extraction { eval: false, require_think: true, lenient: false };
    const EVAL: Extraction = Extraction { eval: true, require_think: false, lenient: false };
    const LENIENT: Extraction = Extraction { eval: false, require_think: true, lenient: true };

    #[test]
    fn prediction_is_the_answer_after_thinking() {
        let response = "<think>the answer is London</think>Some words. Therefore, **the answer is Paris**.<|im_end|>";
        assert_eq!(extract_prediction(response, LENIENT).as_deref(), Some("Paris"));
        // The official clean-up keeps a Qwen token (it removes two DeepSeek ones).
        assert_eq!(extract_prediction(response, TRAIN).as_deref(), Some("Paris.<|im_end|>"));
        assert_eq!(extract_prediction("no think tags, the answer is 3.", TRAIN), None);
        assert_eq!(extract_prediction("no think tags, the answer is 3.", EVAL).as_deref(), Some("3"));
        let relaxed = Extraction { require_think: false, ..LENIENT };
        assert_eq!(extract_prediction("no think tags, The Answer Is: 3.", relaxed).as_deref(), Some("3"));
        assert_eq!(extract_prediction("</think>  Just Paris ", LENIENT).as_deref(), Some("Just Paris"));
    }

    #[test]
    fn official_extraction_needs_the_exact_phrase() {
        assert_eq!(extract_prediction("<think>x</think>The answer is Paris", TRAIN), None);
        assert_eq!(extract_prediction("<think>x</think>Just Paris", TRAIN), None);
        let done = "x</think>the answer is Paris<｜end▁of▁sentence｜>";
        assert_eq!(extract_prediction(done, TRAIN).as_deref(), Some("Paris"));
        // Evaluation reads the whole response when nothing follows `</think>`.
        let empty_after = "<think>so the answer is Lyon</think> ";
        assert_eq!(extract_prediction(empty_after, TRAIN), None);
        assert_eq!(extract_prediction(empty_after, EVAL).as_deref(), Some("Lyon</think>"));
    }

    #[test]
    fn non_ascii_text_never_panics() {
        for text in ["İİİ the answer is ß", "ΣΣ the answer is", "the answer is 日本", "ẞthe answer is x"] {
            let _ = extract_answer(text);
        }
        assert_eq!(extract_answer("the answer is 日本。"), "日本。");
    }

    #[test]
    fn render_fills_placeholders_once() {
        let text = render(DEFAULT_USER_TEMPLATE, "P {answer_1}", "A1", "{problem}");
        assert_eq!(text, "\nProblem: P {answer_1}\nAnswer 1: A1\nAnswer 2: {problem}\n");
        assert_eq!(render("{x} {", "p", "a", "b"), "{x} {");
    }

    #[test]
    fn verdict_is_the_last_marker() {
        let rule = VerdictRule::LastMarker;
        assert_eq!(parse_verdict("They match. [[YES]]", rule), Verdict::Yes);
        assert_eq!(parse_verdict("Format: [[YES]] or [[NO]]. They differ, so [[no]]", rule), Verdict::No);
        assert_eq!(parse_verdict("Format: [[YES]] or [[NO]]. Same value. [[YES]]", rule), Verdict::Yes);
        assert_eq!(parse_verdict("YES they are the same", rule), Verdict::Unparsed);
        assert_eq!(parse_verdict("", rule), Verdict::Unparsed);
    }

    #[test]
    fn official_verdict_is_any_yes() {
        let rule = VerdictRule::ContainsYes;
        assert_eq!(parse_verdict("They match. [[YES]]", rule), Verdict::Yes);
        // `"YES" in orm_response`: a quoted format line counts, lower case does not.
        assert_eq!(parse_verdict("Format: [[YES]] or [[NO]]. They differ, so [[NO]]", rule), Verdict::Yes);
        assert_eq!(parse_verdict("yes, the same [[yes]]", rule), Verdict::No);
        assert_eq!(parse_verdict("", rule), Verdict::No);
    }
}
