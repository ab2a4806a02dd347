//! Prompt lengths measured with the policy's tokenizer and cached; admission under a phase limit
//! (middle truncation of the document, or skipping), always counted.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use longrl_core::api::{
    ChatMessage, GenerateOutput, GenerationParams, LogprobOptions, LogprobOutput, Policy, PolicyDescription, Sequence,
};
use longrl_core::{Error, Result};
use longrl_data::synth::tokenizer::{chatml_user_prompt, train};
use longrl_data::template::docqa_prompt;
use longrl_data::{Example, OverlongPolicy, admit, prompt_lengths};
use tokenizers::Tokenizer;

/// A policy that only has a tokenizer (a BPE trained here) and the ChatML template; counts how often
/// it tokenizes so tests can tell a cache hit from a measurement.
struct TokenizerOnly {
    tokenizer: Tokenizer,
    tokenize_calls: AtomicUsize,
}

fn unused<T>() -> Result<T> {
    Err(Error::msg("not needed by the data layer"))
}

impl Policy for TokenizerOnly {
    fn describe(&self) -> Result<PolicyDescription> {
        Ok(PolicyDescription {
            architecture: "none".into(),
            num_parameters: 0,
            vocab_size: self.tokenizer.get_vocab_size(true) as u64,
            eos_token_ids: vec![],
            pad_token_id: None,
            device: "cpu".into(),
            dtype: "float32".into(),
            max_position_embeddings: 0,
        })
    }
    fn tokenize(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.tokenize_calls.fetch_add(1, Ordering::SeqCst);
        Ok(self.tokenizer.encode(text, add_special_tokens).map_err(Error::msg)?.get_ids().to_vec())
    }
    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.tokenizer.decode(ids, skip_special_tokens).map_err(Error::msg)
    }
    fn apply_chat_template(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let mut out: String =
            messages.iter().map(|m| format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content)).collect();
        if add_generation_prompt {
            out.push_str("<|im_start|>assistant\n");
        }
        Ok(out)
    }
    fn generate(&mut self, _: &[Vec<u32>], _: &GenerationParams) -> Result<GenerateOutput> {
        unused()
    }
    fn logprobs(&mut self, _: &[Sequence], _: &LogprobOptions) -> Result<LogprobOutput> {
        unused()
    }
    fn parameters(&self) -> Result<Vec<(String, tch::Tensor)>> {
        unused()
    }
    fn save(&self, _: &Path) -> Result<()> {
        unused()
    }
    fn load_weights(&mut self, _: &Path) -> Result<()> {
        unused()
    }
}

/// Words that become single tokens, so documents of `n` words are about `n` tokens long.
fn word(i: usize) -> String {
    format!("w{}", i % 50)
}

fn document(words: usize, tag: &str) -> String {
    let body: Vec<String> = (0..words).map(word).collect();
    format!("START{tag} {} END{tag}", body.join(" "))
}

fn policy() -> TokenizerOnly {
    let corpus: Vec<String> = (0..40).map(|i| document(200, &i.to_string())).chain([docqa_prompt("", "Q?")]).collect();
    let tokenizer = train(corpus.iter().map(String::as_str), 1000).unwrap();
    TokenizerOnly { tokenizer, tokenize_calls: AtomicUsize::new(0) }
}

fn example(id: &str, words: usize) -> Example {
    Example {
        id: id.into(),
        data_source: "synth_lookup".into(),
        prompt: vec![ChatMessage::new("user", docqa_prompt(&document(words, id), "Q?"))],
        question: "Q?".into(),
        ground_truth: "w1".into(),
        ability: "docqa".into(),
        extra: serde_json::json!({}),
    }
}

fn tokens(policy: &TokenizerOnly, example: &Example) -> u64 {
    let text = chatml_user_prompt(&example.prompt[0].content);
    policy.tokenizer.encode(text, false).unwrap().get_ids().len() as u64
}

#[test]
fn lengths_are_measured_once_then_read_from_the_cache() {
    let policy = policy();
    let dir = tempfile::tempdir().unwrap();
    let examples = vec![example("a", 50), example("b", 400), example("c", 10)];
    let lengths = prompt_lengths(&examples, &policy, Some(dir.path())).unwrap();
    let expected: Vec<u64> = examples.iter().map(|e| tokens(&policy, e)).collect();
    assert_eq!(lengths, expected);
    assert!(lengths[1] > lengths[0] + 300);
    let cached: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(cached.len(), 1);
    assert!(cached[0].to_string_lossy().starts_with("lengths-"));

    let before = policy.tokenize_calls.load(Ordering::SeqCst);
    assert_eq!(prompt_lengths(&examples, &policy, Some(dir.path())).unwrap(), lengths);
    let per_call = policy.tokenize_calls.load(Ordering::SeqCst) - before;
    // Only the tokenizer fingerprint is computed again (two probe encodings), not the examples.
    assert_eq!(per_call, 2);

    // Other data → another cache file, measured afresh.
    let changed = vec![example("a", 51), example("b", 400), example("c", 10)];
    let lengths2 = prompt_lengths(&changed, &policy, Some(dir.path())).unwrap();
    assert_eq!(lengths2[0], tokens(&policy, &changed[0]));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn overlong_prompts_are_truncated_in_the_middle_and_counted() {
    let policy = policy();
    let examples = vec![example("short", 20), example("long", 600), example("mid", 150)];
    let lengths = prompt_lengths(&examples, &policy, None).unwrap();
    let limit = lengths[2] + 5;
    let admission = admit(&examples, &lengths, limit, OverlongPolicy::TruncateMiddle, &policy).unwrap();
    assert_eq!((admission.truncated, admission.skipped), (1, 0));
    assert_eq!(admission.examples.len(), 3);
    let long = &admission.examples[1];
    assert_eq!((long.index, long.truncated, long.original_tokens), (1, true, lengths[1]));
    assert!(long.prompt_tokens <= limit && long.prompt_tokens + 10 >= limit, "{} vs limit {limit}", long.prompt_tokens);
    assert_eq!(long.prompt_tokens, tokens(&policy, &long.example));
    // The head and tail of the document survive, the middle goes, the template and question stay.
    let content = &long.example.prompt[0].content;
    assert!(content.contains("STARTlong w0 w1 w2") && content.contains("w48 w49 ENDlong"));
    assert!(content.len() < examples[1].prompt[0].content.len());
    assert!(
        content.starts_with("Please read the following text")
            && content.contains("</text>\n\nQ?\n\nFormat your response")
    );
    // Under the limit: untouched.
    assert_eq!(admission.examples[0].example, examples[0]);
    assert!(!admission.examples[2].truncated);
}

#[test]
fn skip_drops_overlong_prompts_but_counts_them() {
    let policy = policy();
    let examples = vec![example("short", 20), example("long", 600)];
    let lengths = prompt_lengths(&examples, &policy, None).unwrap();
    let admission = admit(&examples, &lengths, lengths[0], OverlongPolicy::Skip, &policy).unwrap();
    assert_eq!((admission.truncated, admission.skipped), (0, 1));
    assert_eq!(admission.skipped_ids, vec!["long".to_string()]);
    assert_eq!(admission.examples.iter().map(|e| e.index).collect::<Vec<_>>(), vec![0]);

    // A limit below the template itself cannot be met by truncation: skipped, and counted.
    let tiny = admit(&examples, &lengths, 5, OverlongPolicy::TruncateMiddle, &policy).unwrap();
    assert_eq!((tiny.truncated, tiny.skipped, tiny.examples.len()), (0, 2, 0));
}
