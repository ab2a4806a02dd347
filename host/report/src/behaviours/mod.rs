//! The four reasoning behaviours the QwenLong-L1 paper tracks over RL training (its Section 5 and
//! Fig. 6): **grounding** the answer in specific parts of the document, setting **subgoals**,
//! **backtracking** from wrong paths, and **verifying** the answer. Counted per response by one of two
//! analysers behind [`Analyser`]:
//!
//! - [`cues::CueAnalyser`]: deterministic textual cues (documented rules; fast, free, reproducible);
//! - [`judge::JudgeAnalyser`]: an LLM over any OpenAI-compatible endpoint, asked for the four counts in
//!   a strict format (parsed, never evaluated; a reply that does not parse leaves the response
//!   unscored, never 0).
//!
//! [`summary`] turns counts into means per step and phase, split by correct and wrong responses.

pub mod cues;
pub mod judge;
pub mod summary;

use serde::{Deserialize, Serialize};

/// One of the four behaviours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Behaviour {
    Grounding,
    Subgoals,
    Backtracking,
    Verification,
}

impl Behaviour {
    pub const ALL: [Behaviour; 4] =
        [Behaviour::Grounding, Behaviour::Subgoals, Behaviour::Backtracking, Behaviour::Verification];

    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::Grounding => "grounding",
            Behaviour::Subgoals => "subgoals",
            Behaviour::Backtracking => "backtracking",
            Behaviour::Verification => "verification",
        }
    }
}

/// How often each behaviour appears in one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub grounding: u32,
    pub subgoals: u32,
    pub backtracking: u32,
    pub verification: u32,
}

impl Counts {
    pub fn get(&self, behaviour: Behaviour) -> u32 {
        match behaviour {
            Behaviour::Grounding => self.grounding,
            Behaviour::Subgoals => self.subgoals,
            Behaviour::Backtracking => self.backtracking,
            Behaviour::Verification => self.verification,
        }
    }

    pub fn add(&mut self, behaviour: Behaviour, n: u32) {
        match behaviour {
            Behaviour::Grounding => self.grounding += n,
            Behaviour::Subgoals => self.subgoals += n,
            Behaviour::Backtracking => self.backtracking += n,
            Behaviour::Verification => self.verification += n,
        }
    }
}

/// Where a cue was found in the response (byte offsets), for highlighting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cue {
    pub behaviour: Behaviour,
    pub start: usize,
    pub end: usize,
}

/// One response's analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub counts: Counts,
    /// The spans behind the counts (the cue analyser's; the judge gives none).
    pub cues: Vec<Cue>,
}

/// What an analyser reads.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub response: &'a str,
    /// The prompt the model saw (the document and the question).
    pub prompt: &'a str,
}

/// Counts the behaviours of a batch of responses: one result per item, in order. An item that
/// cannot be analysed is an `Err` with the reason (it stays unscored).
pub trait Analyser {
    fn name(&self) -> &str;
    fn analyse(&self, items: &[Item<'_>]) -> Vec<Result<Analysis, String>>;
}

/// The reasoning part of a response: inside `<think>...</think>` when present (an unclosed think
/// block runs to the end), else the whole response. Returns the byte offset of the part too.
pub fn reasoning_part(response: &str) -> (usize, &str) {
    match response.find("<think>") {
        Some(open) => {
            let start = open + "<think>".len();
            let end = response[start..].find("</think>").map(|e| start + e).unwrap_or(response.len());
            (start, &response[start..end])
        }
        None => match response.find("</think>") {
            // Templates that open the think block in the prompt leave only the closing tag.
            Some(end) => (0, &response[..end]),
            None => (0, response),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_is_the_think_block_when_there_is_one() {
        assert_eq!(reasoning_part("<think>abc</think> answer"), (7, "abc"));
        assert_eq!(reasoning_part("x <think>abc"), (9, "abc"));
        assert_eq!(reasoning_part("abc</think> answer"), (0, "abc"));
        assert_eq!(reasoning_part("plain answer"), (0, "plain answer"));
    }
}
