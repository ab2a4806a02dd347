//! `longrl model bench-logprobs` with the policy's own options, for `xtask/bench/logprobs.py`:
//! forward + backward of the summed per-token log-probs, in-process (no plugin loading), printing
//! one JSON line with tokens/s and peak resident memory. One sequence of `--tokens` (1 prompt
//! token, the rest scored); or, with `--group G`, G rollouts of one `--prompt`-token prompt with
//! `--response`-token responses, scored in one call sharing the prompt (`--layout shared`) or one
//! rollout per call, each with its prompt (`--layout per-rollout`, gradients accumulated).
//!
//! ```sh
//! cargo run --release -p longrl-policy-qwen --example bench_logprobs -- \
//!     --model DIR --tokens 8192 [--chunk 1024] [--gradient-checkpointing] [--repeats 1]
//! cargo run --release -p longrl-policy-qwen --example bench_logprobs -- \
//!     --model DIR --group 8 --prompt 2048 --response 256 --layout shared
//! ```

use std::time::Instant;

use longrl_core::api::{LogprobOptions, Policy, Sequence};
use longrl_policy_qwen::{QwenPolicy, QwenPolicyConfig};
use tch::{Device, Kind};

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As the `longrl` binary does, so that both columns of the bench count live memory alike.
    longrl_core::memory::return_large_frees_to_os();
    let mut args = std::env::args().skip(1);
    let (mut model, mut tokens, mut chunk, mut checkpointing, mut repeats) = (None, 4096usize, 1024u32, false, 1usize);
    let (mut group, mut prompt_len, mut response_len, mut layout) = (0usize, 2048usize, 256usize, "shared".to_string());
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--model" => model = Some(value()?),
            "--tokens" => tokens = value()?.parse()?,
            "--group" => group = value()?.parse()?,
            "--prompt" => prompt_len = value()?.parse()?,
            "--response" => response_len = value()?.parse()?,
            "--layout" => layout = value()?,
            "--chunk" => chunk = value()?.parse()?,
            "--repeats" => repeats = value()?.parse()?,
            "--gradient-checkpointing" => checkpointing = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let config = QwenPolicyConfig {
        model: Some(model.ok_or("--model DIR is required")?.into()),
        dtype: "float32".into(),
        gradient_checkpointing: checkpointing,
        logprob_chunk_tokens: chunk,
        ..Default::default()
    };
    let mut policy = QwenPolicy::new(config, Device::Cpu)?;
    let vocab = policy.describe()?.vocab_size;
    let ids = |seed: u64, n: usize| -> Vec<u32> {
        (0..n as u64).map(|i| (((i + seed * 7919) * 2_654_435_761) % vocab) as u32).collect()
    };
    // Calls of one scoring pass: one sequence; the group in one call; or one call per rollout.
    let calls: Vec<Vec<Sequence>> = if group == 0 {
        let all = ids(0, tokens);
        vec![vec![Sequence { prompt: all[..1].to_vec(), response: all[1..].to_vec() }]]
    } else {
        let prompt = ids(0, prompt_len);
        let rollouts: Vec<Sequence> =
            (1..=group as u64).map(|r| Sequence { prompt: prompt.clone(), response: ids(r, response_len) }).collect();
        tokens = prompt_len + group * response_len;
        match layout.as_str() {
            "shared" => vec![rollouts],
            "per-rollout" => rollouts.into_iter().map(|s| vec![s]).collect(),
            other => return Err(format!("--layout {other}: shared or per-rollout").into()),
        }
    };
    let options = LogprobOptions { with_grad: true, chunk_tokens: chunk, ..Default::default() };
    let params = policy.parameters()?;
    let mut seconds = Vec::new();
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        for batch in &calls {
            let out = policy.logprobs(batch, &options)?;
            out.logprobs.f_mul(&out.mask)?.f_sum(Kind::Float)?.f_backward()?;
        }
        seconds.push(start.elapsed().as_secs_f64());
        for (_, p) in &params {
            let mut p = p.shallow_clone();
            p.zero_grad();
        }
    }
    let best = seconds.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "{}",
        serde_json::json!({
            "tokens": tokens,
            "group": group,
            "layout": layout,
            "gradient_checkpointing": checkpointing,
            "seconds": seconds,
            "tokens_per_second": tokens as f64 / best,
            "scored_tokens_per_second": calls.iter().flatten().map(|s| s.response.len()).sum::<usize>() as f64 / best,
            "peak_rss_bytes": peak_rss_bytes(),
        })
    );
    Ok(())
}
