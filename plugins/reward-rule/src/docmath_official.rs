//! The DocMath answer exactly as the official code reads it (QwenLong-L1
//! `verl/utils/reward_score/docmath.py` for training, `eval/docmath.py` for evaluation): the first
//! match of `the answer is (\=?\≈?\`?\%?\$?\°?\£?\€?\¥?-?[0-9\.,]+)` (case-insensitive, exactly one
//! space, the symbols only in that order), commas and trailing periods dropped, then the
//! reference's `normalize` and Python `eval` of what remains. On what that regex can capture,
//! `normalize` reduces to: drop `£€¥`, keep what follows the last `=` or `≈`, drop `` ` ``, `%`, `$`
//! and `°`, drop one or two leading periods before a number (".5" reads as 5, as the reference's
//! unit-stripping regex does), then read a Python number literal; a string Python cannot evaluate
//! ("1.2.3", "007", "-") is 0, as in the reference. Nothing here executes model text.

use std::sync::LazyLock;

use regex::Regex;

use crate::Protocol;

/// The official pattern (Rust syntax); `(?i)` as the reference's `re.IGNORECASE`.
pub const PATTERN: &str = r"(?i)the answer is (=?≈?`?%?\$?°?£?€?¥?-?[0-9.,]+)";

static ANSWER: LazyLock<Regex> = LazyLock::new(|| Regex::new(PATTERN).unwrap());
/// The last unit-stripping rule of the reference `normalize` that can fire on a captured number:
/// `^[^-+\d]{1,2}((?:[\d,]*\.*\d+))$`.
static LEADING_PERIODS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[^-+\d]{1,2}([\d,]*\.*\d+)$").unwrap());

/// The captured answer string (commas removed, trailing periods stripped), as the reference's
/// `parse_model_answer` / `extract_answer` returns it; `None` when the pattern does not match or
/// the capture is empty (the reference's `if pred_status:` then scores 0).
pub fn capture(answer_text: &str, protocol: Protocol) -> Option<String> {
    let mut text = answer_text.replace('*', "");
    if protocol == Protocol::Eval {
        // `eval/docmath.py` also drops parentheses before matching.
        text = text.replace(['(', ')'], "");
    }
    let captured = ANSWER.captures(&text)?.get(1)?.as_str().replace(',', "");
    let captured = captured.trim_end_matches('.').to_string();
    (!captured.is_empty()).then_some(captured)
}

/// The gold string the reference compares with: the capture of the ground truth itself in
/// training (`parse_model_answer(ground_truth)`), of `Therefore, the answer is {gold}.` in
/// evaluation. A bare training gold (which the reference cannot read) is read as evaluation does.
pub fn capture_gold(ground_truth: &str, protocol: Protocol) -> Option<String> {
    let sentence = || capture(&format!("Therefore, the answer is {}.", ground_truth.trim()), protocol);
    match protocol {
        Protocol::Train => capture(ground_truth, protocol).or_else(sentence),
        Protocol::Eval => sentence(),
    }
}

/// The value the reference's `normalize` + `eval` gives a captured string (0 where Python fails).
pub fn value(captured: &str) -> f64 {
    let mut s: String = captured.chars().filter(|c| !matches!(c, '£' | '€' | '¥')).collect();
    for sign in ['=', '≈'] {
        if let Some(at) = s.rfind(sign) {
            s = s[at + sign.len_utf8()..].trim().to_string();
        }
    }
    s.retain(|c| !matches!(c, '`' | '%' | '$' | '°'));
    if let Some(number) = LEADING_PERIODS.captures(&s).and_then(|c| c.get(1)) {
        s = number.as_str().to_string();
    }
    python_number(&s).unwrap_or(0.0)
}

/// Python's `eval` of `-?[0-9.]*`: an int literal (no leading zeros unless all zeros) or a float
/// literal with one period; `None` for a syntax error (or an empty string, which the reference
/// turns into "0" first: 0 either way).
fn python_number(s: &str) -> Option<f64> {
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if body.is_empty() || !body.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let valid = match body.matches('.').count() {
        0 => body.chars().all(|c| c == '0') || !body.starts_with('0'),
        1 => body != ".",
        _ => false,
    };
    if !valid {
        return None;
    }
    let literal = if body.ends_with('.') { format!("{body}0") } else { body.to_string() };
    let literal = if literal.starts_with('.') { format!("0{literal}") } else { literal };
    let magnitude: f64 = literal.parse().ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_follows_the_regex_exactly() {
        let t = Protocol::Train;
        assert_eq!(capture("Therefore, the answer is 1,234.50.", t).as_deref(), Some("1234.50"));
        assert_eq!(capture("THE ANSWER IS 3", t).as_deref(), Some("3"), "IGNORECASE");
        assert_eq!(capture("the answer is $-5", t).as_deref(), Some("$-5"));
        assert_eq!(capture("the answer is =≈`%$°£€¥-7", t).as_deref(), Some("=≈`%$°£€¥-7"));
        // The number must follow at once, the symbols in the regex's order.
        assert_eq!(capture("the answer is approximately 3.14", t), None);
        assert_eq!(capture("the answer is € 7.25", t), None);
        assert_eq!(capture("the answer is: 5", t), None);
        assert_eq!(capture("the answer is  5", t), None);
        assert_eq!(capture("the answer is -$5", t), None);
        assert_eq!(capture("the answer is (12.5)", t), None);
        assert_eq!(capture("the answer is (12.5)", Protocol::Eval).as_deref(), Some("12.5"));
        // The first match wins; an empty capture is no answer.
        assert_eq!(capture("the answer is unclear; the answer is 4, the answer is 5", t).as_deref(), Some("4"));
        assert_eq!(capture("the answer is ...", t), None);
        assert_eq!(capture("the answer is **42**", t).as_deref(), Some("42"));
    }

    #[test]
    fn gold_capture_by_protocol() {
        assert_eq!(capture_gold("Therefore, the answer is 12.5%.", Protocol::Train).as_deref(), Some("12.5"));
        assert_eq!(capture_gold("0.125", Protocol::Train).as_deref(), Some("0.125"));
        assert_eq!(capture_gold("-3", Protocol::Eval).as_deref(), Some("-3"));
        assert_eq!(capture_gold("n/a", Protocol::Eval), None);
    }

    #[test]
    fn values_as_python_evaluates_them() {
        let cases = [
            ("12.50", 12.5),
            ("-5", -5.0),
            ("$-5", -5.0),
            ("=≈`%$°£€¥-7", -7.0),
            ("=12", 12.0),
            ("≈3.5", 3.5),
            ("5.", 5.0),
            ("00.5", 0.5),
            ("0", 0.0),
            ("000", 0.0),
            ("-.5", -0.5),
            // normalize's unit regex drops one or two leading periods: ".5" -> "5".
            (".5", 5.0),
            ("..5", 5.0),
            ("...5", 0.5),
            ("$.5", 5.0),
            // Python syntax errors are 0.
            ("007", 0.0),
            ("1.2.3", 0.0),
            ("-", 0.0),
            ("..", 0.0),
            ("", 0.0),
        ];
        for (captured, expected) in cases {
            assert_eq!(value(captured), expected, "{captured:?}");
        }
    }
}
