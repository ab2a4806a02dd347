//! `longrl data synth`: determinism, grounded answers, distractors, lengths near their targets,
//! files that the loaders read back, SFT traces and the tokenizer.

use std::path::Path;

use longrl_data::synth::{self, Calibration, Kind, Record, SynthOptions};
use longrl_data::{LoadOptions, load_examples, load_sft_examples};
use regex::Regex;
use tokenizers::Tokenizer;

fn small_options(seed: u64) -> SynthOptions {
    SynthOptions {
        seed,
        train: 24,
        eval: 8,
        sft: 8,
        lengths: vec![256, 512, 1024],
        sft_lengths: Vec::new(),
        kinds: Kind::ALL.to_vec(),
        vocab_size: 4096,
    }
}

fn records(seed: u64, count: usize) -> Vec<Record> {
    synth::generate_split(seed, "train", count, &Kind::ALL, &[512, 1024], Calibration::default())
}

fn read_dir(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn same_seed_same_files_other_seed_other_data() {
    let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    synth::write(&small_options(7), a.path()).unwrap();
    synth::write(&small_options(7), b.path()).unwrap();
    synth::write(&small_options(8), c.path()).unwrap();
    let (fa, fb, fc) = (read_dir(a.path()), read_dir(b.path()), read_dir(c.path()));
    let names: Vec<&str> = fa.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "train.parquet",
        "eval.parquet",
        "train.jsonl",
        "eval.jsonl",
        "sft.jsonl",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    assert_eq!(fa, fb, "same seed, different bytes");
    let differ = |name: &str| fa.iter().find(|(n, _)| n == name) != fc.iter().find(|(n, _)| n == name);
    assert!(differ("train.jsonl") && differ("eval.parquet"));
    // Examples do not depend on how many others are generated.
    let (few, more) = (records(3, 4), records(3, 9));
    assert_eq!(few[..], more[..4]);
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn every_answer_is_grounded_in_its_document() {
    let number = Regex::new(r"owns (\d+) ").unwrap();
    for record in records(11, 64) {
        let item = &record.item;
        let context = &item.context;
        assert!(!item.grounding.is_empty());
        for sentence in &item.grounding {
            assert_eq!(count(context, sentence), 1, "{}: grounding `{sentence}` must appear once", record.id);
        }
        let last = item.grounding.last().unwrap();
        match item.kind {
            Kind::Lookup | Kind::Multihop => {
                assert!(
                    last.ends_with(&format!(" {}.", item.answer)),
                    "{}: `{last}` does not state {}",
                    record.id,
                    item.answer
                );
            }
            Kind::Numeric => {
                let values: Vec<i64> =
                    item.grounding.iter().map(|s| number.captures(s).unwrap()[1].parse().unwrap()).collect();
                let answer: i64 = item.answer.parse().unwrap();
                let expected =
                    if item.question.contains("How many more") { values[0] - values[1] } else { values[0] + values[1] };
                assert_eq!(answer, expected, "{}: {:?} {}", record.id, item.grounding, item.question);
                // Stated far apart: at least a third of the document between them.
                let (p0, p1) = (context.find(&item.grounding[0]).unwrap(), context.find(&item.grounding[1]).unwrap());
                assert!(p0.abs_diff(p1) * 3 >= context.len() / 2, "{}: values too close", record.id);
            }
            Kind::Choice => {
                let letter = item.answer.chars().next().unwrap();
                assert!("ABCD".contains(letter) && item.answer.len() == 1);
                let option = Regex::new(&format!(r"(?m)^{letter}\. (\w+)$")).unwrap();
                let town = &option.captures(&item.question).unwrap()[1];
                assert!(
                    last.ends_with(&format!(" {town}.")),
                    "{}: option {letter} = {town}, grounding `{last}`",
                    record.id
                );
                assert_eq!(item.question.matches(". ").count(), 4, "four options: {}", item.question);
            }
        }
    }
}

#[test]
fn distractors_are_present() {
    let mut conflicts = 0;
    for record in records(5, 48) {
        let item = &record.item;
        for distractor in &item.distractors {
            assert!(item.context.contains(distractor.as_str()), "{}: `{distractor}` missing", record.id);
        }
        // The near-duplicate of the person asked about states a different value of the same fact.
        let near_duplicate = &item.distractors[0];
        assert!(!item.grounding.contains(near_duplicate));
        let subject = |s: &str| {
            s.split_whitespace().find(|w| w.chars().next().unwrap().is_uppercase() && *w != "The").unwrap().to_string()
        };
        let (asked, twin) = (subject(&item.grounding[0]), subject(near_duplicate));
        let asked = asked.trim_end_matches('.');
        let twin = twin.trim_end_matches('.');
        assert_ne!(asked, twin);
        assert_eq!(asked.len(), twin.len());
        assert_eq!(asked.chars().zip(twin.chars()).filter(|(a, b)| a != b).count(), 1, "{asked} / {twin}");
        conflicts += item.distractors.iter().filter(|d| d.starts_with("Reports about")).count();
        // Many other people with facts of the same kinds.
        assert!(item.context.lines().count() >= 10, "{}: {} paragraphs", record.id, item.context.lines().count());
    }
    assert!(conflicts >= 48, "every document has conflicting reports about someone not asked about");
}

#[test]
fn written_files_load_back_and_lengths_land_near_their_targets() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_options(1);
    let summary = synth::write(&options, dir.path()).unwrap();
    assert!(summary.vocab_size > 300 && summary.vocab_size <= options.vocab_size);

    let from_parquet = load_examples(&[dir.path().join("train.parquet")], &LoadOptions::default()).unwrap();
    let from_jsonl = load_examples(&[dir.path().join("train.jsonl")], &LoadOptions::default()).unwrap();
    assert_eq!(from_parquet.len(), options.train);
    assert_eq!(from_parquet, from_jsonl, "parquet and JSONL hold the same examples");
    let regenerated =
        synth::generate_split(1, "train", options.train, &options.kinds, &options.lengths, Calibration::default());
    let tokenizer = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    for (example, index) in from_parquet.iter().zip(0..) {
        assert_eq!(example.id, format!("synth-train-{index:06}"));
        let kind = Kind::ALL[index % 4];
        assert_eq!(example.data_source, kind.data_source());
        assert_eq!(example.extra["kind"], kind.name());
        let bucket = options.lengths[(index / 4) % 3];
        assert_eq!(example.extra["bucket"], bucket);
        // The plan (question and answer) does not depend on the length calibration.
        assert_eq!(example.ground_truth, regenerated[index].item.answer);
        assert_eq!(example.question, regenerated[index].item.question);

        let text = format!("<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n", example.prompt[0].content);
        let tokens = tokenizer.encode(text, false).unwrap().get_ids().len() as u64;
        assert_eq!(example.extra["prompt_tokens"], tokens);
        let (low, high) = (u64::from(bucket) * 80 / 100, u64::from(bucket) * 103 / 100);
        assert!((low..=high).contains(&tokens), "{}: {tokens} tokens for target {bucket}", example.id);
    }
    let eval = load_examples(&[dir.path().join("eval.parquet")], &LoadOptions::default()).unwrap();
    assert_eq!(eval.len(), options.eval);
    assert!(eval.iter().all(|e| e.id.starts_with("synth-eval-")));
}

#[test]
fn sft_traces_quote_their_grounding_and_end_with_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_options(2);
    synth::write(&options, dir.path()).unwrap();
    let traces = load_sft_examples(&[dir.path().join("sft.jsonl")], 0).unwrap();
    let records =
        synth::generate_split(2, "sft", options.sft, &options.kinds, &options.lengths, Calibration::default());
    assert_eq!(traces.len(), options.sft);
    for (trace, record) in traces.iter().zip(&records) {
        let response = &trace.response;
        assert!(response.starts_with("<think>\n"), "{response}");
        let (thinking, answer) = response.split_once("</think>").unwrap();
        for sentence in &record.item.grounding {
            assert!(thinking.contains(&format!("\"{sentence}\"")), "{}: trace does not quote `{sentence}`", trace.id);
        }
        let expected = match record.item.kind {
            Kind::Choice => format!("({})", record.item.answer),
            _ => record.item.answer.clone(),
        };
        assert_eq!(answer.trim(), format!("Therefore, the answer is {expected}."));
        if matches!(record.item.kind, Kind::Multihop | Kind::Numeric) {
            assert!(thinking.contains("First,") && thinking.contains("Next,"), "sub-goals stated: {thinking}");
        }
    }
}

#[test]
fn tokenizer_has_qwen_special_tokens_and_a_chat_template() {
    let dir = tempfile::tempdir().unwrap();
    synth::write(&SynthOptions { train: 8, eval: 0, sft: 4, ..small_options(3) }, dir.path()).unwrap();
    let tokenizer = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    let text = "<|im_start|>assistant\n<think>\nok\n</think>\n\nTherefore, the answer is Ashford.<|im_end|>";
    let ids = tokenizer.encode(text, false).unwrap().get_ids().to_vec();
    for special in ["<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|endoftext|>"] {
        let id = tokenizer.token_to_id(special).unwrap_or_else(|| panic!("{special} missing"));
        if special != "<|endoftext|>" {
            assert!(ids.contains(&id), "{special} is not one token");
        }
    }
    // Special tokens skipped, the think tags stay (the reward looks for `</think>`).
    let decoded = tokenizer.decode(&ids, true).unwrap();
    assert_eq!(decoded, "assistant\n<think>\nok\n</think>\n\nTherefore, the answer is Ashford.");
    assert_eq!(tokenizer.decode(&ids, false).unwrap(), text);
    // Town names are single tokens: answers are copied in one step.
    assert_eq!(tokenizer.encode(" Ashford", false).unwrap().get_ids().len(), 1);

    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("tokenizer_config.json")).unwrap()).unwrap();
    assert_eq!(config["eos_token"], "<|im_end|>");
    assert_eq!(config["pad_token"], "<|endoftext|>");
    assert!(config["chat_template"].as_str().unwrap().contains("<|im_start|>"));
}
