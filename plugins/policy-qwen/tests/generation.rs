//! The group-aware generation engine on CPU: a group's shared prompt gives what the prompt repeated
//! gives, a mixed-length batch what each prompt gives alone, and chunked prefill, lazy compaction
//! and packed decode weights change no output; non-finite logits are an error naming row and step.

mod common;

use longrl_core::api::{GenerateOutput, GenerationParams, LogprobOutput, Sequence};
use longrl_policy_qwen::generate::{EngineOptions, RowSpec, generate, generate_rows};
use longrl_policy_qwen::hf_config::Arch;
use longrl_policy_qwen::logprobs::{BatchLayout, Entropy, ScoreOptions, logprobs};
use longrl_policy_qwen::model::QwenModel;
use longrl_policy_qwen::text::TextCodec;

const VOCAB: u32 = 97;

fn setup(extra_eos: &[u32]) -> (QwenModel, TextCodec, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let codec = common::codec(dir.path(), VOCAB as usize, extra_eos);
    let model = common::model(Arch::Qwen2, VOCAB as i64, 32, 2, false, 21, 0.25);
    (model, codec, dir)
}

fn sampling(max_new: u32) -> GenerationParams {
    GenerationParams {
        max_new_tokens: max_new,
        temperature: 0.9,
        top_p: 0.95,
        top_k: 40,
        seed: 17,
        ..Default::default()
    }
}

/// Tokens and finish reasons equal; log-probs to float rounding (batch shapes change the kernels).
fn assert_same_outputs(what: &str, a: &GenerateOutput, b: &GenerateOutput) {
    assert_eq!(a.generations.len(), b.generations.len(), "{what}: counts");
    for (i, (x, y)) in a.generations.iter().zip(&b.generations).enumerate() {
        assert_eq!(x.tokens, y.tokens, "{what}: tokens of output {i}");
        assert_eq!(x.finish, y.finish, "{what}: finish of output {i}");
        for (p, q) in x.logprobs.iter().zip(&y.logprobs) {
            assert!((p - q).abs() < 1e-5, "{what}: output {i} log-probs {p} vs {q}");
        }
    }
}

#[test]
fn a_shared_prompt_gives_what_the_prompt_repeated_gives() {
    let (model, codec, _dir) = setup(&[]);
    let prompt = common::ids(1, 23, VOCAB);
    for params in [sampling(12), GenerationParams { temperature: 0.0, ..sampling(12) }] {
        let params = GenerationParams { rollouts: 8, ..params };
        let shared = generate(&model, &codec, &[prompt.clone()], &params, EngineOptions::default()).unwrap();
        // The same eight rows as eight one-row groups of the repeated prompt, same streams.
        let repeated = vec![prompt.clone(); 8];
        let rows: Vec<RowSpec> = (0..8).map(|i| RowSpec { prompt: i, seed: params.seed, stream: i as u64 }).collect();
        let apart = generate_rows(&model, &codec, &repeated, &rows, &params, EngineOptions::default()).unwrap();
        assert_same_outputs("shared vs repeated", &shared, &apart);
        assert_eq!(shared.prefill_tokens, 23, "the prompt is prefilled once");
        assert_eq!(apart.prefill_tokens, 8 * 23);
        if params.temperature > 0.0 {
            let distinct: std::collections::BTreeSet<_> = shared.generations.iter().map(|g| &g.tokens).collect();
            assert!(distinct.len() > 1, "rollouts of one prompt should differ");
        }
    }
}

#[test]
fn a_mixed_length_batch_gives_what_each_prompt_gives_alone() {
    let (model, codec, _dir) = setup(&[]);
    let prompts = vec![common::ids(2, 3, VOCAB), common::ids(3, 17, VOCAB), common::ids(4, 9, VOCAB)];
    let params = GenerationParams { rollouts: 3, ..sampling(10) };
    let together = generate(&model, &codec, &prompts, &params, EngineOptions::default()).unwrap();
    for (i, prompt) in prompts.iter().enumerate() {
        let rows: Vec<RowSpec> =
            (0..3).map(|j| RowSpec { prompt: 0, seed: params.seed, stream: (i * 3 + j) as u64 }).collect();
        let alone = generate_rows(&model, &codec, &[prompt.clone()], &rows, &params, EngineOptions::default()).unwrap();
        let part =
            GenerateOutput { generations: together.generations[i * 3..i * 3 + 3].to_vec(), ..Default::default() };
        assert_same_outputs(&format!("prompt {i}"), &part, &alone);
    }
}

#[test]
fn chunked_prefill_lazy_compaction_and_packed_weights_change_no_output() {
    // A fifth of the vocabulary ends a sequence, so rows finish at many different steps.
    let eos: Vec<u32> = (2..VOCAB).filter(|t| t % 5 == 0).collect();
    let (model, codec, _dir) = setup(&eos);
    let prompts = vec![common::ids(5, 19, VOCAB), common::ids(6, 6, VOCAB)];
    let params = GenerationParams { rollouts: 6, ..sampling(24) };
    let base = EngineOptions { compact_below: 0.0, ..EngineOptions::default() };
    let reference = generate(&model, &codec, &prompts, &params, base).unwrap();
    let lengths: std::collections::BTreeSet<usize> = reference.generations.iter().map(|g| g.tokens.len()).collect();
    assert!(lengths.len() >= 4, "rows should finish at different steps: {lengths:?}");
    for (what, options) in [
        ("compaction at half", EngineOptions { compact_below: 0.5, ..base }),
        ("compaction at every finish", EngineOptions { compact_below: 1.0, ..base }),
        ("prefill chunks of 4", EngineOptions { prefill_chunk: 4, ..base }),
        ("prefill chunks of 1", EngineOptions { prefill_chunk: 1, compact_below: 0.5, ..base }),
        ("unpacked weights", EngineOptions { pack_decode_weights: false, ..base }),
    ] {
        let out = generate(&model, &codec, &prompts, &params, options).unwrap();
        assert_same_outputs(what, &reference, &out);
    }
}

#[test]
fn sampled_log_probs_are_those_of_the_sampling_distribution() {
    // Scoring the generated tokens at the same temperature, without truncation, gives the
    // generation's log-probs (top-k and top-p off, so both distributions are the same).
    let (model, codec, _dir) = setup(&[]);
    let prompt = common::ids(7, 11, VOCAB);
    let params = GenerationParams { rollouts: 4, top_k: 0, top_p: 1.0, temperature: 0.8, ..sampling(9) };
    let out = generate(&model, &codec, &[prompt.clone()], &params, EngineOptions::default()).unwrap();
    let batch: Vec<Sequence> =
        out.generations.iter().map(|g| Sequence { prompt: prompt.clone(), response: g.tokens.clone() }).collect();
    let options = ScoreOptions {
        with_grad: false,
        entropy: Entropy::No,
        chunk_tokens: 0,
        temperature: 0.8,
        layout: BatchLayout::Shared,
    };
    let scored: LogprobOutput = logprobs(&model, &batch, &options).unwrap();
    for (i, g) in out.generations.iter().enumerate() {
        let row = Vec::<f32>::try_from(scored.logprobs.get(i as i64)).unwrap();
        for (j, lp) in g.logprobs.iter().enumerate() {
            assert!((lp - row[j]).abs() < 1e-4, "row {i} token {j}: generated {lp}, scored {}", row[j]);
        }
    }
}

/// Sets row `token` of the embedding (and of the tied projection) to NaN.
fn poison_embedding(model: &QwenModel, token: u32) {
    let _guard = tch::no_grad_guard();
    let (_, embed) = model.parameters().iter().find(|(n, _)| n == "model.embed_tokens.weight").unwrap();
    let _ = embed.get(token as i64).shallow_clone().fill_(f64::NAN);
}

#[test]
fn non_finite_logits_are_an_error_naming_row_and_step() {
    let (model, codec, _dir) = setup(&[]);
    let prompts = vec![common::ids(8, 7, VOCAB), common::ids(9, 5, VOCAB)];
    let greedy = GenerationParams { temperature: 0.0, rollouts: 2, ..sampling(6) };
    let clean = generate(&model, &codec, &prompts, &greedy, EngineOptions::default()).unwrap();
    // The first token greedy picks for prompt 1 becomes poison: its rows fail at new token 1.
    let first = clean.generations[2].tokens[0];
    assert!(!prompts[0].contains(&first) && !prompts[1].contains(&first), "pick another seed");
    let used_by_prompt0 = clean.generations[0].tokens[0] == first;
    poison_embedding(&model, first);
    let err = generate(&model, &codec, &prompts, &greedy, EngineOptions::default()).unwrap_err().to_string();
    let row = if used_by_prompt0 { "prompt 0" } else { "prompt 1, rollout 0 (output 2) at new token 1" };
    assert!(err.contains("non-finite logits") && err.contains(row), "{err}");
    // In a prompt: the prefill's logits already fail, at new token 0.
    let mut bad = prompts.clone();
    bad[1][2] = first;
    let err = generate(&model, &codec, &bad[1..], &greedy, EngineOptions::default()).unwrap_err().to_string();
    assert!(err.contains("prompt 0, rollout 0 (output 0) at new token 0"), "{err}");
    // Scoring: the sequence and the first response token with a non-finite log-prob are named (the
    // poisoned token's value reaches the token before it too: flash attention multiplies the
    // masked-out NaN value by a zero weight).
    let batch = vec![
        Sequence { prompt: prompts[0].clone(), response: vec![3, 4, 5] },
        Sequence { prompt: prompts[1].clone(), response: vec![3, first, 6, 7] },
    ];
    let options = ScoreOptions {
        with_grad: false,
        entropy: Entropy::No,
        chunk_tokens: 0,
        temperature: 1.0,
        layout: BatchLayout::Shared,
    };
    let err = logprobs(&model, &batch, &options).unwrap_err().to_string();
    assert!(err.contains("sequence 1 at response token 1") || err.contains("sequence 1 at response token 2"), "{err}");
}
