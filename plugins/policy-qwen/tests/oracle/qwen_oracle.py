"""Reference outputs from HF transformers for the qwen policy's integration tests.

    qwen_oracle.py make OUT           tiny tokenizer + Qwen2/Qwen3/YaRN models saved by transformers,
                                      with their logits, greedy generations, log-probs and gradients
    qwen_oracle.py check_saved A B    load both model dirs with transformers; same logits and tokens?
"""

import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM,
                          Qwen3Config, Qwen3ForCausalLM)

torch.set_num_threads(2)

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
           "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"]
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'"
          " + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
R1_TEMPLATE = "shared/reference/chat-templates/deepseek-r1-distill-qwen.tokenizer_config.json"


def find_upwards(relative):
    """`relative` under the nearest ancestor of this script that has it (the checkout's parent
    holds `shared/`, whether the checkout is the main one or a worktree further down)."""
    d = os.path.dirname(os.path.abspath(__file__))
    while True:
        if os.path.exists(os.path.join(d, relative)):
            return os.path.join(d, relative)
        parent = os.path.dirname(d)
        if parent == d:
            raise SystemExit(f"no {relative} above {__file__}")
        d = parent


R1_CONFIG = find_upwards(R1_TEMPLATE)
CORPUS = [
    "The quick brown fox jumps over the lazy dog. Long documents need long context.",
    "Question: what is the total revenue in 2023? Answer: the revenue grew by 12 percent to 4.2 billion.",
    "Reinforcement learning with verifiable rewards trains reasoning models on math and documents.",
    "def add(a, b):\n    return a + b\n# comments and code, numbers 0123456789, symbols ()[]{}<>=+-*/",
    "Unicode: café, naïve, 東京, Ελληνικά, emoji 🙂 and more text to learn merges from.",
]
PROMPTS = [
    "The",
    "The quick brown fox",
    "Question: what is the total revenue in 2023? Answer:",
    "Reinforcement learning with verifiable rewards trains reasoning models on math and documents. Long documents",
]


def make_tokenizer(out):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 20, trainer)
    path = os.path.join(out, "tokenizer.json")
    tok.save(path)
    return path


def randomize(model, seed):
    # HF's 0.02 init gives near-uniform logits; larger weights make the comparisons discriminating.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))


def model_configs(vocab, eos):
    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, eos_token_id=eos,
                  bos_token_id=None, pad_token_id=None)
    return {
        "qwen2": Qwen2Config(**common, max_position_embeddings=512, rope_theta=10000.0, tie_word_embeddings=False),
        "qwen3": Qwen3Config(**common, head_dim=32, max_position_embeddings=512, rope_theta=1000000.0,
                             tie_word_embeddings=True),
        "qwen2_yarn": Qwen2Config(**common, max_position_embeddings=256, rope_theta=10000.0, tie_word_embeddings=True,
                                  rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                "original_max_position_embeddings": 64}),
        "qwen2_linear": Qwen2Config(**common, max_position_embeddings=512, rope_theta=10000.0,
                                    tie_word_embeddings=False,
                                    rope_scaling={"rope_type": "linear", "factor": 2.0}),
    }


def logprob_batch(tok, vocab):
    seqs = []
    for i, p in enumerate(PROMPTS):
        prompt = tok.encode(p).ids
        response = tok.encode(CORPUS[i % len(CORPUS)]).ids[: 5 + 7 * i]
        seqs.append({"prompt": prompt, "response": response})
    return seqs


def seq_logprobs(model, seqs, temperature):
    out, ent = [], []
    for s in seqs:
        ids = torch.tensor([s["prompt"] + s["response"]])
        logits = model(ids).logits[0].float() / temperature
        lp = torch.log_softmax(logits, -1)
        p0 = len(s["prompt"])
        rows = lp[p0 - 1: p0 - 1 + len(s["response"])]
        out.append(rows.gather(1, torch.tensor(s["response"])[:, None])[:, 0])
        ent.append(-(rows.exp() * rows).sum(-1))
    return out, ent


def make(out):
    os.makedirs(out, exist_ok=True)
    tok_path = make_tokenizer(out)
    tok = Tokenizer.from_file(tok_path)
    vocab = tok.get_vocab_size()
    eos = tok.token_to_id("<|im_end|>")
    tok_config = {"tokenizer_class": "PreTrainedTokenizerFast", "chat_template": CHATML, "eos_token": "<|im_end|>",
                  "pad_token": "<|endoftext|>", "bos_token": None, "model_max_length": 512}
    prompts = [tok.encode(p).ids for p in PROMPTS]
    seqs = logprob_batch(tok, vocab)
    expected = {"prompts": prompts, "logprob_batch": seqs, "eos": eos, "models": {}}
    for i, (name, config) in enumerate(model_configs(vocab, eos).items()):
        torch.manual_seed(i)
        cls = Qwen3ForCausalLM if config.model_type == "qwen3" else Qwen2ForCausalLM
        model = cls(config).float().eval()
        randomize(model, 100 + i)
        d = os.path.join(out, name)
        model.save_pretrained(d)
        shutil.copy(tok_path, os.path.join(d, "tokenizer.json"))
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(tok_config, f)
        tensors = {}
        info = {"greedy": []}
        with torch.no_grad():
            for j, p in enumerate(prompts):
                tensors[f"logits.{j}"] = model(torch.tensor([p])).logits[0].contiguous()
                gen = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                                     do_sample=False, max_new_tokens=32, eos_token_id=eos, pad_token_id=eos,
                                     output_logits=True, return_dict_in_generate=True)
                new = gen.sequences[0, len(p):].tolist()
                lps = [torch.log_softmax(l[0].float(), -1)[t].item() for l, t in zip(gen.logits, new)]
                info["greedy"].append({"tokens": new, "logprobs": lps})
            for temp in (1.0, 0.7):
                lps, ents = seq_logprobs(model, seqs, temp)
                for j, (lp, en) in enumerate(zip(lps, ents)):
                    tensors[f"logprobs.{temp}.{j}"] = lp.contiguous()
                    tensors[f"entropy.{temp}.{j}"] = en.contiguous()
        # Gradient of the summed log-probs (temperature 1) over the batch.
        model.zero_grad()
        lps, _ = seq_logprobs(model, seqs, 1.0)
        torch.stack([x.sum() for x in lps]).sum().backward()
        for pname, p in model.named_parameters():
            tensors[f"grad.{pname}"] = p.grad.detach().contiguous()
        save_file(tensors, os.path.join(d, "expected.safetensors"))
        expected["models"][name] = info
        if name == "qwen2":
            # The same weights, sharded, to exercise the index path of the loader.
            model.save_pretrained(os.path.join(out, "qwen2_sharded"), max_shard_size="100KB")
            shutil.copy(tok_path, os.path.join(out, "qwen2_sharded", "tokenizer.json"))
    expected["chat"] = chat_references(tok_path)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f)


def chat_references(tok_path):
    conversations = [
        [{"role": "user", "content": "What is 2+2?"}],
        [{"role": "system", "content": "You are a careful reader."},
         {"role": "user", "content": "Read the document.\n\nQuestion: who?"},
         {"role": "assistant", "content": "<think>\nLet me look.\n</think>\n\nThe author."},
         {"role": "user", "content": "And when? Answer with a year."}],
    ]
    r1 = json.load(open(R1_CONFIG))
    templates = {
        "chatml": (CHATML, None, "<|im_end|>"),
        "r1": (r1["chat_template"], r1["bos_token"]["content"], r1["eos_token"]["content"]),
    }
    refs = []
    for name, (template, bos, eos) in templates.items():
        tok = PreTrainedTokenizerFast(tokenizer_file=tok_path, bos_token=bos, eos_token=eos)
        for messages in conversations:
            for gen in (False, True):
                text = tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                               add_generation_prompt=gen)
                refs.append({"template": name, "template_text": template, "bos": bos, "eos": eos,
                             "messages": messages, "add_generation_prompt": gen, "text": text})
    return refs


def check_saved(saved, original):
    a = AutoModelForCausalLM.from_pretrained(saved, dtype=torch.float32).eval()
    b = AutoModelForCausalLM.from_pretrained(original, dtype=torch.float32).eval()
    tok_a = AutoTokenizer.from_pretrained(saved)
    text = "The quick brown fox"
    ids = tok_a(text)["input_ids"]
    with torch.no_grad():
        diff = (a(torch.tensor([ids])).logits - b(torch.tensor([ids])).logits).abs().max().item()
    same_tokens = ids == Tokenizer.from_file(os.path.join(original, "tokenizer.json")).encode(text).ids
    print(json.dumps({"max_abs_diff": diff, "same_tokens": same_tokens}))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    elif sys.argv[1] == "check_saved":
        check_saved(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
