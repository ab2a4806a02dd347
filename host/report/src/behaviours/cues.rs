//! The deterministic analyser: textual cues of each behaviour in the reasoning part of a response
//! (inside `<think>...</think>`, else the whole response). Every match is one occurrence; spans never
//! overlap (an earlier rule in the list below keeps a span a later one also matches).
//!
//! Rules (case-insensitive unless noted):
//! - **Grounding**: (1) a quotation, in straight or curly double quotes, of at least three words that
//!   appears verbatim in the prompt (case and runs of whitespace ignored, trailing punctuation of the
//!   quote dropped) - a quotation not in the document is not grounding; (2) an explicit reference to
//!   the document: "according to the text/document/passage/paragraph/article/report", "the
//!   text/document/... says/states/mentions/reports/notes/indicates", "as stated/mentioned/noted/
//!   described in the text/document/...".
//! - **Subgoals**: (1) enumerated steps: a line starting with `1.`, `2)`, `Step 3` ... counts when the
//!   response has at least two such lines (one numbered line is not a plan); (2) ordinal openers at the
//!   start of a sentence or line, "First," "Second," "Third," "Next," "Finally," (with a comma or
//!   colon); (3) planning phrases: "I need/have to find/determine/identify/figure out", "break
//!   this/it/the question down/into", "sub-question(s)", "sub-goal(s)".
//! - **Backtracking**: "wait", "hold on", "on second thought", "that's not right", "that is not
//!   right", "that's wrong", "I made a mistake", "let me re-check/reconsider/re-read/re-think/
//!   re-examine/re-evaluate" (with or without the hyphen), "actually," (with its comma), "hmm".
//! - **Verification**: "let me/to verify", "let me/to double-check", "let me/to confirm", "verify
//!   that", "checking/check the answer", "check(ing) this against", "this/which/that
//!   matches/agrees with/is consistent with the text/document/passage/question".

use std::sync::OnceLock;

use regex::Regex;

use super::{Analyser, Analysis, Behaviour, Counts, Cue, Item, reasoning_part};

/// The cue analyser; stateless, so one value serves every run.
#[derive(Debug, Clone, Copy, Default)]
pub struct CueAnalyser;

struct Rules {
    quote: Regex,
    reference: Regex,
    enumerated: Regex,
    ordinal: Regex,
    planning: Regex,
    backtracking: Regex,
    verification: Regex,
}

fn rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        let doc = r"(?:text|document|passage|paragraph|article|report)";
        let build = |pattern: &str| Regex::new(pattern).expect("the cue patterns are valid regular expressions");
        Rules {
            quote: build(r#""([^"\n]{3,400})"|“([^”\n]{3,400})”"#),
            reference: build(&format!(
                r"(?i)\b(?:according to the {doc}|the {doc} (?:says|states|mentions|reports|notes|indicates)|as (?:stated|mentioned|noted|described) in the {doc})\b"
            )),
            enumerated: build(r"(?im)^[ \t]*(?:\d{1,2}[.)]|step \d{1,2}\b)[ \t:]"),
            ordinal: build(r"(?im)(?:^|[.!?][ \t]+)[ \t]*((?:first|second|third|next|finally)[,:])"),
            planning: build(
                r"(?i)\b(?:i (?:need|have) to (?:find|determine|identify|figure out)|break (?:this|it|the question) (?:down|into)|sub-?questions?|sub-?goals?)\b",
            ),
            backtracking: build(
                r"(?i)\b(?:wait|hold on|on second thought|that'?s not right|that is not right|that'?s wrong|i made a mistake|let me re-?(?:check|consider|read|think|examine|evaluate)|hmm+)\b|\bactually,",
            ),
            verification: build(&format!(
                r"(?i)\b(?:(?:let me|to) (?:verify|double-check|double check|confirm)|verify that|check(?:ing)? (?:the answer|this against)|(?:this|which|that) (?:matches|agrees with|is consistent with) the (?:{doc}|question))\b"
            )),
        }
    })
}

/// Lower case with runs of whitespace collapsed to one space.
fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

impl CueAnalyser {
    /// Cues of one response, in order of position.
    pub fn cues(&self, response: &str, prompt: &str) -> Vec<Cue> {
        let r = rules();
        let (offset, reasoning) = reasoning_part(response);
        let document = normalise(prompt);
        let mut found: Vec<Cue> = Vec::new();
        let mut keep = |behaviour: Behaviour, start: usize, end: usize| {
            let (start, end) = (offset + start, offset + end);
            if !found.iter().any(|c| c.start < end && start < c.end) {
                found.push(Cue { behaviour, start, end });
            }
        };
        for m in r.quote.captures_iter(reasoning) {
            let inner = m.get(1).or_else(|| m.get(2)).expect("one of the two quote groups matched");
            let quoted = normalise(inner.as_str().trim_end_matches(['.', ',', ';', ':', '!', '?']));
            if quoted.split(' ').count() >= 3 && document.contains(&quoted) {
                let whole = m.get(0).expect("the whole match");
                keep(Behaviour::Grounding, whole.start(), whole.end());
            }
        }
        for m in r.reference.find_iter(reasoning) {
            keep(Behaviour::Grounding, m.start(), m.end());
        }
        let enumerated: Vec<_> = r.enumerated.find_iter(reasoning).collect();
        if enumerated.len() >= 2 {
            for m in enumerated {
                keep(Behaviour::Subgoals, m.start(), m.end());
            }
        }
        for c in r.ordinal.captures_iter(reasoning) {
            let m = c.get(1).expect("the ordinal group");
            keep(Behaviour::Subgoals, m.start(), m.end());
        }
        for m in r.planning.find_iter(reasoning) {
            keep(Behaviour::Subgoals, m.start(), m.end());
        }
        for m in r.backtracking.find_iter(reasoning) {
            keep(Behaviour::Backtracking, m.start(), m.end());
        }
        for m in r.verification.find_iter(reasoning) {
            keep(Behaviour::Verification, m.start(), m.end());
        }
        found.sort_by_key(|c| c.start);
        found
    }

    pub fn analysis(&self, response: &str, prompt: &str) -> Analysis {
        let cues = self.cues(response, prompt);
        let mut counts = Counts::default();
        for cue in &cues {
            counts.add(cue.behaviour, 1);
        }
        Analysis { counts, cues }
    }
}

impl Analyser for CueAnalyser {
    fn name(&self) -> &str {
        "cues"
    }

    fn analyse(&self, items: &[Item<'_>]) -> Vec<Result<Analysis, String>> {
        items.iter().map(|item| Ok(self.analysis(item.response, item.prompt))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENT: &str = "Please read the following text.\n<text>\nMara Voss was born in Kelden. \
        The bridge at Kelden was painted   green in 1901. Tomas Reed moved to Arlo.\n</text>\nWhat colour?";

    fn counts(response: &str) -> Counts {
        CueAnalyser.analysis(response, DOCUMENT).counts
    }

    fn only(behaviour: Behaviour, n: u32) -> Counts {
        let mut c = Counts::default();
        c.add(behaviour, n);
        c
    }

    #[test]
    fn grounding_needs_a_quote_from_the_document_or_an_explicit_reference() {
        let quoted = "<think>The text has \"the bridge at Kelden was painted green.\" so green.</think> green";
        assert_eq!(counts(quoted), only(Behaviour::Grounding, 1));
        // Whitespace and case differ from the document: still a verbatim quotation.
        assert_eq!(counts("<think>“The Bridge at  Kelden”</think>"), only(Behaviour::Grounding, 1));
        // Quoted, but not in the document; and too short to count.
        assert_eq!(counts("<think>\"the bridge was painted red\" and \"Kelden\"</think>"), Counts::default());
        assert_eq!(counts("<think>According to the passage, it is green.</think>"), only(Behaviour::Grounding, 1));
        assert_eq!(counts("<think>The document states that it is green.</think>"), only(Behaviour::Grounding, 1));
        assert_eq!(counts("<think>It is green.</think>"), Counts::default());
    }

    #[test]
    fn subgoals_are_enumerated_steps_ordinal_openers_and_plans() {
        assert_eq!(counts("<think>1. Find the town.\n2. Find the bridge.\n</think>"), only(Behaviour::Subgoals, 2));
        // A single numbered line is not a plan; a number inside a sentence is not a step.
        assert_eq!(counts("<think>1. The bridge is green. It was 1901.</think>"), Counts::default());
        assert_eq!(counts("<think>First, find the town. Next, the bridge.</think>"), only(Behaviour::Subgoals, 2));
        assert_eq!(counts("<think>I need to find where Mara was born.</think>"), only(Behaviour::Subgoals, 1));
        assert_eq!(counts("<think>The first bridge was green.</think>"), Counts::default());
    }

    #[test]
    fn backtracking_is_a_reversal() {
        assert_eq!(
            counts("<think>It is Arlo. Wait, Mara was born in Kelden.</think>"),
            only(Behaviour::Backtracking, 1)
        );
        assert_eq!(
            counts("<think>Let me re-check. Hmm, actually, it was 1901.</think>"),
            only(Behaviour::Backtracking, 3)
        );
        assert_eq!(counts("<think>Let me recheck the date.</think>"), only(Behaviour::Backtracking, 1));
        // "actually" without its comma, and "awaiting", are not reversals.
        assert_eq!(counts("<think>It actually is green, not awaiting paint.</think>"), Counts::default());
    }

    #[test]
    fn verification_is_a_check_of_the_answer() {
        assert_eq!(counts("<think>Green. Let me verify: yes.</think>"), only(Behaviour::Verification, 1));
        assert_eq!(counts("<think>Green, which matches the text.</think>"), only(Behaviour::Verification, 1));
        assert_eq!(counts("<think>Checking the answer once more.</think>"), only(Behaviour::Verification, 1));
        assert_eq!(counts("<think>Green is a colour.</think>"), Counts::default());
    }

    #[test]
    fn only_the_reasoning_is_read_and_spans_point_into_the_response() {
        let response = "<think>Wait, it is green.</think> Wait, therefore, the answer is green.";
        let analysis = CueAnalyser.analysis(response, DOCUMENT);
        assert_eq!(analysis.counts, only(Behaviour::Backtracking, 1));
        let cue = &analysis.cues[0];
        assert_eq!(&response[cue.start..cue.end], "Wait");
        assert_eq!(cue.start, "<think>".len());
    }

    #[test]
    fn a_response_shows_several_behaviours_at_once() {
        let response = "<think>First, find the bridge. According to the text, \"the bridge at Kelden was painted \
            green\". Wait, the year? Let me verify: 1901.</think> Therefore, the answer is green.";
        assert_eq!(counts(response), Counts { grounding: 2, subgoals: 1, backtracking: 1, verification: 1 });
    }
}
