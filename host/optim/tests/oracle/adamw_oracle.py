"""torch.optim.AdamW + clip_grad_norm_ as the oracle of longrl-optim's AdamW.

Usage: adamw_oracle.py CASES.json OUT.json (a list of cases in, a list of results out; one process
for all, since importing torch is the slow part). CASE: {"groups": [{"lr_scale", "weight_decay", "params":
{name: initial float list}}], "betas", "eps", "lr", "max_norm", "grads": [per step {name: float
list}]}. Every parameter is float32 (the master weights' arithmetic); the single-tensor
implementation (`foreach=False, fused=False`) is the reference formula. OUT: {"params": {name:
final list}, "norms": [per step pre-clip norm]}.
"""

import json
import sys

import torch


def run(case):
    params, groups = {}, []
    for g in case["groups"]:
        tensors = []
        for name, values in g["params"].items():
            params[name] = torch.tensor(values, dtype=torch.float32, requires_grad=True)
            tensors.append(params[name])
        groups.append({"params": tensors, "lr": case["lr"] * g["lr_scale"], "weight_decay": g["weight_decay"]})
    opt = torch.optim.AdamW(groups, betas=tuple(case["betas"]), eps=case["eps"], foreach=False, fused=False)
    norms = []
    for grads in case["grads"]:
        for name, p in params.items():
            p.grad = torch.tensor(grads[name], dtype=torch.float32)
        norm = torch.nn.utils.clip_grad_norm_(list(params.values()), case["max_norm"], foreach=False)
        norms.append(norm.item())
        opt.step()
    return {"params": {n: p.detach().flatten().tolist() for n, p in params.items()}, "norms": norms}


if __name__ == "__main__":
    cases = json.load(open(sys.argv[1]))
    json.dump([run(case) for case in cases], open(sys.argv[2], "w"))
