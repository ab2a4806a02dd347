//! DocMath answers: the reference's numeric match, and the lenient parser of a stated value
//! (number, list or boolean) that `lenient = true` uses instead of the official regex
//! ([`crate::docmath_official`]). The reference normaliser calls Python `eval` on model output;
//! this crate parses instead and never executes anything.
//!
//! What the lenient parser accepts beyond the official regex: the phrase anywhere "the answer is"
//! is followed by a value, with words ("approximately", "about", ...), spaces, colons, other
//! currency forms (`US$`, `USD`, `€ 7`), `\boxed{}` or parentheses before the number; scientific
//! notation (`1.5e-3`, `2.5 × 10^6`); the value after the last `=` of an arithmetic line
//! ("35 - 20 = 15"); booleans and lists.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::extract;

/// The reference's relative tolerance (0.15%).
pub const DEFAULT_TOLERANCE: f64 = 0.0015;

/// A stated answer value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Number(f64),
    List(Vec<f64>),
}

static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(\d(?:[\d,]*\d)?)?(?:\.(\d+))?(?:[eE]([-+]?\d{1,4}))?").unwrap());
static TIMES_TEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*(?:x|×|\*|·)\s*10\s*\^\s*\{?\s*([-+−]?\d{1,4})\s*\}?").unwrap());

/// Symbols and words that may stand before the number; skipped (the reference strips them too).
const SYMBOL_PREFIXES: &[&str] = &[":", "`", "$", "£", "€", "¥", "°", "~", "\\boxed{", "\\(", "{", "\\$", "US$"];
const WORD_PREFIXES: &[&str] = &[
    "approximately",
    "approx.",
    "approx",
    "about",
    "around",
    "roughly",
    "nearly",
    "almost",
    "estimated",
    "an estimated",
    "a total of",
    "usd",
    "us",
    "rmb",
    "eur",
    "gbp",
];
const SIGNS: &[char] = &['-', '+', '−', '–'];

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// Drop leading decorations: currency, "approximately", colons, backticks, ...
fn skip_prefixes(mut text: &str) -> &str {
    'outer: loop {
        text = text.trim_start();
        for prefix in SYMBOL_PREFIXES {
            if let Some(rest) = strip_prefix_ignore_case(text, prefix) {
                text = rest;
                continue 'outer;
            }
        }
        for word in WORD_PREFIXES {
            if let Some(rest) = strip_prefix_ignore_case(text, word) {
                // A whole word only: "usually" does not start with the currency "us".
                if !rest.starts_with(|c: char| c.is_alphabetic()) {
                    text = rest;
                    continue 'outer;
                }
            }
        }
        return text;
    }
}

/// The arithmetic lead of a phrase ("35 - 20 = 15"), in which the value is the part after the last
/// `=` or `≈`, as the reference's normaliser takes it.
fn arithmetic_span(text: &str) -> &str {
    let end = text
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_digit() || " \t+-−–*/×÷=≈.,%$£€¥°()^`".contains(c)))
        .map_or(text.len(), |(i, _)| i);
    &text[..end]
}

fn after_last_equals(text: &str) -> &str {
    let span = arithmetic_span(text);
    match span.char_indices().rfind(|&(_, c)| c == '=' || c == '≈') {
        Some((at, c)) => &text[at + c.len_utf8()..],
        None => text,
    }
}

/// A signed number at the start of `text`, and what follows it.
fn parse_number(text: &str) -> Option<(f64, &str)> {
    let mut text = skip_prefixes(text);
    let mut negative = false;
    if let Some(sign) = text.chars().next().filter(|c| SIGNS.contains(c)) {
        negative = sign != '+';
        text = skip_prefixes(&text[sign.len_utf8()..]);
    }
    let caps = NUMBER.captures(text)?;
    let (int, frac) = (caps.get(1), caps.get(2));
    if int.is_none() && frac.is_none() {
        return None;
    }
    let mut literal = int.map_or_else(|| "0".to_string(), |m| m.as_str().replace(',', ""));
    if let Some(frac) = frac {
        literal.push('.');
        literal.push_str(frac.as_str());
    }
    let mut exponent: i32 = caps.get(3).map_or(Some(0), |e| e.as_str().parse().ok())?;
    let mut rest = &text[caps.get(0)?.end()..];
    if let Some(times) = TIMES_TEN.captures(rest) {
        exponent += times.get(1)?.as_str().replace('−', "-").parse::<i32>().ok()?;
        rest = &rest[times.get(0)?.end()..];
    }
    // One decimal literal, so "3 x 10^-2" is exactly the float "3e-2".
    literal.push_str(&format!("e{exponent}"));
    let mut value: f64 = literal.parse().ok()?;
    if negative {
        value = -value;
    }
    value.is_finite().then_some((value, rest))
}

fn parse_bool(text: &str) -> Option<bool> {
    let word: String = text.chars().take_while(|c| c.is_alphabetic()).collect::<String>().to_lowercase();
    match word.as_str() {
        "yes" | "true" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    }
}

/// `[1, 2, 3]` or `(1, 2)`; a single parenthesised number is that number, as in Python.
fn parse_bracketed(text: &str) -> Option<Value> {
    let close = if text.starts_with('[') { ']' } else { ')' };
    let inner = &text[1..text.find(close)?];
    let mut items = Vec::new();
    for item in inner.split(',') {
        let (value, _) = parse_number(item)?;
        items.push(value);
    }
    if close == ')' && items.len() == 1 && !inner.contains(',') {
        return Some(Value::Number(items[0]));
    }
    Some(Value::List(items))
}

/// The value stated at the start of `text` (what follows "the answer is"), or `None`.
pub fn parse_value(text: &str) -> Option<Value> {
    let text = extract::strip_special_tokens(text);
    let text = skip_prefixes(&text);
    let text = skip_prefixes(after_last_equals(text));
    if let Some(b) = parse_bool(text) {
        return Some(Value::Bool(b));
    }
    if text.starts_with('[') || text.starts_with('(') {
        return parse_bracketed(text);
    }
    parse_number(text).map(|(value, _)| Value::Number(value))
}

/// The answer line shown in breakdowns: the rest of the line after "the answer is", cleaned.
fn answer_line(rest: &str) -> String {
    let rest = rest.trim_start();
    let line = rest.split('\n').next().unwrap_or("");
    let cleaned = extract::clean_answer(line, true);
    match cleaned.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &cleaned[..cut]),
        None => cleaned,
    }
}

/// Lenient: the first "the answer is …" (any case) of an answer text that states a value (the
/// reference takes the first match of its pattern): the answer line and the value.
pub fn extract_prediction(answer_text: &str) -> Option<(String, Value)> {
    let text = extract::strip_stars(answer_text);
    extract::after_each_answer_is(&text, true)
        .into_iter()
        .find_map(|rest| parse_value(rest).map(|v| (answer_line(rest), v)))
}

/// Lenient: the gold value, given bare ("12.5") or as a sentence ("… the answer is 12.5").
pub fn parse_gold(ground_truth: &str) -> Option<Value> {
    let text = extract::strip_stars(ground_truth);
    if extract::mentions_answer_is(&text, true) {
        extract_prediction(&text).map(|(_, value)| value)
    } else {
        parse_value(text.trim())
    }
}

fn within_eps(pred: f64, gold: f64, tolerance: f64) -> bool {
    let eps = gold.abs() * tolerance;
    pred >= gold - eps && pred <= gold + eps
}

/// The two versions of the reference's `compare_two_numbers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    /// Decimals of the round-up check (`round_up_to_decimal(v, d)`).
    pub round_decimals: i32,
    /// The power-of-ten check takes `log10(v1 / v2)` (evaluation) instead of `log10(v1) - log10(v2)`.
    pub log_of_ratio: bool,
}

impl Checks {
    /// `verl/utils/reward_score/docmath.py` (the RL reward).
    pub const TRAIN: Checks = Checks { round_decimals: 3, log_of_ratio: false };
    /// `eval/docmath.py` (the official evaluation).
    pub const EVAL: Checks = Checks { round_decimals: 2, log_of_ratio: true };
}

/// `math.ceil(value * 10**decimals) / 10**decimals`; `None` where Python raises (infinity).
fn round_up(value: f64, decimals: i32) -> Option<f64> {
    let factor = 10f64.powi(decimals);
    let scaled = (value * factor).ceil();
    scaled.is_finite().then_some(scaled / factor)
}

/// The reference's `compare_two_numbers`: which of its checks accepts `pred` for `gold`, if any.
/// Like the reference, the scale, power-of-ten and rounding checks compare magnitudes (sign ignored).
pub fn compare_numbers(pred: f64, gold: f64, tolerance: f64, checks: Checks) -> Option<&'static str> {
    if !(pred.is_finite() && gold.is_finite()) {
        return None; // the reference overflows (an error, or False in training)
    }
    if within_eps(pred, gold, tolerance) {
        return Some("numeric");
    }
    let (v1, v2) = (gold.abs().max(pred.abs()), gold.abs().min(pred.abs()));
    // The reference ORs these checks; the order here only picks the most telling name.
    let ratio_log =
        (v1 != 0.0 && v2 != 0.0).then(|| if checks.log_of_ratio { (v1 / v2).log10() } else { v1.log10() - v2.log10() });
    if ratio_log == Some(0.0) {
        return Some("magnitude");
    }
    if v2 <= v1 / 50.0 && within_eps(v2 * 100.0, v1, tolerance) {
        return Some("scale_x100");
    }
    if v2 <= v1 / 500.0 && within_eps(v2 * 1000.0, v1, tolerance) {
        return Some("scale_x1000");
    }
    if v2 <= v1 / 50000.0 && within_eps(v2 * 100000.0, v1, tolerance) {
        return Some("scale_x100000");
    }
    if ratio_log.is_some_and(|r| r.trunc() == r) {
        return Some("power_of_ten");
    }
    match (round_up(v1, checks.round_decimals), round_up(v2, checks.round_decimals)) {
        (Some(a), Some(b)) if a == b => Some("round_up"),
        _ => None,
    }
}

/// Whether `pred` matches `gold`, and the check that decided (`numeric` when numbers did not match).
pub fn compare(pred: &Value, gold: &Value, tolerance: f64, checks: Checks) -> (bool, &'static str) {
    match (pred, gold) {
        (Value::Bool(p), Value::Bool(g)) => (p == g, "boolean"),
        (Value::Number(p), Value::Number(g)) => match compare_numbers(*p, *g, tolerance, checks) {
            Some(check) => (true, check),
            None => (false, "numeric"),
        },
        (Value::List(p), Value::List(g)) => {
            let same = p.len() == g.len()
                && p.iter().zip(g).all(|(p, g)| compare_numbers(*p, *g, tolerance, checks).is_some());
            (same, "list")
        }
        _ => (false, "type_mismatch"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(text: &str) -> Option<f64> {
        match parse_value(text) {
            Some(Value::Number(n)) => Some(n),
            _ => None,
        }
    }

    #[test]
    fn numbers_with_decorations() {
        assert_eq!(num("42."), Some(42.0));
        assert_eq!(num("$1,234.50 million."), Some(1234.5));
        assert_eq!(num("-$5"), Some(-5.0));
        assert_eq!(num("$-5"), Some(-5.0));
        assert_eq!(num("−3.5%"), Some(-3.5));
        assert_eq!(num("approximately 0.35"), Some(0.35));
        assert_eq!(num("about ¥12"), Some(12.0));
        assert_eq!(num("USD 7"), Some(7.0));
        assert_eq!(num(".5"), Some(0.5));
        assert_eq!(num("1.5e-3"), Some(0.0015));
        assert_eq!(num("2.5 × 10^6 dollars"), Some(2.5e6));
        assert_eq!(num("3 x 10^{-2}"), Some(0.03));
        assert_eq!(num("35 - 20 = 15."), Some(15.0));
        assert_eq!(num("≈ 7.1"), Some(7.1));
        assert_eq!(num("12 (x = 3)"), Some(12.0));
        assert_eq!(num("\\boxed{15}"), Some(15.0));
        assert_eq!(num("`20`"), Some(20.0));
        assert_eq!(num("25°"), Some(25.0));
        assert_eq!(num("(5.2)"), Some(5.2));
        assert_eq!(num("usually 5"), None);
        assert_eq!(num("unknown"), None);
        assert_eq!(num("1e999"), None);
    }

    #[test]
    fn booleans_and_lists() {
        assert_eq!(parse_value("Yes, it does."), Some(Value::Bool(true)));
        assert_eq!(parse_value("False"), Some(Value::Bool(false)));
        assert_eq!(parse_value("not sure"), None);
        assert_eq!(parse_value("[1, 2.5, -3]"), Some(Value::List(vec![1.0, 2.5, -3.0])));
        assert_eq!(parse_value("(1, 2)"), Some(Value::List(vec![1.0, 2.0])));
        assert_eq!(parse_value("[1, x]"), None);
        assert_eq!(parse_value("[1, 2"), None);
    }

    #[test]
    fn reference_pattern_strings_parse() {
        let re = Regex::new(crate::docmath_official::PATTERN).unwrap();
        for text in [
            "the answer is =12",
            "the answer is ≈3.5",
            "the answer is $1,000",
            "the answer is -0.25",
            "The answer is £7.",
        ] {
            let captured = re.captures(text).unwrap().get(1).unwrap().as_str();
            assert!(parse_value(captured).is_some(), "{captured}");
        }
    }

    #[test]
    fn first_stated_value_is_the_prediction() {
        let (line, value) = extract_prediction("So the answer is unclear... Finally, the answer is 12.5%.").unwrap();
        assert_eq!(value, Value::Number(12.5));
        assert_eq!(line, "12.5%");
        assert_eq!(extract_prediction("The answer is 3. Then the answer is 4.").unwrap().1, Value::Number(3.0));
        assert!(extract_prediction("no phrase 12").is_none());
    }

    #[test]
    fn gold_bare_or_sentence() {
        assert_eq!(parse_gold("12.5"), Some(Value::Number(12.5)));
        assert_eq!(parse_gold("Therefore, the answer is 12.5."), Some(Value::Number(12.5)));
        assert_eq!(parse_gold("True"), Some(Value::Bool(true)));
        assert_eq!(parse_gold("n/a"), None);
    }

    #[test]
    fn reference_checks() {
        let (t, c) = (DEFAULT_TOLERANCE, Checks::TRAIN);
        assert_eq!(compare_numbers(100.1, 100.0, t, c), Some("numeric"));
        assert_eq!(compare_numbers(100.2, 100.0, t, c), None);
        assert_eq!(compare_numbers(-5.0, 5.0, t, c), Some("magnitude"));
        assert_eq!(compare_numbers(0.5, 5.0, t, c), Some("power_of_ten"));
        assert_eq!(compare_numbers(12.3, 0.1231, t, c), Some("scale_x100"));
        assert_eq!(compare_numbers(0.012_31, 12.3, t, c), Some("scale_x1000"));
        assert_eq!(compare_numbers(123_100.0, 1.23, t, c), Some("scale_x100000"));
        assert_eq!(compare_numbers(0.1231, 0.1239, t, c), Some("round_up"));
        assert_eq!(compare_numbers(0.0, 0.0, t, c), Some("numeric"));
        assert_eq!(compare_numbers(1.0, 0.0, t, c), None);
        assert_eq!(compare_numbers(f64::INFINITY, 1.0, t, c), None);
        assert_eq!(compare(&Value::Bool(true), &Value::Bool(true), t, c), (true, "boolean"));
        assert_eq!(compare(&Value::Bool(true), &Value::Number(1.0), t, c), (false, "type_mismatch"));
        assert_eq!(compare(&Value::List(vec![1.0, 2.0]), &Value::List(vec![1.0, 2.001]), t, c), (true, "list"));
        assert_eq!(compare(&Value::List(vec![1.0]), &Value::List(vec![1.0, 2.0]), t, c), (false, "list"));
    }

    #[test]
    fn evaluation_rounds_up_to_two_decimals() {
        // 0.121 and 0.129: round-up to 3 decimals differs (0.121 vs 0.129), to 2 they meet (0.13).
        assert_eq!(compare_numbers(0.121, 0.129, DEFAULT_TOLERANCE, Checks::TRAIN), None);
        assert_eq!(compare_numbers(0.121, 0.129, DEFAULT_TOLERANCE, Checks::EVAL), Some("round_up"));
        assert_eq!(compare_numbers(0.5, 5.0, DEFAULT_TOLERANCE, Checks::EVAL), Some("power_of_ten"));
    }
}
