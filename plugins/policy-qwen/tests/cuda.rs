//! The CUDA lane of the policy's tests: greedy generation equal on CPU and CUDA, the fused flash
//! kernels in use for prefill and decode (and their gradients right), on-device sampling
//! reproducible and independent of the batch around a row, and the peak memory of a G = 8 group.
//! Without a CUDA device each test prints a SKIPPED line on stderr (past the test harness's
//! capture, so it shows in `cargo test` output) and returns.

mod common;

use std::collections::BTreeMap;
use std::io::Write;

use longrl_core::Result;
use longrl_core::api::GenerationParams;
use longrl_policy_qwen::attention::{Kernel, KeyPart, attend, attend_with, kernel_for};
use longrl_policy_qwen::generate::{EngineOptions, RowSpec, generate, generate_rows};
use longrl_policy_qwen::hf_config::Arch;
use longrl_policy_qwen::model::QwenModel;
use longrl_policy_qwen::weights::{Init, Vars, WeightSource};
use tch::{Device, Kind, Tensor};

fn cuda(test: &str) -> Option<Device> {
    if tch::Cuda::is_available() {
        return Some(Device::Cuda(0));
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: no CUDA device (tch::Cuda::is_available() is false)");
    None
}

/// The weights of another model, by name, moved to `device` in `kind`.
struct CopyOf {
    tensors: BTreeMap<String, Tensor>,
    device: Device,
    kind: Kind,
}

impl WeightSource for CopyOf {
    fn get(&mut self, name: &str, _: &[i64], _: Init) -> Result<Tensor> {
        Ok(self.tensors[name].f_detach()?.f_to(self.device)?.f_to_kind(self.kind)?)
    }
}

fn moved(model: &QwenModel, device: Device, kind: Kind) -> QwenModel {
    let tensors = model.parameters().iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    QwenModel::new(model.config.clone(), Vars::new(CopyOf { tensors, device, kind }), device, kind).unwrap()
}

const VOCAB: u32 = 97;

#[test]
fn greedy_generation_is_equal_on_cpu_and_cuda() {
    let Some(device) = cuda("greedy_generation_is_equal_on_cpu_and_cuda") else { return };
    let dir = tempfile::tempdir().unwrap();
    let codec = common::codec(dir.path(), VOCAB as usize, &[]);
    let cpu = common::model(Arch::Qwen2, VOCAB as i64, 64, 2, false, 5, 0.25);
    let gpu = moved(&cpu, device, Kind::Float);
    let prompts = vec![common::ids(1, 37, VOCAB), common::ids(2, 5, VOCAB)];
    let params = GenerationParams { max_new_tokens: 24, temperature: 0.0, rollouts: 2, ..Default::default() };
    let options = EngineOptions { prefill_chunk: 16, ..EngineOptions::default() };
    let a = generate(&cpu, &codec, &prompts, &params, options).unwrap();
    let b = generate(&gpu, &codec, &prompts, &params, options).unwrap();
    for (i, (x, y)) in a.generations.iter().zip(&b.generations).enumerate() {
        assert_eq!(x.tokens, y.tokens, "output {i}");
        for (p, q) in x.logprobs.iter().zip(&y.logprobs) {
            assert!((p - q).abs() < 1e-3, "output {i}: log-prob {p} on CPU, {q} on CUDA");
        }
    }
}

#[test]
fn fused_flash_kernels_serve_prefill_and_decode_with_right_gradients() {
    let Some(device) = cuda("fused_flash_kernels_serve_prefill_and_decode_with_right_gradients") else { return };
    tch::manual_seed(0);
    let opts = (Kind::BFloat16, device);
    let (b, h, hkv, l, p, d) = (3, 8, 2, 33, 300, 64);
    let leaf = |shape: &[i64]| Tensor::randn(shape, opts).set_requires_grad(true);
    let q = leaf(&[b, h, l, d]);
    let (kp, vp) = (leaf(&[1, hkv, p, d]), leaf(&[1, hkv, p, d]));
    let (ks, vs) = (leaf(&[b, hkv, l, d]), leaf(&[b, hkv, l, d]));
    assert_eq!(kernel_for(&q), Kernel::CudaFlash, "bfloat16 on CUDA must use the flash kernel");
    let parts = [KeyPart::all(&kp, &vp), KeyPart::causal(&ks, &vs)];
    let fused = attend(&q, &parts, 0.125).unwrap();
    let math = attend_with(&q, &parts, 0.125, Some(Kernel::Math)).unwrap();
    let diff = (&fused - &math).to_kind(Kind::Float).abs().max().double_value(&[]);
    assert!(diff < 2e-2, "flash and math differ by {diff}");
    let w = Tensor::randn([b, h, l, d], opts);
    let inputs = [&q, &kp, &vp, &ks, &vs];
    let g1 = Tensor::run_backward(&[(&fused * &w).sum(Kind::Float)], &inputs, false, false);
    let g2 = Tensor::run_backward(&[(&math * &w).sum(Kind::Float)], &inputs, false, false);
    for (x, y) in g1.iter().zip(&g2) {
        let scale = y.to_kind(Kind::Float).abs().max().double_value(&[]).max(1.0);
        let diff = (x - y).to_kind(Kind::Float).abs().max().double_value(&[]);
        assert!(diff < 3e-2 * scale, "gradients differ by {diff} (scale {scale})");
    }
    // A bfloat16 generation runs its chunked prefill and decode steps through the same kernel.
    let dir = tempfile::tempdir().unwrap();
    let codec = common::codec(dir.path(), VOCAB as usize, &[]);
    let model = moved(&common::model(Arch::Qwen3, VOCAB as i64, 128, 2, true, 6, 0.1), device, Kind::BFloat16);
    let params = GenerationParams { max_new_tokens: 16, rollouts: 4, seed: 1, ..Default::default() };
    let options = EngineOptions { prefill_chunk: 64, ..EngineOptions::default() };
    let out = generate(&model, &codec, &[common::ids(3, 200, VOCAB)], &params, options).unwrap();
    assert_eq!(out.generations.len(), 4);
}

#[test]
fn sampling_on_cuda_is_reproducible_and_independent_of_the_batch() {
    let Some(device) = cuda("sampling_on_cuda_is_reproducible_and_independent_of_the_batch") else { return };
    let dir = tempfile::tempdir().unwrap();
    let codec = common::codec(dir.path(), VOCAB as usize, &[]);
    let model = moved(&common::model(Arch::Qwen2, VOCAB as i64, 64, 2, false, 7, 0.25), device, Kind::Float);
    let prompts = vec![common::ids(4, 12, VOCAB), common::ids(5, 30, VOCAB)];
    let params = GenerationParams {
        max_new_tokens: 20,
        temperature: 0.9,
        top_p: 0.9,
        top_k: 30,
        rollouts: 3,
        seed: 9,
        ..Default::default()
    };
    let a = generate(&model, &codec, &prompts, &params, EngineOptions::default()).unwrap();
    let b = generate(&model, &codec, &prompts, &params, EngineOptions::default()).unwrap();
    assert_eq!(a.generations, b.generations, "the same seeds give the same samples");
    let rows: Vec<RowSpec> = (3..6).map(|s| RowSpec { prompt: 0, seed: 9, stream: s }).collect();
    let alone = generate_rows(&model, &codec, &prompts[1..], &rows, &params, EngineOptions::default()).unwrap();
    for (x, y) in alone.generations.iter().zip(&a.generations[3..]) {
        assert_eq!(x.tokens, y.tokens, "a row's samples do not depend on the rows beside it");
    }
}

#[test]
fn a_group_of_eight_holds_its_prompt_once() {
    let Some(device) = cuda("a_group_of_eight_holds_its_prompt_once") else { return };
    let dir = tempfile::tempdir().unwrap();
    let vocab = 32_000u32;
    let codec = common::codec(dir.path(), vocab as usize, &[]);
    let cpu = common::model(Arch::Qwen2, vocab as i64, 512, 12, true, 8, 0.02);
    let model = moved(&cpu, device, Kind::BFloat16);
    drop(cpu);
    let prompt_len = 8192usize;
    let c = &model.config;
    let prompt_kv = 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * 2 * prompt_len as i64;
    let weights: i64 = model.parameters().iter().map(|(_, t)| t.numel() as i64 * 2).sum();
    let params = GenerationParams { max_new_tokens: 32, rollouts: 8, seed: 2, ..Default::default() };
    let prompt = common::ids(6, prompt_len, vocab);
    // Warm-up (kernels, allocator), then a measured generation.
    generate(&model, &codec, &[prompt[..64].to_vec()], &params, EngineOptions::default()).unwrap();
    longrl_policy_qwen::device::reset_peak(0).unwrap();
    let start = std::time::Instant::now();
    generate(&model, &codec, &[prompt], &params, EngineOptions::default()).unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let peak = longrl_policy_qwen::device::peak_bytes(0).unwrap() as i64;
    let _ = writeln!(
        std::io::stderr(),
        "G=8 group, 8K-token prompt, 32 new tokens, 50M model in bf16: peak {:.0} MB (weights {:.0} MB, one prompt's \
         KV {:.0} MB, the prompt repeated 8 times {:.0} MB), {seconds:.2} s",
        peak as f64 / 1e6,
        weights as f64 / 1e6,
        prompt_kv as f64 / 1e6,
        8.0 * prompt_kv as f64 / 1e6
    );
    assert!(peak - weights < 4 * prompt_kv, "peak {peak} B: the prompt's KV seems held more than once");
}
