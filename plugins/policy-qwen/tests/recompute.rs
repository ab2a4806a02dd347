//! Recompute-in-backward: activation checkpointing and chunked log-probs give the same values and
//! gradients as the plain autograd graph, errors inside a recomputation come back as `Err`, and the
//! chunked log-prob pass with gradients peaks at memory that does not grow with tokens x vocab.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use longrl_core::Error;
use longrl_core::api::{LogprobOutput, Sequence};
use longrl_policy_qwen::hf_config::{Arch, QwenConfig};
use longrl_policy_qwen::logprobs::{BatchLayout, Entropy, ScoreOptions, logprobs};
use longrl_policy_qwen::model::{Layout, QwenModel};
use longrl_policy_qwen::recompute::recompute;
use longrl_policy_qwen::weights::{Init, Vars, WeightSource};
use tch::{Device, Kind, Tensor};

/// Weights drawn from torch's generator: norms near 1, small biases, projections at 0.2.
struct Randn;

impl WeightSource for Randn {
    fn get(&mut self, _: &str, shape: &[i64], init: Init) -> longrl_core::Result<Tensor> {
        let t = Tensor::randn(shape, (Kind::Float, Device::Cpu));
        Ok(match init {
            Init::Ones => t * 0.1 + 1.0,
            Init::Zeros => t * 0.1,
            Init::Normal => t * 0.2,
        })
    }
}

/// A random float32 model on CPU; norms and biases random too, so every parameter matters.
fn tiny_model(arch: Arch, vocab: i64, hidden: i64, layers: i64, tie: bool, seed: i64) -> QwenModel {
    let config =
        QwenConfig::new_random(arch, vocab, hidden, layers, 4, 2, hidden * 2, 4096, 10_000.0, tie, None, None).unwrap();
    tch::manual_seed(seed);
    let model = QwenModel::new(config, Vars::new(Randn), Device::Cpu, Kind::Float).unwrap();
    for (_, p) in model.parameters() {
        let _ = p.set_requires_grad(true);
    }
    model
}

fn score(
    model: &QwenModel,
    batch: &[Sequence],
    with_grad: bool,
    entropy: bool,
    chunk: i64,
    temperature: f64,
    layout: BatchLayout,
) -> LogprobOutput {
    let entropy = if entropy { Entropy::WithGrad } else { Entropy::No };
    let options = ScoreOptions { with_grad, entropy, chunk_tokens: chunk, temperature, layout };
    logprobs(model, batch, &options).unwrap()
}

const LAYOUTS: [BatchLayout; 3] = [BatchLayout::Padded, BatchLayout::Packed, BatchLayout::Shared];

/// Three sequences of different lengths (so the batch is padded), one with an empty response.
fn batch(vocab: u32) -> Vec<Sequence> {
    let ids = |seed: u32, n: usize| -> Vec<u32> {
        (0..n as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed * 97)) % vocab).collect()
    };
    vec![
        Sequence { prompt: ids(1, 5), response: ids(2, 9) },
        Sequence { prompt: ids(3, 11), response: ids(4, 3) },
        Sequence { prompt: ids(5, 2), response: vec![] },
        Sequence { prompt: ids(6, 1), response: ids(7, 14) },
    ]
}

struct Pass {
    logprobs: Tensor,
    entropy: Tensor,
    grads: Vec<(String, Tensor)>,
}

/// Log-probs and entropy with gradients, then backward of a loss that weights both, and the
/// parameters' gradients (reset afterwards).
fn pass(model: &QwenModel, batch: &[Sequence], chunk: i64, temperature: f64, layout: BatchLayout) -> Pass {
    let out = score(model, batch, true, true, chunk, temperature, layout);
    let entropy = out.entropy.unwrap();
    let w = Tensor::arange(out.mask.numel() as i64, (Kind::Float, Device::Cpu)).view(out.mask.size().as_slice()).sin();
    let loss = (&out.logprobs * &out.mask * &w).sum(Kind::Float) + (&entropy * &out.mask * 0.3).sum(Kind::Float);
    loss.f_backward().unwrap();
    let mut grads = Vec::new();
    for (name, p) in model.parameters() {
        let g = p.grad();
        assert!(g.defined(), "{name} got no gradient");
        grads.push((name.clone(), g.copy()));
        let mut p = p.shallow_clone();
        p.zero_grad();
    }
    Pass { logprobs: out.logprobs.detach(), entropy: entropy.detach(), grads }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn max_abs(a: &Tensor) -> f64 {
    a.abs().max().double_value(&[])
}

fn assert_same(what: &str, a: &Pass, b: &Pass, tol: f64) {
    let d = max_diff(&a.logprobs, &b.logprobs);
    assert!(d <= tol, "{what}: logprobs differ by {d}");
    let d = max_diff(&a.entropy, &b.entropy);
    assert!(d <= tol, "{what}: entropy differs by {d}");
    for ((name, x), (_, y)) in a.grads.iter().zip(&b.grads) {
        let d = max_diff(x, y);
        let scale = max_abs(x).max(1.0);
        assert!(d <= tol * scale, "{what}: gradient of {name} differs by {d} (max |g| {scale})");
    }
}

/// The plain graph: every position's logits at once, log-softmax, gather; no chunks, no recompute.
fn reference(model: &QwenModel, batch: &[Sequence], temperature: f64) -> Pass {
    let b = batch.len() as i64;
    let max_resp = batch.iter().map(|s| s.response.len()).max().unwrap() as i64;
    let (mut lps, mut ents) = (Vec::new(), Vec::new());
    let mut loss = Tensor::zeros([], (Kind::Float, Device::Cpu));
    let total = (b * max_resp) as usize;
    for (r, s) in batch.iter().enumerate() {
        let zeros =
            || -> Vec<Tensor> { (0..max_resp).map(|_| Tensor::zeros([], (Kind::Float, Device::Cpu))).collect() };
        let (mut lp_row, mut ent_row) = (zeros(), zeros());
        if !s.response.is_empty() {
            let ids: Vec<i64> = s.prompt.iter().chain(&s.response).map(|&t| t as i64).collect();
            let t = ids.len() as i64;
            let input = Tensor::from_slice(&ids).view([1, t]);
            let positions = Tensor::arange(t, (Kind::Int64, Device::Cpu)).view([1, t]);
            let hidden = model.forward_hidden(&input, &positions, &Layout::Rows).unwrap();
            let log_probs = (model.logits(&hidden).unwrap() / temperature).log_softmax(-1, Kind::Float).squeeze_dim(0);
            for (j, &tok) in s.response.iter().enumerate() {
                let row = log_probs.get(s.prompt.len() as i64 + j as i64 - 1);
                lp_row[j] = row.get(tok as i64);
                ent_row[j] = -(row.exp() * &row).sum(Kind::Float);
            }
        }
        for j in 0..max_resp as usize {
            let k = r * max_resp as usize + j;
            let w = (k as f64).sin();
            if j < s.response.len() {
                loss = loss + &lp_row[j] * w + &ent_row[j] * 0.3;
            }
        }
        lps.extend(lp_row);
        ents.extend(ent_row);
    }
    assert_eq!(lps.len(), total);
    loss.backward();
    let mut grads = Vec::new();
    for (name, p) in model.parameters() {
        grads.push((name.clone(), p.grad().copy()));
        let mut p = p.shallow_clone();
        p.zero_grad();
    }
    Pass {
        logprobs: Tensor::stack(&lps, 0).view([b, max_resp]).detach(),
        entropy: Tensor::stack(&ents, 0).view([b, max_resp]).detach(),
        grads,
    }
}

#[test]
fn checkpointed_layers_give_the_same_gradients() {
    for (arch, tie) in [(Arch::Qwen2, false), (Arch::Qwen3, true)] {
        let mut model = tiny_model(arch, 61, 32, 3, tie, 7);
        let batch = batch(61);
        for layout in LAYOUTS {
            model.set_gradient_checkpointing(false);
            let plain = pass(&model, &batch, 4, 1.0, layout);
            model.set_gradient_checkpointing(true);
            let checkpointed = pass(&model, &batch, 4, 1.0, layout);
            assert_same(&format!("{arch:?} {layout:?} checkpointing"), &plain, &checkpointed, 1e-5);
        }
        // And again at another temperature, all in one chunk.
        model.set_gradient_checkpointing(false);
        let plain = pass(&model, &batch, 0, 0.7, BatchLayout::Shared);
        model.set_gradient_checkpointing(true);
        let checkpointed = pass(&model, &batch, 0, 0.7, BatchLayout::Shared);
        assert_same(&format!("{arch:?} checkpointing, T=0.7"), &plain, &checkpointed, 1e-5);
    }
}

#[test]
fn lean_elementwise_blocks_give_the_same_values_and_gradients() {
    for (arch, tie) in [(Arch::Qwen2, false), (Arch::Qwen3, true)] {
        let mut model = tiny_model(arch, 61, 32, 3, tie, 5);
        let batch = batch(61);
        model.set_lean_elementwise(false);
        let plain = pass(&model, &batch, 4, 1.0, BatchLayout::Shared);
        model.set_lean_elementwise(true);
        let lean = pass(&model, &batch, 4, 1.0, BatchLayout::Shared);
        assert_same(&format!("{arch:?} lean elementwise"), &plain, &lean, 1e-5);
    }
}

#[test]
fn chunked_logprobs_entropy_and_gradients_match_the_plain_graph() {
    let model = tiny_model(Arch::Qwen2, 61, 32, 2, false, 11);
    let batch = batch(61);
    for temperature in [1.0, 0.7] {
        let want = reference(&model, &batch, temperature);
        for layout in LAYOUTS {
            for chunk in [1, 3, 7, 64, 0] {
                let got = pass(&model, &batch, chunk, temperature, layout);
                assert_same(&format!("{layout:?} chunk {chunk}, T={temperature}"), &want, &got, 1e-5);
            }
        }
    }
    // Without gradients: the same values, and nothing requires a gradient.
    let out = score(&model, &batch, false, true, 3, 1.0, BatchLayout::Shared);
    assert!(!out.logprobs.requires_grad());
    let want = reference(&model, &batch, 1.0);
    assert!(max_diff(&out.logprobs, &want.logprobs) <= 1e-5);
    assert!(max_diff(&out.entropy.unwrap(), &want.entropy) <= 1e-5);
}

/// A recomputing node over `x` that fails (or panics) on its `fail_at`-th call.
fn flaky(x: &Tensor, fail_at: usize, panic: bool) -> longrl_core::Result<Tensor> {
    let calls = Arc::new(AtomicUsize::new(0));
    let out = recompute(&[x], &[], 1, move |inputs| {
        if calls.fetch_add(1, Ordering::SeqCst) + 1 == fail_at {
            if panic {
                panic!("injected panic");
            }
            return Err(Error::msg("injected failure"));
        }
        Ok(vec![inputs[0].f_mul(&inputs[0])?.f_sum(Kind::Float)?])
    })?;
    Ok(out.into_iter().next().unwrap())
}

#[test]
fn errors_inside_a_recomputation_are_errors_not_aborts() {
    let x = Tensor::randn([5], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    // Works, and gives the right gradient.
    flaky(&x, 0, false).unwrap().f_backward().unwrap();
    assert!(max_diff(&x.grad(), &(&x * 2.0)) < 1e-6);
    // Failing in the backward pass's recomputation: backward returns the error.
    for panic in [false, true] {
        let y = flaky(&x, 2, panic).unwrap();
        let err = y.f_backward().err().expect("backward should fail").to_string();
        let want = if panic { "injected panic" } else { "injected failure" };
        assert!(err.contains(want), "{err}");
    }
    // Failing in the forward: `recompute` returns the error.
    for panic in [false, true] {
        let err = flaky(&x, 1, panic).err().unwrap().to_string();
        assert!(err.contains("injected"), "{err}");
    }
    // Declaring the wrong number of outputs is an error too.
    let err = recompute(&[&x], &[], 2, |inputs| Ok(vec![inputs[0].shallow_clone()])).err().unwrap().to_string();
    assert!(err.contains("declared"), "{err}");
    // The process is still fine: a plain backward works.
    (&x * 3.0).sum(Kind::Float).backward();
}

#[test]
fn parameters_passed_to_recompute_get_their_gradients() {
    let w = Tensor::randn([3, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let x = Tensor::randn([2, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let wc = w.shallow_clone();
    let out = recompute(&[&x], &[&w], 2, move |i| {
        let y = i[0].f_matmul(&wc.f_tr()?)?;
        Ok(vec![y.f_tanh()?, y.f_sum(Kind::Float)?])
    })
    .unwrap();
    // Only the first output enters the loss: the second's gradient is undefined and skipped.
    (&out[0] * 2.0).sum(Kind::Float).backward();
    let (gx, gw) = (x.grad().copy(), w.grad().copy());
    let (mut x2, mut w2) = (x.detach().set_requires_grad(true), w.detach().set_requires_grad(true));
    (x2.matmul(&w2.tr()).tanh() * 2.0).sum(Kind::Float).backward();
    assert!(max_diff(&gx, &x2.grad()) < 1e-6);
    assert!(max_diff(&gw, &w2.grad()) < 1e-6);
    x2.zero_grad();
    w2.zero_grad();
}

// ---- peak memory of a forward + backward, measured in a child process ----

const PROBE_ENV: &str = "LONGRL_RECOMPUTE_MEMORY_PROBE";

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Run by `peak_memory_with_gradients_does_not_grow_with_tokens_times_vocab` in a fresh process:
/// resets the peak-RSS counter, runs log-probs + backward at `tokens` with `chunk`, prints how far
/// the peak rose above the resident size before the pass.
#[test]
#[ignore = "run by peak_memory_with_gradients_does_not_grow_with_tokens_times_vocab"]
fn memory_probe_child() {
    let Ok(spec) = std::env::var(PROBE_ENV) else {
        return;
    };
    let fields: Vec<&str> = spec.split(',').collect();
    let (tokens, chunk): (usize, u32) = (fields[0].parse().unwrap(), fields[1].parse().unwrap());
    tch::set_num_threads(1);
    // "lean" / "plain": a model whose saved activations dominate (small vocabulary, wide layers),
    // with the elementwise blocks recomputed or not; otherwise one whose logits dominate.
    let (vocab, model) = match fields.get(2) {
        Some(&mode) => {
            let mut model = tiny_model(Arch::Qwen2, 512, 256, 2, true, 3);
            model.set_lean_elementwise(mode == "lean");
            (512, model)
        }
        None => (32_000, tiny_model(Arch::Qwen2, 32_000, 32, 1, true, 3)),
    };
    let ids: Vec<u32> = (0..tokens as u32).map(|i| i.wrapping_mul(2_654_435_761) % vocab as u32).collect();
    let batch = [Sequence { prompt: ids[..1].to_vec(), response: ids[1..].to_vec() }];
    let run = |batch: &[Sequence]| score(&model, batch, true, false, chunk as i64, 1.0, BatchLayout::Shared);
    // Warm up libtorch's one-time allocations on a short pass.
    let warm = [Sequence { prompt: ids[..1].to_vec(), response: ids[1..8].to_vec() }];
    let out = run(&warm);
    (out.logprobs * out.mask).sum(Kind::Float).backward();
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_kb("VmRSS:");
    let out = run(&batch);
    (out.logprobs * out.mask).sum(Kind::Float).backward();
    let peak = status_kb("VmHWM:");
    println!("PEAK_RISE_KB={}", peak.saturating_sub(before));
}

fn probe(tokens: usize, chunk: u32) -> f64 {
    probe_spec(&format!("{tokens},{chunk}"))
}

fn probe_spec(spec: &str) -> f64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["memory_probe_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(PROBE_ENV, spec)
        // glibc raises its mmap threshold (up to 32 MiB) after big frees and then serves such
        // blocks from a heap it keeps: resident memory would count freed chunk buffers. A fixed
        // threshold returns every freed block over 64 KiB to the system, so the peak is live data.
        .env("MALLOC_MMAP_THRESHOLD_", "65536")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "probe failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // The test harness prints the line after its own "test memory_probe_child ... ".
    let kb: f64 = stdout
        .split("PEAK_RISE_KB=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no figure in: {stdout}"))
        .parse()
        .unwrap();
    kb * 1024.0
}

/// With gradients, going from 1K to 4K tokens at vocab 32000 adds 393 MB of `[tokens x vocab]`
/// float32 logits per copy. Chunked (256 tokens), the peak must rise by far less than one such copy;
/// the unchunked pass (chunk = all tokens) shows the measurement does see that growth.
#[test]
fn peak_memory_with_gradients_does_not_grow_with_tokens_times_vocab() {
    if !std::path::Path::new("/proc/self/clear_refs").exists() {
        eprintln!("skipped: no /proc/self/clear_refs to reset the peak-RSS counter");
        return;
    }
    let one_copy = ((4096 - 1024) * 32_000 * 4) as f64;
    let chunked = probe(4096, 256) - probe(1024, 256);
    let whole = probe(4096, 0) - probe(1024, 0);
    eprintln!(
        "peak rise 1K -> 4K tokens: chunked {:.0} MB, unchunked {:.0} MB (one [3K x 32000] f32 copy: {:.0} MB)",
        chunked / 1e6,
        whole / 1e6,
        one_copy / 1e6
    );
    assert!(whole > one_copy, "the measurement does not see the unchunked logits ({whole} bytes)");
    assert!(chunked < 0.1 * one_copy, "chunked peak grew by {chunked} bytes");
}

/// Norms and SwiGLU recomputed in backward keep less activation memory than the plain graph: of the
/// 21 `[tokens, hidden]`-sized tensors a layer of this shape keeps (intermediate = 2 x hidden), the
/// two norms' `x * rsqrt` and SwiGLU's `silu(gate)` (4 of them) go: 19% less.
#[test]
fn lean_elementwise_blocks_keep_less_activation_memory() {
    if !std::path::Path::new("/proc/self/clear_refs").exists() {
        eprintln!("skipped: no /proc/self/clear_refs to reset the peak-RSS counter");
        return;
    }
    let plain = probe_spec("2048,0,plain");
    let lean = probe_spec("2048,0,lean");
    eprintln!("peak rise at 2K tokens: plain {:.0} MB, lean {:.0} MB", plain / 1e6, lean / 1e6);
    assert!(lean < 0.88 * plain, "lean {lean} bytes against plain {plain}");
}
