//! What the judge is asked and how its reply is read: the QwenLong-L1 prompts, the problem taken
//! from the DocQA prompt, the answer taken from the response, and the `[[YES]]`/`[[NO]]` verdict.

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
/// End-of-text tokens a decoded response may still carry.
const SPECIAL_TOKENS: &[&str] =
    &["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<｜end▁of▁sentence｜>", "</s>", "<|end|>"];

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

/// The final answer of a response: the text after the last `</think>` (`None` when thinking is
/// required and the response never closed it), then [`extract_answer`].
pub fn extract_prediction(response: &str, require_think: bool) -> Option<String> {
    let answer = match response.rfind("</think>") {
        Some(at) => &response[at + "</think>".len()..],
        None if require_think => return None,
        None => response,
    };
    Some(extract_answer(answer))
}

/// As the rule verifier does for doc QA: drop `*`, keep what follows the last "the answer is"
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

/// The verdict is the last `[[YES]]` or `[[NO]]` of the reply (the explanation comes first and may
/// quote the format line, which names both).
pub fn parse_verdict(reply: &str) -> Verdict {
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

    #[test]
    fn prediction_is_the_answer_after_thinking() {
        let response = "<think>the answer is London</think>Some words. Therefore, **the answer is Paris**.<|im_end|>";
        assert_eq!(extract_prediction(response, true).as_deref(), Some("Paris"));
        assert_eq!(extract_prediction("no think tags, the answer is 3.", true), None);
        assert_eq!(extract_prediction("no think tags, The Answer Is: 3.", false).as_deref(), Some("3"));
        assert_eq!(extract_prediction("</think>  Just Paris ", true).as_deref(), Some("Just Paris"));
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
        assert_eq!(parse_verdict("They match. [[YES]]"), Verdict::Yes);
        assert_eq!(parse_verdict("Format: [[YES]] or [[NO]]. They differ, so [[no]]"), Verdict::No);
        assert_eq!(parse_verdict("Format: [[YES]] or [[NO]]. Same value. [[YES]]"), Verdict::Yes);
        assert_eq!(parse_verdict("YES they are the same"), Verdict::Unparsed);
        assert_eq!(parse_verdict(""), Verdict::Unparsed);
    }
}
