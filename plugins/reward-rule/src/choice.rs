//! Multiple-choice answers (`long_toc_choices`): "The correct answer is (A)" or "… is A", the letter
//! compared, as the reference `long.py`.
//!
//! Official (default): the two patterns `The correct answer is \(([A-D])\)` then `The correct answer
//! is ([A-D])`, case-sensitive, one space, no word boundary ("The correct answer is Alice" names A).
//! Lenient: the phrase in any case, an optional colon and any spacing, a letter standing alone, and
//! "the answer is (A)" / "the answer is A" for models that answer in the doc-QA format.

use regex::Regex;

use crate::extract;

pub struct ChoiceParser {
    /// Tried in order over the whole answer; the first that matches anywhere gives the letter.
    patterns: Vec<Regex>,
    letters: String,
}

impl ChoiceParser {
    /// `letters`: the option letters, upper-case ASCII (the reference: `ABCD`); `lenient`: the
    /// relaxed patterns of the module docs instead of the official two.
    pub fn new(letters: &str, lenient: bool) -> Result<Self, String> {
        if letters.is_empty() || !letters.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(format!("`{letters}` must be one or more upper-case letters, like \"ABCD\""));
        }
        let class = format!("[{letters}]");
        let make = |p: String| Regex::new(&p).map_err(|e| e.to_string());
        let patterns = if lenient {
            // A letter must stand alone here: "the correct answer is Alice" names no option.
            vec![
                make(format!(r"(?i:the correct answer is)\s*:?\s*\(({class})\)"))?,
                make(format!(r"(?i:the correct answer is)\s*:?\s*({class})\b"))?,
                make(format!(r"(?i:the answer is)\s*:?\s*(?:\(({class})\)|({class})\b)"))?,
            ]
        } else {
            vec![
                make(format!(r"The correct answer is \(({class})\)"))?,
                make(format!(r"The correct answer is ({class})"))?,
            ]
        };
        Ok(ChoiceParser { patterns, letters: letters.to_string() })
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
    fn official_patterns_are_exact() {
        let p = ChoiceParser::new("ABCD", false).unwrap();
        assert_eq!(p.extract("The correct answer is (B)."), Some('B'));
        assert_eq!(p.extract("**The correct answer is C**"), Some('C'));
        // `long.py`: no word boundary after the letter.
        assert_eq!(p.extract("The correct answer is Alice"), Some('A'));
        // Case-sensitive phrase and letter, one space, no colon, no doc-QA phrase.
        assert_eq!(p.extract("the correct answer is (D)"), None);
        assert_eq!(p.extract("The correct answer is (d)"), None);
        assert_eq!(p.extract("The correct answer is: A"), None);
        assert_eq!(p.extract("The correct answer is  (A)"), None);
        assert_eq!(p.extract("Therefore, the answer is (D)"), None);
        // The parenthesised pattern is searched first over the whole text.
        assert_eq!(p.extract("The correct answer is A. No: The correct answer is (C)"), Some('C'));
    }

    #[test]
    fn lenient_patterns_and_fallback() {
        let p = ChoiceParser::new("ABCD", true).unwrap();
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
        let p = ChoiceParser::new("ABCD", false).unwrap();
        assert_eq!(p.gold("The correct answer is (A)"), Some('A'));
        assert_eq!(p.gold("(b)"), Some('B'));
        assert_eq!(p.gold("C."), Some('C'));
        assert_eq!(p.gold("Paris"), None);
        assert!(ChoiceParser::new("abc", false).is_err());
        assert!(ChoiceParser::new("", true).is_err());
    }
}
