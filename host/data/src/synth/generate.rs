//! One synthetic example: a document of short fact paragraphs about invented people, a question
//! whose answer the document states (once, about that exact person), distractors, and an SFT trace.
//!
//! Lengths: a document grows paragraph by paragraph until the whole prompt (template, question and
//! chat markers included) reaches the target in *estimated* tokens ([`approx_tokens`]: one per word,
//! number, punctuation mark and newline run). The vocabulary is closed and small, so the BPE trained
//! on the corpus keeps each of those as one token and the estimate lands within a few percent of the
//! real count; the real count is measured after training and stored with each example.

use std::collections::HashSet;
use std::sync::LazyLock;

use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;
use regex::Regex;

use super::vocab::{self, COLORS, ITEMS, MAX_COUNT, MIN_COUNT};
use crate::template::docqa_prompt;

/// Question kinds, each with its own data source (the rule reward routes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// One fact about one person.
    Lookup,
    /// A fact about the mentor of a person: two sentences, anywhere in the document.
    Multihop,
    /// The sum or difference of two counts stated far apart (like DocMath).
    Numeric,
    /// A lookup asked as a four-option multiple choice; the answer is the letter.
    Choice,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Lookup, Kind::Multihop, Kind::Numeric, Kind::Choice];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Lookup => "lookup",
            Kind::Multihop => "multihop",
            Kind::Numeric => "numeric",
            Kind::Choice => "choice",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn data_source(self) -> String {
        format!("synth_{}", self.name())
    }

    /// verl's `ability` column.
    pub fn ability(self) -> &'static str {
        match self {
            Kind::Numeric => "math",
            _ => "docqa",
        }
    }
}

/// A generated example before it becomes rows.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthItem {
    pub kind: Kind,
    /// Target prompt length in tokens.
    pub bucket: u32,
    pub context: String,
    pub question: String,
    /// Ground truth: a town, a colour, a number or an option letter.
    pub answer: String,
    /// The sentences of the document the answer rests on, verbatim.
    pub grounding: Vec<String>,
    /// Distractors placed on purpose: near-duplicate names and conflicting reports.
    pub distractors: Vec<String>,
    /// The SFT trace: `<think>` quoting the grounding, then "Therefore, the answer is X."
    pub response: String,
    /// [`approx_tokens`] of the chat-templated prompt.
    pub approx_tokens: u64,
}

static PIECES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<\|[a-z_]+\|>|[A-Za-z]+|[0-9]+|\n+|[^\sA-Za-z0-9]").expect("valid regex"));

/// Estimated tokens: words, numbers, punctuation marks, newline runs and special tokens count one each.
pub fn approx_tokens(text: &str) -> u64 {
    PIECES.find_iter(text).count() as u64
}

/// Estimated tokens the ChatML wrapping adds (`<|im_start|>user\n … <|im_end|>\n<|im_start|>assistant\n`).
const CHAT_OVERHEAD: u64 = 8;

/// How estimated tokens translate into real ones, measured on a first pass with a tokenizer trained
/// on the corpus (documents and the fixed template tokenize differently, so each has its own figure).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Calibration {
    /// Real tokens per estimated token of documents and questions.
    pub tokens_per_piece: f64,
    /// Real tokens of the chat-templated prompt with an empty document and question.
    pub template_tokens: f64,
}

impl Default for Calibration {
    /// The estimate taken at its word.
    fn default() -> Self {
        Calibration {
            tokens_per_piece: 1.0,
            template_tokens: (approx_tokens(&docqa_prompt("", "")) + CHAT_OVERHEAD) as f64,
        }
    }
}

struct Person {
    name: String,
    town: Option<String>,
    color: Option<String>,
    mentor: Option<String>,
    count: Option<(u32, &'static str)>,
    /// Two reports naming different towns (a conflict about someone no question asks about).
    conflicting_towns: Option<(String, String)>,
}

impl Person {
    fn new(name: &str) -> Person {
        Person { name: name.into(), town: None, color: None, mentor: None, count: None, conflicting_towns: None }
    }

    fn town_sentence(&self) -> Option<String> {
        self.town.as_ref().map(|t| format!("{} lives in {t}.", self.name))
    }
    fn color_sentence(&self) -> Option<String> {
        self.color.as_ref().map(|c| format!("The favorite color of {} is {c}.", self.name))
    }
    fn mentor_sentence(&self) -> Option<String> {
        self.mentor.as_ref().map(|m| format!("The mentor of {} is {m}.", self.name))
    }
    fn count_sentence(&self) -> Option<String> {
        self.count.map(|(n, item)| format!("{} owns {n} {item}.", self.name))
    }
    fn conflict_sentence(&self) -> Option<String> {
        self.conflicting_towns.as_ref().map(|(a, b)| {
            format!("Reports about {0} differ: one says {0} lives in {a}, another says {0} lives in {b}.", self.name)
        })
    }

    fn paragraph(&self, rng: &mut ChaCha8Rng) -> String {
        let mut sentences: Vec<String> = [
            self.town_sentence(),
            self.conflict_sentence(),
            self.color_sentence(),
            self.mentor_sentence(),
            self.count_sentence(),
        ]
        .into_iter()
        .flatten()
        .collect();
        sentences.shuffle(rng);
        sentences.join(" ")
    }
}

/// Names and towns, drawn without replacement within one document.
struct Pools {
    people: Vec<String>,
    towns: Vec<String>,
    used_pairs: HashSet<usize>,
}

impl Pools {
    /// A fresh person pair `(name, near-duplicate)`, neither used yet in this document.
    fn pair(&mut self, rng: &mut ChaCha8Rng) -> Option<(String, String)> {
        let pairs = self.people.len() / 2;
        if self.used_pairs.len() >= pairs {
            return None;
        }
        loop {
            let k = rng.random_range(0..pairs);
            if self.used_pairs.insert(k) {
                let (a, b) = (self.people[2 * k].clone(), self.people[2 * k + 1].clone());
                return Some(if rng.random_bool(0.5) { (a, b) } else { (b, a) });
            }
        }
    }

    fn town_except(&self, rng: &mut ChaCha8Rng, except: &[&str]) -> String {
        loop {
            let town = self.towns.choose(rng).expect("towns");
            if !except.contains(&town.as_str()) {
                return town.clone();
            }
        }
    }
}

fn color_except(rng: &mut ChaCha8Rng, except: &str) -> String {
    loop {
        let color = *COLORS.choose(rng).expect("colors");
        if color != except {
            return color.to_string();
        }
    }
}

fn count(rng: &mut ChaCha8Rng) -> u32 {
    rng.random_range(MIN_COUNT..=MAX_COUNT)
}

/// What the question is about: people whose paragraphs must be in the document, and where.
struct Plan {
    required: Vec<Person>,
    /// `(index into required, position as a fraction range of the document)`; others go anywhere.
    placements: Vec<(usize, (f64, f64))>,
    question: String,
    answer: String,
    grounding: Vec<String>,
    distractors: Vec<String>,
    response: String,
}

fn think(steps: &[String], answer: &str) -> String {
    format!("<think>\n{}\n</think>\n\nTherefore, the answer is {answer}.", steps.join(" "))
}

fn quote(sentence: &str) -> String {
    format!("The text says: \"{sentence}\"")
}

fn plan_lookup(rng: &mut ChaCha8Rng, pools: &mut Pools, kind: Kind) -> Plan {
    let (name, twin) = pools.pair(rng).expect("enough names");
    let mut target = Person::new(&name);
    let mut decoy = Person::new(&twin);
    let ask_town = kind == Kind::Choice || rng.random_bool(0.7);
    let (question, answer, grounding, twin_value);
    if ask_town {
        let town = pools.town_except(rng, &[]);
        let other = pools.town_except(rng, &[&town]);
        target.town = Some(town.clone());
        decoy.town = Some(other.clone());
        question = format!("Where does {name} live?");
        grounding = target.town_sentence().expect("set");
        answer = town;
        twin_value = other;
    } else {
        let color = COLORS.choose(rng).expect("colors").to_string();
        let other = color_except(rng, &color);
        target.color = Some(color.clone());
        decoy.color = Some(other.clone());
        question = format!("What is the favorite color of {name}?");
        grounding = target.color_sentence().expect("set");
        answer = color;
        twin_value = other;
    }
    // Background facts on both, so the pair looks like everyone else.
    if target.count.is_none() && rng.random_bool(0.5) {
        target.count = Some((count(rng), *ITEMS.choose(rng).expect("items")));
    }
    decoy.count = Some((count(rng), *ITEMS.choose(rng).expect("items")));
    let decoy_sentence = if ask_town { decoy.town_sentence() } else { decoy.color_sentence() }.expect("set");
    let mut steps = vec![format!("The question asks about {name}."), quote(&grounding)];
    steps.push(format!("{twin} is a different person."));
    let (question, answer, response) = if kind == Kind::Choice {
        let mut options = vec![answer.clone(), twin_value];
        while options.len() < 4 {
            let town = pools.town_except(rng, &options.iter().map(String::as_str).collect::<Vec<_>>());
            options.push(town);
        }
        options.shuffle(rng);
        let letters = ['A', 'B', 'C', 'D'];
        let correct = letters[options.iter().position(|o| *o == answer).expect("answer is an option")];
        let listed: Vec<String> = letters.iter().zip(&options).map(|(l, o)| format!("{l}. {o}")).collect();
        let question = format!("{question}\n{}\nAnswer with the letter of the correct option.", listed.join("\n"));
        steps.push(format!("Option {correct} is {answer}."));
        let letter = format!("({correct})");
        let response = think(&steps, &letter);
        (question, correct.to_string(), response)
    } else {
        steps.push(format!("So the answer is {answer}."));
        let response = think(&steps, &answer);
        (question, answer, response)
    };
    Plan {
        required: vec![target, decoy],
        placements: Vec::new(),
        question,
        answer,
        grounding: vec![grounding],
        distractors: vec![decoy_sentence],
        response,
    }
}

fn plan_multihop(rng: &mut ChaCha8Rng, pools: &mut Pools) -> Plan {
    let (name, twin) = pools.pair(rng).expect("enough names");
    let (mentor_name, mentor_twin) = pools.pair(rng).expect("enough names");
    let (decoy_mentor_name, _) = pools.pair(rng).expect("enough names");
    let ask_town = rng.random_bool(0.7);
    let mut target = Person::new(&name);
    let mut decoy = Person::new(&twin);
    let mut mentor = Person::new(&mentor_name);
    let mut mentor_decoy = Person::new(&mentor_twin);
    let mut decoy_mentor = Person::new(&decoy_mentor_name);
    target.mentor = Some(mentor_name.clone());
    decoy.mentor = Some(decoy_mentor_name.clone());
    let answer;
    if ask_town {
        let town = pools.town_except(rng, &[]);
        mentor.town = Some(town.clone());
        mentor_decoy.town = Some(pools.town_except(rng, &[&town]));
        decoy_mentor.town = Some(pools.town_except(rng, &[&town]));
        // The person asked about lives elsewhere: the one-hop answer is wrong.
        target.town = Some(pools.town_except(rng, &[&town]));
        answer = town;
    } else {
        let color = COLORS.choose(rng).expect("colors").to_string();
        mentor.color = Some(color.clone());
        mentor_decoy.color = Some(color_except(rng, &color));
        decoy_mentor.color = Some(color_except(rng, &color));
        target.color = Some(color_except(rng, &color));
        answer = color;
    }
    let hop1 = target.mentor_sentence().expect("set");
    let hop2 = if ask_town { mentor.town_sentence() } else { mentor.color_sentence() }.expect("set");
    let question = if ask_town {
        format!("Where does the mentor of {name} live?")
    } else {
        format!("What is the favorite color of the mentor of {name}?")
    };
    let what =
        if ask_town { format!("where {mentor_name} lives") } else { format!("the favorite color of {mentor_name}") };
    let steps = vec![
        format!("First, find the mentor of {name}."),
        quote(&hop1),
        format!("Next, find {what}."),
        quote(&hop2),
        format!("So the answer is {answer}."),
    ];
    let twin_hop = if ask_town { mentor_decoy.town_sentence() } else { mentor_decoy.color_sentence() };
    let distractors = vec![decoy.mentor_sentence().expect("set"), twin_hop.expect("set")];
    Plan {
        required: vec![target, decoy, mentor, mentor_decoy, decoy_mentor],
        placements: Vec::new(),
        question,
        response: think(&steps, &answer),
        answer,
        grounding: vec![hop1, hop2],
        distractors,
    }
}

fn plan_numeric(rng: &mut ChaCha8Rng, pools: &mut Pools) -> Plan {
    let (first_name, twin) = pools.pair(rng).expect("enough names");
    let (second_name, _) = pools.pair(rng).expect("enough names");
    let item = *ITEMS.choose(rng).expect("items");
    let (mut a, mut b) = (count(rng), count(rng));
    let difference = rng.random_bool(0.5) && a != b;
    if difference && a < b {
        std::mem::swap(&mut a, &mut b);
    }
    let mut first = Person::new(&first_name);
    let mut second = Person::new(&second_name);
    let mut decoy = Person::new(&twin);
    first.count = Some((a, item));
    second.count = Some((b, item));
    decoy.count = Some((
        loop {
            let c = count(rng);
            if c != a {
                break c;
            }
        },
        item,
    ));
    first.town = Some(pools.town_except(rng, &[]));
    decoy.town = Some(pools.town_except(rng, &[]));
    let (s1, s2) = (first.count_sentence().expect("set"), second.count_sentence().expect("set"));
    let (question, answer, arithmetic) = if difference {
        (
            format!("How many more {item} does {first_name} own than {second_name}?"),
            a - b,
            format!("{a} - {b} = {}", a - b),
        )
    } else {
        (
            format!("How many {item} do {first_name} and {second_name} own in total?"),
            a + b,
            format!("{a} + {b} = {}", a + b),
        )
    };
    let steps = vec![
        format!("First, find how many {item} {first_name} owns."),
        quote(&s1),
        format!("Next, find how many {item} {second_name} owns."),
        quote(&s2),
        format!("Then compute {arithmetic}."),
    ];
    let answer = answer.to_string();
    // The two counts sit in opposite thirds of the document, in either order.
    let (early, late) = ((0.0, 0.33), (0.67, 1.0));
    let placements = if rng.random_bool(0.5) { vec![(0, early), (1, late)] } else { vec![(0, late), (1, early)] };
    Plan {
        distractors: vec![decoy.count_sentence().expect("set")],
        required: vec![first, second, decoy],
        placements,
        question,
        response: think(&steps, &answer),
        answer,
        grounding: vec![s1, s2],
    }
}

/// A filler person: two to four facts with random values.
fn filler(rng: &mut ChaCha8Rng, pools: &Pools, name: String, known: &[String]) -> Person {
    let mut person = Person::new(&name);
    let mut facts = [0u8, 1, 2, 3];
    facts.shuffle(rng);
    for fact in &facts[..rng.random_range(2..=4)] {
        match fact {
            0 => person.town = Some(pools.town_except(rng, &[])),
            1 => person.color = Some(COLORS.choose(rng).expect("colors").to_string()),
            2 => person.mentor = known.choose(rng).cloned(),
            _ => person.count = Some((count(rng), *ITEMS.choose(rng).expect("items"))),
        }
    }
    person
}

/// Generate one example of `kind` whose prompt is about `bucket` tokens long (at most, by the
/// calibrated estimate).
pub fn generate(rng: &mut ChaCha8Rng, kind: Kind, bucket: u32, calibration: Calibration) -> SynthItem {
    let mut pools = Pools { people: vocab::people(), towns: vocab::towns(), used_pairs: HashSet::new() };
    let mut plan = match kind {
        Kind::Lookup | Kind::Choice => plan_lookup(rng, &mut pools, kind),
        Kind::Multihop => plan_multihop(rng, &mut pools),
        Kind::Numeric => plan_numeric(rng, &mut pools),
    };
    let mut known: Vec<String> = plan.required.iter().map(|p| p.name.clone()).collect();
    let ratio = calibration.tokens_per_piece.max(0.1);
    let question_tokens = approx_tokens(&plan.question) as f64 * ratio;
    // A percent of slack keeps prompts at or under the target, where phase limits usually sit.
    let budget = ((f64::from(bucket) * 0.99 - calibration.template_tokens - question_tokens) / ratio).max(0.0) as u64;
    let mut required: Vec<String> = plan.required.iter().map(|p| p.paragraph(rng)).collect();
    let mut used: u64 = required.iter().map(|p| approx_tokens(p) + 1).sum();

    // Fill with other people until the next paragraph would overshoot; every eighth or so has
    // conflicting reports about where they live.
    let mut fillers: Vec<String> = Vec::new();
    let mut conflicts = 0;
    while let Some((name, _)) = pools.pair(rng) {
        let mut person = filler(rng, &pools, name, &known);
        if conflicts == 0 || rng.random_bool(0.12) {
            let a = pools.town_except(rng, &[]);
            person.conflicting_towns = Some((a.clone(), pools.town_except(rng, &[&a])));
            person.town = None;
            conflicts += 1;
            plan.distractors.push(person.conflict_sentence().expect("set"));
        }
        let paragraph = person.paragraph(rng);
        let cost = approx_tokens(&paragraph) + 1;
        if used + cost > budget {
            break;
        }
        used += cost;
        fillers.push(paragraph);
        known.push(person.name);
    }
    // Drop conflict distractors whose filler did not make it into the document.
    plan.distractors.retain(|d| !d.starts_with("Reports about") || fillers.iter().any(|f| f.contains(d.as_str())));

    fillers.shuffle(rng);
    let mut paragraphs = fillers;
    // Placed ones first, at their fraction of the document, then the rest anywhere.
    let mut order: Vec<usize> = (0..required.len()).collect();
    order.sort_by_key(|i| !plan.placements.iter().any(|(j, _)| j == i));
    for i in order {
        let text = std::mem::take(&mut required[i]);
        let n = paragraphs.len();
        let at = match plan.placements.iter().find(|(j, _)| *j == i) {
            Some((_, (lo, hi))) => {
                let lo = (lo * n as f64).floor() as usize;
                let hi = ((hi * n as f64).ceil() as usize).max(lo);
                rng.random_range(lo..=hi.min(n))
            }
            None => rng.random_range(0..=n),
        };
        paragraphs.insert(at, text);
    }
    let context = paragraphs.join("\n");
    let approx = approx_tokens(&docqa_prompt(&context, &plan.question)) + CHAT_OVERHEAD;
    SynthItem {
        kind,
        bucket,
        context,
        question: plan.question,
        answer: plan.answer,
        grounding: plan.grounding,
        distractors: plan.distractors,
        response: plan.response,
        approx_tokens: approx,
    }
}
