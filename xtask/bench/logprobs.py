"""`cargo xtask bench logprobs`: forward+backward of per-token log-probs over one sequence of 4K,
8K and 16K tokens on the 50M model: `longrl model bench-logprobs` (chunked projection, each chunk's
logits recomputed in backward) against transformers (full logits, log_softmax, gather, backward;
sdpa attention unless --hf-attn eager), 2 threads, each in its own process, best of --repeat runs. A third column runs the policy with
`gradient_checkpointing = true` (the plugin's `bench_logprobs` example, built here if missing)."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from qwen_bench_common import ENV, LONGRL, ROOT, THREADS, best_of, ensure_model, gb  # noqa: E402

import subprocess  # noqa: E402

# The plugin's example binary next to the release `longrl` (same profile directory).
CKPT_BIN = os.path.join(os.path.dirname(LONGRL), "examples", "bench_logprobs")

HF_CHILD = r"""
import json, sys, time, resource, torch
from transformers import AutoModelForCausalLM
torch.set_num_threads(int(sys.argv[1]))
model_dir, n, attn = sys.argv[2], int(sys.argv[3]), sys.argv[4]
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=attn).train()
ids = torch.tensor([[(i * 2654435761) % 32000 for i in range(n)]])
t = time.perf_counter()
logits = model(ids).logits.float()
lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
lp.sum().backward()
seconds = time.perf_counter() - t
print(json.dumps({"tokens_per_second": n / seconds, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", default="4096,8192,16384")
    ap.add_argument("--hf-max-tokens", type=int, default=None,
                    help="skip transformers above this length; default 4096 for eager, 8192 for sdpa (eager keeps"
                         " every layer's [heads, T, T] attention probabilities: 12 GB at 4K, ~30 GB at 8K)")
    ap.add_argument("--hf-attn", default="sdpa", choices=["eager", "sdpa"],
                    help="transformers' attention implementation (the issue's reference figures are sdpa)")
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=2, help="runs per measurement; the best rate is kept")
    ap.add_argument("--no-checkpointing", action="store_true", help="skip the gradient-checkpointing runs")
    args = ap.parse_args()
    if args.hf_max_tokens is None:
        args.hf_max_tokens = 4096 if args.hf_attn == "eager" else 8192
    model = ensure_model()
    if not os.path.exists(LONGRL):
        raise SystemExit(f"{LONGRL} is missing: cargo build --release -p longrl -p longrl-policy-qwen")
    if not args.no_checkpointing and not os.path.exists(CKPT_BIN):
        subprocess.run(["cargo", "build", "--release", "-p", "longrl-policy-qwen", "--example", "bench_logprobs"],
                       cwd=ROOT, env=ENV, check=True)
    rows = []
    for n in map(int, args.tokens.split(",")):
        hf = None
        if n <= args.hf_max_tokens:
            hf = best_of(args.repeat, [sys.executable, "-c", HF_CHILD, THREADS, model, str(n), args.hf_attn])
        ours = best_of(args.repeat, [LONGRL, "--log-level", "warn", "--set", "device=cpu", "model", "bench-logprobs",
                         "--model", model, "--tokens", str(n), "--chunk", str(args.chunk), "--dtype", "float32"])
        ckpt = None
        if not args.no_checkpointing:
            ckpt = best_of(args.repeat, [CKPT_BIN, "--model", model, "--tokens", str(n), "--chunk", str(args.chunk),
                             "--gradient-checkpointing"])
        rows.append((n, hf, ours, ckpt))
        print(f"done: {n} tokens: hf {hf}, ours {ours}, ours+ckpt {ckpt}", file=sys.stderr, flush=True)
    print(f"\nlog-probs forward+backward, 50M Qwen2-shaped model, float32, {THREADS} threads, chunk {args.chunk},"
          f" transformers {args.hf_attn}, best of {args.repeat} runs")
    print(f"{'tokens':>6} | {'tok/s (hf / ours / x)':>26} | {'peak mem (hf / ours / ratio)':>30} |"
          f" {'+checkpointing (tok/s / x / mem)':>33}")

    def num(r, fmt, unit=""):
        return "-" if r is None else format(r, fmt) + unit

    for n, hf, ours, ckpt in rows:
        h_tps = hf["tokens_per_second"] if hf else None
        h_mem = hf["peak_rss_bytes"] if hf else None
        line = (f"{n:>6} | {num(h_tps, '7.0f'):>7} / {ours['tokens_per_second']:>7.0f} /"
                f" {num(h_tps and ours['tokens_per_second'] / h_tps, '5.2f', 'x'):>6} |"
                f" {gb(h_mem):>9} / {gb(ours['peak_rss_bytes']):>9} /"
                f" {num(h_mem and ours['peak_rss_bytes'] / h_mem, '5.2f'):>5} |")
        if ckpt:
            line += (f" {ckpt['tokens_per_second']:>7.0f} / {num(h_tps and ckpt['tokens_per_second'] / h_tps, '5.2f', 'x'):>6}"
                     f" / {gb(ckpt['peak_rss_bytes']):>9}")
        print(line)


if __name__ == "__main__":
    main()
