//! Multiple-choice answers (`long_toc_choices`): "The correct answer is (A)" or "… is A", the letter
//! compared, as the reference `long.py`.

use regex::Regex;

use crate::extract;

pub struct ChoiceParser {
    /// The reference's two patterns, tried in order over the whole answer; then "the answer is (A)"
    /// for models that answer in the doc-QA format.
    patterns: [Regex; 3],
    letters: String,
}

impl ChoiceParser {
    /// `letters`: the option letters, upper-case ASCII (the reference: `ABCD`).
    pub fn new(letters: &str) -> Result<Self, String> {
        if letters.is_empty() || !letters.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(format!("`{letters}` must be one or more upper-case letters, like \"ABCD\""));
        }
        // A letter must stand alone: "The correct answer is Alice" names no option.
        let class = format!("[{letters}]");
        let make = |p: String| Regex::new(&p).map_err(|e| e.to_string());
        Ok(ChoiceParser {
            patterns: [
                make(format!(r"(?i:the correct answer is)\s*:?\s*\(({class})\)"))?,
                make(format!(r"(?i:the correct answer is)\s*:?\s*({class})\b"))?,
                make(format!(r"(?i:the answer is)\s*:?\s*(?:\(({class})\)|({class})\b)"))?,
            ],
            letters: letters.to_string(),
        })
    }

    /// The option letter an answer text states.
    pub fn extract(&self, answer_text: &str) -> Option<char> {
        let text = extract::strip_stars(answer_text);
        self.patterns.iter().find_map(|re| {
            let caps = re.captures(&text)?;
            caps.iter().skip(1).flatten().next()?.as_str().chars().next()
        })
    }

    /// The gold letter, given as a sentence ("The correct answer is (B)"), "(B)" or "B".
    pub fn gold(&self, ground_truth: &str) -> Option<char> {
        if let Some(letter) = self.extract(ground_truth) {
            return Some(letter);
        }
        let bare = extract::strip_stars(ground_truth);
        let bare = bare.trim().trim_end_matches('.').trim_start_matches('(').trim_end_matches(')').trim();
        let mut chars = bare.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if self.letters.contains(c.to_ascii_uppercase()) => Some(c.to_ascii_uppercase()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_patterns_and_fallback() {
        let p = ChoiceParser::new("ABCD").unwrap();
        assert_eq!(p.extract("The correct answer is (B)."), Some('B'));
        assert_eq!(p.extract("**The correct answer is C**"), Some('C'));
        assert_eq!(p.extract("Therefore, the answer is (D)"), Some('D'));
        assert_eq!(p.extract("the correct answer is: A"), Some('A'));
        assert_eq!(p.extract("the correct answer is b"), None);
        assert_eq!(p.extract("The correct answer is Alice"), None);
        assert_eq!(p.extract("The correct answer is (E)"), None);
        // The parenthesised pattern is tried first over the whole text, as in the reference.
        assert_eq!(p.extract("The correct answer is A. No: the correct answer is (C)"), Some('C'));
    }

    #[test]
    fn gold_forms() {
        let p = ChoiceParser::new("ABCD").unwrap();
        assert_eq!(p.gold("The correct answer is (A)"), Some('A'));
        assert_eq!(p.gold("(b)"), Some('B'));
        assert_eq!(p.gold("C."), Some('C'));
        assert_eq!(p.gold("Paris"), None);
        assert!(ChoiceParser::new("abc").is_err());
        assert!(ChoiceParser::new("").is_err());
    }
}
