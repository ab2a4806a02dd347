//! The cost of float32 master weights on the 50M Qwen2 benchmark shape (12 layers, hidden 512,
//! 8 heads / 2 KV heads, intermediate 1408, vocab 32000, tied), float32 against bfloat16 with
//! master weights, each in its own process (so peak resident memory is that run's own): the
//! optimizer alone (clip + AdamW step) and a whole SFT/RL-like step (log-probs forward and
//! backward, clip, step; the first of `--steps` is an untimed warm-up).
//!
//! ```sh
//! cargo run --release -p longrl-optim --example bench_step -- \
//!     [--tokens 256] [--batch 1] [--steps 2] [--optim-iters 10] [--threads 2]
//! ```
//! prints one JSON line per dtype and a table; `--dtype float32|bfloat16` runs one side only.

use std::process::Command;
use std::time::Instant;

use longrl_core::api::Sequence;
use longrl_optim::{AdamW, AdamWConfig};
use longrl_policy_qwen::hf_config::{Arch, QwenConfig};
use longrl_policy_qwen::logprobs::{BatchLayout, Entropy, ScoreOptions, logprobs};
use longrl_policy_qwen::model::QwenModel;
use longrl_policy_qwen::weights::{RandomSource, Vars};
use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};

type Error = Box<dyn std::error::Error>;

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

struct Args {
    dtype: Option<String>,
    tokens: usize,
    batch: usize,
    steps: usize,
    optim_iters: usize,
    threads: i32,
}

fn parse_args() -> Result<Args, Error> {
    let mut a = Args { dtype: None, tokens: 256, batch: 1, steps: 2, optim_iters: 10, threads: 2 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--dtype" => a.dtype = Some(value()?),
            "--tokens" => a.tokens = value()?.parse()?,
            "--batch" => a.batch = value()?.parse()?,
            "--steps" => a.steps = value()?.parse()?,
            "--optim-iters" => a.optim_iters = value()?.parse()?,
            "--threads" => a.threads = value()?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(a)
}

fn model(kind: Kind) -> Result<QwenModel, Error> {
    let config = QwenConfig::new_random(Arch::Qwen2, 32000, 512, 12, 8, 2, 1408, 32768, 1e6, true, None, None)?;
    // HF's initialisation (normal(0, 0.02), unit norms), seeded.
    let model = QwenModel::new(config, Vars::new(RandomSource::new(0, kind, Device::Cpu)?), Device::Cpu, kind)?;
    for (_, p) in model.parameters() {
        let _ = p.set_requires_grad(true);
    }
    Ok(model)
}

/// One process, one dtype: the optimizer alone (clip + step on synthetic gradients, median of
/// `optim_iters`), then full steps (log-probs forward and backward, clip, step; the first untimed).
fn run(dtype: &str, a: &Args) -> Result<Value, Error> {
    let kind = match dtype {
        "float32" => Kind::Float,
        "bfloat16" => Kind::BFloat16,
        other => return Err(format!("--dtype {other}: float32 or bfloat16").into()),
    };
    tch::set_num_threads(a.threads);
    let model = model(kind)?;
    let params: Vec<(String, Tensor)> =
        model.parameters().iter().map(|(n, p)| (n.clone(), p.shallow_clone())).collect();
    let mut opt =
        AdamW::new(params.iter().map(|(n, p)| (n.clone(), p.shallow_clone())).collect(), &AdamWConfig::default())?;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };

    // Gradients from one backward of a cheap loss, then only the optimizer is timed.
    let mut loss = Tensor::f_zeros([], (Kind::Float, Device::Cpu))?;
    for (_, p) in &params {
        loss = loss.f_add(&p.f_to_kind(Kind::Float)?.f_sin()?.f_sum(Kind::Float)?)?;
    }
    loss.f_backward()?;
    let mut optim_only = Vec::new();
    for i in 0..=a.optim_iters {
        let start = Instant::now();
        opt.clip_grad_norm(1.0)?;
        opt.step(1e-5)?;
        if i > 0 {
            optim_only.push(start.elapsed().as_secs_f64());
        }
    }

    let batch: Vec<Sequence> = (0..a.batch as u64)
        .map(|r| {
            let ids: Vec<u32> = (0..a.tokens as u64).map(|i| ((i * 2_654_435_761 + r * 97) % 32000) as u32).collect();
            Sequence { prompt: ids[..a.tokens / 4].to_vec(), response: ids[a.tokens / 4..].to_vec() }
        })
        .collect();
    let options = ScoreOptions {
        with_grad: true,
        entropy: Entropy::No,
        chunk_tokens: 1024,
        temperature: 1.0,
        layout: BatchLayout::Packed,
    };
    let (mut step_s, mut fwd_bwd_s) = (Vec::new(), Vec::new());
    for i in 0..a.steps {
        let start = Instant::now();
        opt.zero_grad()?;
        let out = logprobs(&model, &batch, &options)?;
        let loss =
            out.logprobs.f_to_kind(Kind::Float)?.f_mul(&out.mask.f_to_kind(Kind::Float)?)?.f_mean(Kind::Float)?;
        loss.f_neg()?.f_backward()?;
        let mid = Instant::now();
        opt.clip_grad_norm(1.0)?;
        opt.step(1e-5)?;
        if i > 0 || a.steps == 1 {
            step_s.push(start.elapsed().as_secs_f64());
            fwd_bwd_s.push((mid - start).as_secs_f64());
        }
    }
    let n: i64 = params.iter().map(|(_, p)| p.numel() as i64).sum();
    Ok(json!({
        "dtype": dtype,
        "threads": a.threads,
        "parameters": n,
        "optimizer_s": median(optim_only),
        "tokens": a.tokens * a.batch,
        "step_s": median(step_s),
        "forward_backward_s": median(fwd_bwd_s),
        "weight_bytes": n * kind.elt_size_in_bytes() as i64,
        "optimizer_state_bytes": opt.state_bytes(),
        "peak_rss_bytes": peak_rss_bytes(),
    }))
}

fn main() -> Result<(), Error> {
    longrl_core::memory::return_large_frees_to_os();
    let a = parse_args()?;
    if let Some(dtype) = &a.dtype {
        println!("{}", run(dtype, &a)?);
        return Ok(());
    }
    let mut rows = Vec::new();
    for dtype in ["float32", "bfloat16"] {
        let out =
            Command::new(std::env::current_exe()?).args(std::env::args().skip(1)).args(["--dtype", dtype]).output()?;
        if !out.status.success() {
            return Err(format!("{dtype} run failed: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        let line = String::from_utf8(out.stdout)?;
        println!("{}", line.trim());
        rows.push(serde_json::from_str::<Value>(line.trim())?);
    }
    let mib = |v: &Value| v.as_f64().unwrap_or(f64::NAN) / (1u64 << 20) as f64;
    println!(
        "\n{:<22} {:>9} {:>12} {:>11} {:>11} {:>12} {:>12}",
        "", "optim s", "step s", "fwd+bwd s", "weights MiB", "state MiB", "peak RSS MiB"
    );
    for r in &rows {
        println!(
            "{:<22} {:>9.4} {:>12.3} {:>11.3} {:>11.0} {:>12.0} {:>12.0}",
            if r["dtype"] == "float32" { "float32" } else { "bfloat16 + f32 master" },
            r["optimizer_s"].as_f64().unwrap_or(f64::NAN),
            r["step_s"].as_f64().unwrap_or(f64::NAN),
            r["forward_backward_s"].as_f64().unwrap_or(f64::NAN),
            mib(&r["weight_bytes"]),
            mib(&r["optimizer_state_bytes"]),
            mib(&r["peak_rss_bytes"]),
        );
    }
    Ok(())
}
