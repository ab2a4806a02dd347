//! The recipe's DocQA prompt template (QwenLong-L1, verbatim).

pub const DOCQA_TEMPLATE: &str = "Please read the following text and answer the question below.\n\n<text>\n$DOC$\n</text>\n\n$Q$\n\nFormat your response as follows: \"Therefore, the answer is (insert answer here)\".";

/// The user message for a document and a question.
pub fn docqa_prompt(document: &str, question: &str) -> String {
    // Substitute the question first so a `$DOC$` inside the question stays literal.
    let (head, tail) = DOCQA_TEMPLATE.split_once("$DOC$").expect("template has $DOC$");
    format!("{head}{document}{}", tail.replace("$Q$", question))
}

/// The text between `</text>` and `Format your response as follows:`, trimmed: the problem a judge sees.
pub fn problem_of(prompt: &str) -> Option<&str> {
    let after = &prompt[prompt.rfind("</text>")? + "</text>".len()..];
    let end = after.find("Format your response as follows:").unwrap_or(after.len());
    Some(after[..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_recipe_template_exactly() {
        let p = docqa_prompt("Doc body.", "Who?");
        assert_eq!(
            p,
            "Please read the following text and answer the question below.\n\n<text>\nDoc body.\n</text>\n\nWho?\n\nFormat your response as follows: \"Therefore, the answer is (insert answer here)\"."
        );
        assert_eq!(problem_of(&p), Some("Who?"));
    }

    #[test]
    fn placeholders_inside_inputs_stay_literal() {
        let p = docqa_prompt("a $Q$ b", "what is $DOC$?");
        assert!(p.contains("a $Q$ b") && p.contains("what is $DOC$?"));
    }
}
