"""`cargo xtask bench generate`: `longrl generate` against transformers' `generate` on the same 50M
Qwen2-shaped model, 2 threads each, each run in its own process so peak memory is its own.

- table `batch`: prefill and decode tokens/s, batch 1 and 8 (the same prompt as 8 prompts),
  prompts of 512 and 2048 tokens, greedy.
- table `group`: G = 8 rollouts of one prompt (2048 and 8192 tokens), 32 new tokens each, sampled:
  the time of the whole generation and peak memory, against `generate(num_return_sequences=8)`,
  which prefills the prompt 8 times."""

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


HF_GROUP_CHILD = r"""
import json, sys, time, resource, torch
from transformers import AutoModelForCausalLM
torch.set_num_threads(int(sys.argv[1]))
model_dir, group, prompt_len, new = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
ids = torch.tensor([[(i * 2654435761) % 32000 for i in range(prompt_len)]])
kw = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, pad_token_id=0)
with torch.no_grad():
    model.generate(ids[:, :16], attention_mask=torch.ones(1, 16, dtype=torch.long), num_return_sequences=2,
                   max_new_tokens=4, min_new_tokens=4, **kw)  # warm-up
    torch.manual_seed(0)
    t = time.perf_counter()
    out = model.generate(ids, attention_mask=torch.ones_like(ids), num_return_sequences=group, max_new_tokens=new,
                         min_new_tokens=new, **kw)
    seconds = time.perf_counter() - t
print(json.dumps({"tokens_per_second": (out.shape[1] - prompt_len) * group / seconds, "seconds": seconds,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def ids_file(prompt_len):
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump([(i * 2654435761) % 32000 for i in range(prompt_len)], f)
    f.close()
    return f.name


def whole_generation_rate(run):
    seconds = run["prefill_seconds"] + run["decode_seconds"]
    run["tokens_per_second"] = sum(len(g["tokens"]) for g in run["generations"]) / seconds
    run["seconds"] = seconds


def group_table(args, model):
    """G rollouts of one prompt: whole-generation time (as generated tokens/s) and peak memory."""
    rows = []
    for prompt_len in map(int, args.group_prompts.split(",")):
        path = ids_file(prompt_len)
        hf = best_of(args.repeat, [sys.executable, "-c", HF_GROUP_CHILD, THREADS, model, str(args.group),
                                   str(prompt_len), str(args.group_new_tokens)])
        ours = best_of(args.repeat, [LONGRL, "--log-level", "warn", "--set", "device=cpu", "generate", "--model",
                                     model, "--prompt-ids", path, "--n", str(args.group), "--warmup", "1",
                                     "--max-new-tokens", str(args.group_new_tokens), "--temperature", "1",
                                     "--top-p", "1", "--top-k", "0", "--json", "--dtype", "float32"],
                       derive=whole_generation_rate)
        rows.append((prompt_len, hf, ours))
        print(f"done: group of {args.group}, prompt {prompt_len}", file=sys.stderr)
        os.unlink(path)
    print(f"\ngenerate, G = {args.group} rollouts of one prompt, 50M Qwen2-shaped model, float32, {THREADS} threads,"
          f" {args.group_new_tokens} new tokens each, sampled, best of {args.repeat} runs")
    print(f"{'prompt':>6} | {'generated tok/s (hf / ours / x)':>34} | {'peak mem (hf / ours / ratio)':>32}")
    for prompt_len, hf, ours in rows:
        r = (hf["tokens_per_second"], ours["tokens_per_second"])
        m = (hf["peak_rss_bytes"], ours["peak_rss_bytes"])
        ratio = f"{m[1] / m[0]:.2f}" if m[0] and m[1] else "-"
        print(f"{prompt_len:>6} | {r[0]:>10.1f} / {r[1]:>8.1f} / {r[1] / r[0]:>6.2f}x |"
              f" {gb(m[0]):>9} / {gb(m[1]):>9} / {ratio:>5}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--prompts", default="512,2048")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best rate is kept")
    ap.add_argument("--tables", default="batch,group", help="which tables: batch, group")
    ap.add_argument("--group", type=int, default=8, help="rollouts of the one prompt (group table)")
    ap.add_argument("--group-prompts", default="2048,8192")
    ap.add_argument("--group-new-tokens", type=int, default=32)
    args = ap.parse_args()
    model = ensure_model()
    if not os.path.exists(LONGRL):
        raise SystemExit(f"{LONGRL} is missing: cargo build --release -p longrl -p longrl-policy-qwen")
    tables = args.tables.split(",")
    if "batch" in tables:
        batch_table(args, model)
    if "group" in tables:
        group_table(args, model)


def batch_table(args, model):
    rows = []
    for prompt_len in map(int, args.prompts.split(",")):
        path = ids_file(prompt_len)
        for batch in map(int, args.batches.split(",")):
            hf = best_of(args.repeat, [sys.executable, "-c", HF_CHILD, THREADS, model, str(batch), str(prompt_len),
                           str(args.new_tokens)])
            ours = best_of(args.repeat, [LONGRL, "--log-level", "warn", "--set", "device=cpu", "generate", "--model", model,
                             "--prompt-ids", path, "--batch", str(batch), "--warmup", "1",
                             "--max-new-tokens", str(args.new_tokens), "--temperature", "0", "--json",
                             "--dtype", "float32"])
            rows.append((prompt_len, batch, hf, ours))
            print(f"done: prompt {prompt_len} batch {batch}", file=sys.stderr)
        os.unlink(path)
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
