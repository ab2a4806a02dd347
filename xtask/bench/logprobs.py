"""`cargo xtask bench logprobs`: forward+backward of per-token log-probs over one sequence of 4K,
8K and 16K tokens on the 50M model: `longrl model bench-logprobs` (chunked projection) against
transformers eager (full logits, log_softmax, gather, backward), 2 threads, each in its own process."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from qwen_bench_common import LONGRL, THREADS, ensure_model, gb, run_json  # noqa: E402

HF_CHILD = r"""
import json, sys, time, resource, torch
from transformers import AutoModelForCausalLM
torch.set_num_threads(int(sys.argv[1]))
model_dir, n = sys.argv[2], int(sys.argv[3])
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").train()
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
    ap.add_argument("--hf-max-tokens", type=int, default=8192,
                    help="skip transformers above this length (16K needs ~21 GB there)")
    ap.add_argument("--chunk", type=int, default=1024)
    args = ap.parse_args()
    model = ensure_model()
    if not os.path.exists(LONGRL):
        raise SystemExit(f"{LONGRL} is missing: cargo build --release -p longrl -p longrl-policy-qwen")
    rows = []
    for n in map(int, args.tokens.split(",")):
        hf = None
        if n <= args.hf_max_tokens:
            hf = run_json([sys.executable, "-c", HF_CHILD, THREADS, model, str(n)])
        ours = run_json([LONGRL, "--log-level", "warn", "--set", "device=cpu", "model", "bench-logprobs",
                         "--model", model, "--tokens", str(n), "--chunk", str(args.chunk), "--dtype", "float32"])
        rows.append((n, hf, ours))
        print(f"done: {n} tokens: hf {hf}, ours {ours}", file=sys.stderr, flush=True)
    print(f"\nlog-probs forward+backward, 50M Qwen2-shaped model, float32, {THREADS} threads, chunk {args.chunk}")
    print(f"{'tokens':>6} | {'tok/s (hf / ours / x)':>26} | {'peak mem (hf / ours / ratio)':>30}")
    for n, hf, ours in rows:
        if hf:
            print(f"{n:>6} | {hf['tokens_per_second']:>7.0f} / {ours['tokens_per_second']:>7.0f} /"
                  f" {ours['tokens_per_second'] / hf['tokens_per_second']:>5.2f}x |"
                  f" {gb(hf['peak_rss_bytes']):>9} / {gb(ours['peak_rss_bytes']):>9} /"
                  f" {ours['peak_rss_bytes'] / hf['peak_rss_bytes']:>5.2f}")
        else:
            print(f"{n:>6} | {'-':>7} / {ours['tokens_per_second']:>7.0f} / {'-':>6} |"
                  f" {'-':>9} / {gb(ours['peak_rss_bytes']):>9} / {'-':>5}")


if __name__ == "__main__":
    main()
