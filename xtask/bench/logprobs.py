"""`cargo xtask bench logprobs`: forward+backward of per-token log-probs on the 50M model, 2 threads,
each run in its own process, best of --repeat runs.

- table `sequence`: one sequence of 4K, 8K and 16K tokens: `longrl model bench-logprobs` (chunked
  projection, each chunk's logits recomputed in backward) against transformers (full logits,
  log_softmax, gather, backward; sdpa attention unless --hf-attn eager). A third column runs the
  policy with `gradient_checkpointing = true` (the plugin's `bench_logprobs` example, built here if
  missing).
- table `group`: G = 8 rollouts of one prompt of 2K, 4K and 8K tokens with 256-token responses (a
  training step's log-prob + update pass): the policy with the prompt shared (one forward of it
  for the group), the policy one rollout at a time (each with its prompt), and transformers one
  rollout at a time (logits of the response positions only, `logits_to_keep`), gradients
  accumulated over the rollouts."""

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


HF_GROUP_CHILD = r"""
import json, sys, time, resource, torch
from transformers import AutoModelForCausalLM
torch.set_num_threads(int(sys.argv[1]))
model_dir, group, prompt_len, response_len = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).train()
ids = lambda seed, n: [((i + seed * 7919) * 2654435761) % 32000 for i in range(n)]
prompt = ids(0, prompt_len)
t = time.perf_counter()
for r in range(1, group + 1):
    seq = torch.tensor([prompt + ids(r, response_len)])
    logits = model(seq, logits_to_keep=response_len + 1).logits[:, :-1].float()
    lp = torch.log_softmax(logits, -1).gather(-1, seq[:, prompt_len:, None]).squeeze(-1)
    lp.sum().backward()
seconds = time.perf_counter() - t
print(json.dumps({"scored_tokens_per_second": group * response_len / seconds,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def group_table(args, model):
    rows = []
    for prompt_len in map(int, args.group_prompts.split(",")):
        common = [CKPT_BIN, "--model", model, "--group", str(args.group), "--prompt", str(prompt_len), "--response",
                  str(args.response), "--chunk", str(args.chunk)]
        hf = best_of(args.repeat, [sys.executable, "-c", HF_GROUP_CHILD, THREADS, model, str(args.group),
                                   str(prompt_len), str(args.response)])
        shared = best_of(args.repeat, common + ["--layout", "shared"])
        apart = best_of(args.repeat, common + ["--layout", "per-rollout"])
        shared_ckpt = best_of(args.repeat, common + ["--layout", "shared", "--gradient-checkpointing"])
        rows.append((prompt_len, hf, shared, apart, shared_ckpt))
        print(f"done: group prompt {prompt_len}", file=sys.stderr, flush=True)
    print(f"\nlog-probs forward+backward, G = {args.group} rollouts of one prompt, {args.response}-token responses,"
          f" 50M model, float32, {THREADS} threads, best of {args.repeat} runs; rates in scored tokens/s")
    print(f"{'prompt':>6} | {'hf / per-rollout / shared':>27} | {'shared vs hf / vs per-rollout':>30} |"
          f" {'peak mem hf / per-rollout / shared (ratio)':>44} | {'shared+ckpt tok/s, mem (ratio)':>30}")
    for prompt_len, hf, shared, apart, ckpt in rows:
        rate = lambda r: r["scored_tokens_per_second"]
        mem = lambda r: r["peak_rss_bytes"]
        print(f"{prompt_len:>6} | {rate(hf):>7.0f} / {rate(apart):>7.0f} / {rate(shared):>7.0f} |"
              f" {rate(shared) / rate(hf):>13.2f}x / {rate(shared) / rate(apart):>12.2f}x |"
              f" {gb(mem(hf)):>8} / {gb(mem(apart)):>8} / {gb(mem(shared)):>8} ({mem(shared) / mem(hf):.2f}) |"
              f" {rate(ckpt):>7.0f}, {gb(mem(ckpt)):>8} ({mem(ckpt) / mem(hf):.2f})")


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
    ap.add_argument("--tables", default="sequence,group", help="which tables: sequence, group")
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--group-prompts", default="2048,4096,8192")
    ap.add_argument("--response", type=int, default=256)
    args = ap.parse_args()
    if args.hf_max_tokens is None:
        args.hf_max_tokens = 4096 if args.hf_attn == "eager" else 8192
    model = ensure_model()
    if not os.path.exists(LONGRL):
        raise SystemExit(f"{LONGRL} is missing: cargo build --release -p longrl -p longrl-policy-qwen")
    tables = args.tables.split(",")
    if not os.path.exists(CKPT_BIN) and ("group" in tables or not args.no_checkpointing):
        profile = ["--release"] if os.path.basename(os.path.dirname(LONGRL)) == "release" else []
        subprocess.run(["cargo", "build", *profile, "-p", "longrl-policy-qwen", "--example", "bench_logprobs"],
                       cwd=ROOT, env=ENV, check=True)
    if "sequence" in tables:
        sequence_table(args, model)
    if "group" in tables:
        group_table(args, model)


def sequence_table(args, model):
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
