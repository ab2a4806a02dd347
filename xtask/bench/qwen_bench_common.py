"""Shared by generate.py and logprobs.py: the 50M Qwen2-shaped benchmark model, and running
commands in subprocesses to read their peak memory."""

import json
import os
import resource
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# `cargo xtask bench` builds release; BENCH_LONGRL_BIN points elsewhere (e.g. target/debug/longrl, whose
# heavy lifting is the same libtorch) when a release build is not at hand.
LONGRL = os.environ.get("BENCH_LONGRL_BIN", os.path.join(ROOT, "target", "release", "longrl"))
MODEL_DIR = os.environ.get("BENCH_MODEL_DIR", "/tmp/longrl-bench-qwen2-50m")
THREADS = "2"
# LONGRL_* variables are config overrides for the binary: keep the caller's out of the runs.
ENV = {k: v for k, v in os.environ.items() if not k.startswith("LONGRL_")}
ENV.update(OMP_NUM_THREADS=THREADS, MKL_NUM_THREADS=THREADS)


def ensure_model():
    """12 layers, hidden 512, 8 heads / 2 kv heads, intermediate 1408, vocab 32000, tied: 50M parameters."""
    if os.path.exists(os.path.join(MODEL_DIR, "model.safetensors")):
        return MODEL_DIR
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Config, Qwen2ForCausalLM

    os.makedirs(MODEL_DIR, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["benchmark text for a tiny tokenizer"] * 10, trainer)
    tok.save(os.path.join(MODEL_DIR, "tokenizer.json"))
    with open(os.path.join(MODEL_DIR, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>",
                   "pad_token": "<|endoftext|>", "bos_token": None}, f)
    config = Qwen2Config(vocab_size=32000, hidden_size=512, intermediate_size=1408, num_hidden_layers=12,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=32768,
                         rope_theta=1e6, tie_word_embeddings=True, eos_token_id=2, bos_token_id=None)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).float()
    n = sum(p.numel() for p in model.parameters())
    print(f"benchmark model: {n / 1e6:.1f}M parameters -> {MODEL_DIR}", file=sys.stderr)
    model.save_pretrained(MODEL_DIR)
    return MODEL_DIR


def run_json(cmd):
    """Run a command printing one JSON object last; return it with the child's peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    text = proc.stdout.strip()
    start = text.rfind("\n{") + 1 if not text.startswith("{") else 0
    value = json.loads(text[start:])
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the max over all finished children: only trust it when it grew.
    value.setdefault("peak_rss_bytes", after * 1024 if after > before else None)
    return value


def gb(n):
    return "-" if n is None else f"{n / 1e9:.2f} GB"


def best_of(repeat, cmd, derive=None):
    """Run `cmd` `repeat` times (each its own process) and keep, for every rate (`*_per_second`),
    the best run's figure and, for memory, the largest peak: on a shared machine other work only
    ever slows a run down, so the best of a few is the steadiest estimate of what the code does.
    `derive(run)` adds figures computed from each run's own output before the best is taken."""
    runs = [run_json(cmd) for _ in range(repeat)]
    if derive is not None:
        for run in runs:
            derive(run)
    best = dict(runs[0])
    for key in best:
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        if key.endswith("_per_second") and values:
            best[key] = max(values)
        elif key == "peak_rss_bytes" and values:
            best[key] = max(values)
    best["runs"] = repeat
    return best
