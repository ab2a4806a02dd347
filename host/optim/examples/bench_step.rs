//! The cost of float32 master weights: one SFT/RL-like training step (log-probs forward and
//! backward on a batch, clip, AdamW) of the 50M Qwen2 benchmark shape (12 layers, hidden 512,
//! 8 heads / 2 KV heads, intermediate 1408, vocab 32000, tied), in float32 and in bfloat16 with
//! master weights, each in its own process (so peak resident memory is that run's own).
//!
//! ```sh
//! cargo run --release -p longrl-optim --example bench_step -- [--tokens 512] [--batch 4] [--steps 4] [--threads 2]
//! ```
//! prints one JSON line per dtype and a table; `--dtype float32|bfloat16` runs one side only.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use longrl_core::api::{LogprobOptions, Sequence};
use longrl_optim::{AdamW, AdamWConfig};
use longrl_policy_qwen::hf_config::{Arch, QwenConfig};
use longrl_policy_qwen::logprobs::logprobs;
use longrl_policy_qwen::model::{QwenModel, parameter_shapes};
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
    threads: i32,
}

fn parse_args() -> Result<Args, Error> {
    let mut a = Args { dtype: None, tokens: 512, batch: 4, steps: 4, threads: 2 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--dtype" => a.dtype = Some(value()?),
            "--tokens" => a.tokens = value()?.parse()?,
            "--batch" => a.batch = value()?.parse()?,
            "--steps" => a.steps = value()?.parse()?,
            "--threads" => a.threads = value()?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(a)
}

fn model(kind: Kind) -> Result<QwenModel, Error> {
    let config = QwenConfig::new_random(Arch::Qwen2, 32000, 512, 12, 8, 2, 1408, 32768, 1e6, true, None, None)?;
    tch::manual_seed(0);
    let mut tensors = BTreeMap::new();
    for (name, shape) in parameter_shapes(&config) {
        let t = if name.ends_with("norm.weight") {
            Tensor::f_ones(shape.as_slice(), (kind, Device::Cpu))?
        } else {
            Tensor::f_randn(shape.as_slice(), (Kind::Float, Device::Cpu))?.f_mul_scalar(0.02)?.f_to_kind(kind)?
        };
        tensors.insert(name, t);
    }
    let model = QwenModel::from_tensors(config, tensors, Device::Cpu, kind)?;
    for (_, p) in model.parameters() {
        let _ = p.set_requires_grad(true);
    }
    Ok(model)
}

/// One process, one dtype: JSON with the median step, forward+backward and optimizer times.
fn run(dtype: &str, a: &Args) -> Result<Value, Error> {
    let kind = match dtype {
        "float32" => Kind::Float,
        "bfloat16" => Kind::BFloat16,
        other => return Err(format!("--dtype {other}: float32 or bfloat16").into()),
    };
    tch::set_num_threads(a.threads);
    let model = model(kind)?;
    let mut opt = AdamW::new(model.parameters().to_vec(), &AdamWConfig::default())?;
    let batch: Vec<Sequence> = (0..a.batch as u64)
        .map(|r| {
            let ids: Vec<u32> = (0..a.tokens as u64).map(|i| ((i * 2_654_435_761 + r * 97) % 32000) as u32).collect();
            Sequence { prompt: ids[..a.tokens / 4].to_vec(), response: ids[a.tokens / 4..].to_vec() }
        })
        .collect();
    let options = LogprobOptions { with_grad: true, entropy: false, chunk_tokens: 1024, temperature: 1.0 };
    let (mut step_s, mut fwd_bwd_s, mut optim_s) = (Vec::new(), Vec::new(), Vec::new());
    // One untimed warm-up step (allocations, oneDNN primitive caches).
    for i in 0..=a.steps {
        let start = Instant::now();
        opt.zero_grad()?;
        let out = logprobs(&model, &batch, &options, 1024)?;
        let loss =
            out.logprobs.f_to_kind(Kind::Float)?.f_mul(&out.mask.f_to_kind(Kind::Float)?)?.f_mean(Kind::Float)?;
        loss.f_neg()?.f_backward()?;
        let mid = Instant::now();
        opt.clip_grad_norm(1.0)?;
        opt.step(1e-5)?;
        let end = Instant::now();
        if i > 0 {
            step_s.push((end - start).as_secs_f64());
            fwd_bwd_s.push((mid - start).as_secs_f64());
            optim_s.push((end - mid).as_secs_f64());
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let params: i64 = model.parameters().iter().map(|(_, p)| p.numel() as i64).sum();
    Ok(json!({
        "dtype": dtype,
        "parameters": params,
        "tokens": a.tokens * a.batch,
        "step_s": median(&mut step_s),
        "forward_backward_s": median(&mut fwd_bwd_s),
        "optimizer_s": median(&mut optim_s),
        "weight_bytes": params * kind.elt_size_in_bytes() as i64,
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
        "", "step s", "fwd+bwd s", "optim s", "weights MiB", "state MiB", "peak RSS MiB"
    );
    for r in &rows {
        println!(
            "{:<22} {:>9.3} {:>12.3} {:>11.4} {:>11.0} {:>12.0} {:>12.0}",
            if r["dtype"] == "float32" { "float32" } else { "bfloat16 + f32 master" },
            r["step_s"].as_f64().unwrap_or(f64::NAN),
            r["forward_backward_s"].as_f64().unwrap_or(f64::NAN),
            r["optimizer_s"].as_f64().unwrap_or(f64::NAN),
            mib(&r["weight_bytes"]),
            mib(&r["optimizer_state_bytes"]),
            mib(&r["peak_rss_bytes"]),
        );
    }
    Ok(())
}
