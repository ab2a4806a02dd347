//! Scoring with shared prompts and packed batches: one forward of each group's prompt gives the
//! per-token log-probs and parameter gradients of running every sequence whole (1e-5 relative),
//! with mixed response lengths, several groups per batch, groups split across micro-batches, and
//! gradient checkpointing; packed batches give what right-padded ones give.

mod common;

use longrl_core::api::Sequence;
use longrl_policy_qwen::hf_config::Arch;
use longrl_policy_qwen::logprobs::{BatchLayout, Entropy, ScoreOptions, logprobs};
use longrl_policy_qwen::model::QwenModel;
use tch::{Device, Kind, Tensor};

const VOCAB: u32 = 89;

/// Three groups (prompts of 13, 4 and 21 tokens) of 4, 3 and 5 rollouts with mixed response
/// lengths, including an empty and a one-token response.
fn groups() -> Vec<Sequence> {
    let mut batch = Vec::new();
    for (g, (prompt_len, responses)) in
        [(13, vec![7, 1, 12, 4]), (4, vec![9, 0, 3]), (21, vec![2, 15, 6, 6, 1])].into_iter().enumerate()
    {
        let prompt = common::ids(g as u32 + 1, prompt_len, VOCAB);
        for (r, len) in responses.into_iter().enumerate() {
            batch.push(Sequence {
                prompt: prompt.clone(),
                response: common::ids(100 + 10 * g as u32 + r as u32, len, VOCAB),
            });
        }
    }
    batch
}

struct Scored {
    /// Per sequence, the log-probs of its response tokens.
    logprobs: Vec<Vec<f32>>,
    entropy: Vec<Vec<f32>>,
    grads: Vec<(String, Tensor)>,
}

/// Log-probs and entropy with gradients over `micro_batches` consecutive calls, each backward of
/// a loss weighting every token differently; the gradients accumulate over the calls.
fn score(model: &QwenModel, batch: &[Sequence], layout: BatchLayout, micro_batches: &[usize]) -> Scored {
    for (_, p) in model.parameters() {
        let mut p = p.shallow_clone();
        p.zero_grad();
    }
    let options =
        ScoreOptions { with_grad: true, entropy: Entropy::WithGrad, chunk_tokens: 5, temperature: 0.9, layout };
    let (mut lps, mut ents) = (Vec::new(), Vec::new());
    let mut start = 0;
    for &size in micro_batches {
        let part = &batch[start..start + size];
        let out = logprobs(model, part, &options).unwrap();
        let entropy = out.entropy.unwrap();
        let mut loss = Tensor::zeros([], (Kind::Float, Device::Cpu));
        for (i, s) in part.iter().enumerate() {
            let n = s.response.len() as i64;
            let w = (Tensor::arange_start(1, n + 1, (Kind::Float, Device::Cpu)) * (start + i + 1) as f64).sin();
            let lp = out.logprobs.get(i as i64).narrow(0, 0, n);
            let en = entropy.get(i as i64).narrow(0, 0, n);
            loss = loss + (&lp * &w).sum(Kind::Float) + (en * 0.2).sum(Kind::Float);
            lps.push(Vec::<f32>::try_from(lp.detach()).unwrap());
            ents.push(Vec::<f32>::try_from(entropy.get(i as i64).narrow(0, 0, n).detach()).unwrap());
        }
        loss.backward();
        start += size;
    }
    assert_eq!(start, batch.len());
    let grads = model.parameters().iter().map(|(n, p)| (n.clone(), p.grad().copy())).collect();
    Scored { logprobs: lps, entropy: ents, grads }
}

fn assert_close(what: &str, a: &Scored, b: &Scored) {
    for (i, (x, y)) in a.logprobs.iter().zip(&b.logprobs).enumerate() {
        assert_eq!(x.len(), y.len());
        for (p, q) in x.iter().zip(y) {
            assert!((p - q).abs() <= 1e-5 * p.abs().max(1.0), "{what}: sequence {i} log-prob {p} vs {q}");
        }
    }
    for (x, y) in a.entropy.iter().flatten().zip(b.entropy.iter().flatten()) {
        assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{what}: entropy {x} vs {y}");
    }
    for ((name, x), (_, y)) in a.grads.iter().zip(&b.grads) {
        let scale = x.abs().max().double_value(&[]).max(1e-3);
        let d = (x - y).abs().max().double_value(&[]);
        assert!(d <= 1e-5 * scale, "{what}: gradient of {name} differs by {d} (max |g| {scale})");
    }
}

#[test]
fn shared_prompts_give_the_log_probs_and_gradients_of_whole_sequences() {
    let batch = groups();
    for (arch, tie) in [(Arch::Qwen2, false), (Arch::Qwen3, true)] {
        let mut model = common::model(arch, VOCAB as i64, 32, 2, tie, 3, 0.2);
        let whole = score(&model, &batch, BatchLayout::Padded, &[batch.len()]);
        // One call, and groups split across micro-batches (4 | 3 + 2 | 3, with a group cut in two).
        for split in [vec![batch.len()], vec![5, 4, 3]] {
            for layout in [BatchLayout::Shared, BatchLayout::Packed] {
                let got = score(&model, &batch, layout, &split);
                assert_close(&format!("{arch:?} {layout:?} micro-batches {split:?}"), &whole, &got);
            }
        }
        model.set_gradient_checkpointing(true);
        let got = score(&model, &batch, BatchLayout::Shared, &[5, 7]);
        assert_close(&format!("{arch:?} shared with checkpointing"), &whole, &got);
    }
}
