"""`cargo xtask bench generate`: prefill and decode tokens/s of `longrl generate` against
transformers' `generate` on the same 50M Qwen2-shaped model, 2 threads each, batch 1 and 8,
prompts of 512 and 2048 tokens; each run in its own process so peak memory is its own."""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from qwen_bench_common import LONGRL, THREADS, best_of, ensure_model, gb  # noqa: E402

HF_CHILD = r"""
import json, sys, time, resource, torch
from transformers import AutoModelForCausalLM, LogitsProcessor, LogitsProcessorList
torch.set_num_threads(int(sys.argv[1]))
model_dir, batch, prompt_len, new = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
ids = torch.tensor([[(i * 2654435761) % 32000 for i in range(prompt_len)]] * batch)
mask = torch.ones_like(ids)

class FirstLogits(LogitsProcessor):
    # generate calls this once per forward, first right after the prefill forward: that moment
    # splits prefill from decode inside one generate call, as our side splits its own.
    def __init__(self):
        self.at = None
    def __call__(self, input_ids, scores):
        if self.at is None:
            self.at = time.perf_counter()
        return scores

kw = dict(attention_mask=mask, do_sample=False, max_new_tokens=new, min_new_tokens=new, pad_token_id=0)
with torch.no_grad():
    model.generate(ids[:, :16], **dict(kw, attention_mask=mask[:, :16], max_new_tokens=4, min_new_tokens=4))  # warm-up
    first = FirstLogits()
    t = time.perf_counter(); out = model.generate(ids, logits_processor=LogitsProcessorList([first]), **kw)
    end = time.perf_counter()
generated = (out.shape[1] - prompt_len) * batch
print(json.dumps({"prefill_tokens_per_second": batch * prompt_len / (first.at - t),
                  "decode_tokens_per_second": generated / (end - first.at),
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--prompts", default="512,2048")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best rate is kept")
    args = ap.parse_args()
    model = ensure_model()
    if not os.path.exists(LONGRL):
        raise SystemExit(f"{LONGRL} is missing: cargo build --release -p longrl -p longrl-policy-qwen")
    rows = []
    for prompt_len in map(int, args.prompts.split(",")):
        ids_file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump([(i * 2654435761) % 32000 for i in range(prompt_len)], ids_file)
        ids_file.close()
        for batch in map(int, args.batches.split(",")):
            hf = best_of(args.repeat, [sys.executable, "-c", HF_CHILD, THREADS, model, str(batch), str(prompt_len),
                           str(args.new_tokens)])
            ours = best_of(args.repeat, [LONGRL, "--log-level", "warn", "--set", "device=cpu", "generate", "--model", model,
                             "--prompt-ids", ids_file.name, "--batch", str(batch), "--warmup", "1",
                             "--max-new-tokens", str(args.new_tokens), "--temperature", "0", "--json",
                             "--dtype", "float32"])
            rows.append((prompt_len, batch, hf, ours))
            print(f"done: prompt {prompt_len} batch {batch}", file=sys.stderr)
        os.unlink(ids_file.name)
    print(f"\ngenerate, 50M Qwen2-shaped model, float32, {THREADS} threads, {args.new_tokens} new tokens,"
          f" best of {args.repeat} runs")
    print(f"{'prompt':>6} {'batch':>5} | {'prefill tok/s (hf / ours / x)':>32} | {'decode tok/s (hf / ours / x)':>30} |"
          f" {'peak mem (hf / ours)':>22}")
    for prompt_len, batch, hf, ours in rows:
        pf = (hf["prefill_tokens_per_second"], ours["prefill_tokens_per_second"])
        dc = (hf["decode_tokens_per_second"], ours["decode_tokens_per_second"])
        print(f"{prompt_len:>6} {batch:>5} | {pf[0]:>10.0f} / {pf[1]:>8.0f} / {pf[1] / pf[0]:>5.2f}x |"
              f" {dc[0]:>8.1f} / {dc[1]:>8.1f} / {dc[1] / dc[0]:>5.2f}x |"
              f" {gb(hf['peak_rss_bytes']):>9} / {gb(ours['peak_rss_bytes']):>9}")


if __name__ == "__main__":
    main()
