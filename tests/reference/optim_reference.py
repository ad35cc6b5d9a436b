#!/usr/bin/python3
"""Golden optimizer trajectories from PyTorch for tests/test_kernels_optimizer.cpp.

Runs torch.optim.AdamW and torch.optim.SGD (plain, momentum, nesterov) on a few fp32 tensors for
several steps with given gradients, a per-step learning rate (set on the param groups, as a
scheduler does) and torch.nn.utils.clip_grad_norm_, and writes every step's total norm and
parameters to tests/data/optim_reference.json.

Two param groups: tensors 0..2 use the base lr and weight decay; tensor 3 uses twice the lr and
no weight decay (vktune: lr_scale 2, decay_scale 0).

Usage: /usr/bin/python3 tests/reference/optim_reference.py   (writes the file next to tests/)
"""
import json
import os

import numpy
import torch

FORMAT = "vktune-optim-reference"
VERSION = 1
SIZES = [1, 7, 33, 67]
STEPS = 5
LEARNING_RATES = [0.01, 0.02, 0.03, 0.02, 0.01]
# Gradient magnitudes per step: with max_norm 1 some steps clip and others do not.
GRAD_SCALES = [0.2, 0.01, 0.1, 0.03, 0.5]

CASES = [
    dict(name="adamw_clip", optimizer="adamw", betas=[0.9, 0.999], eps=1e-8, weight_decay=0.1, max_norm=1.0),
    dict(name="adamw_noclip", optimizer="adamw", betas=[0.8, 0.99], eps=1e-6, weight_decay=0.01, max_norm=0.0),
    dict(name="sgd", optimizer="sgd", momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.05, max_norm=1.0),
    dict(name="sgd_momentum", optimizer="sgd", momentum=0.9, dampening=0.1, nesterov=False, weight_decay=0.01,
         max_norm=0.0),
    dict(name="sgd_nesterov", optimizer="sgd", momentum=0.8, dampening=0.0, nesterov=True, weight_decay=0.0,
         max_norm=0.5),
]


def short(value):
    """The shortest decimal that reads back (as a double, then rounded to fp32, as the C++ test
    reads it) to the same fp32 value: keeps the file small and exact."""
    text = numpy.format_float_positional(numpy.float32(value), unique=True, trim="-")
    parsed = float(text)
    assert numpy.float32(parsed) == numpy.float32(value), (value, text)
    return parsed


def floats(tensor):
    return [short(v) for v in tensor.detach().reshape(-1).tolist()]


def run_case(case, initial, grads):
    params = [torch.nn.Parameter(t.clone()) for t in initial]
    groups = [dict(params=params[:3]), dict(params=params[3:], weight_decay=0.0)]
    if case["optimizer"] == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=LEARNING_RATES[0], betas=tuple(case["betas"]), eps=case["eps"],
                                      weight_decay=case["weight_decay"])
    else:
        optimizer = torch.optim.SGD(groups, lr=LEARNING_RATES[0], momentum=case["momentum"],
                                    dampening=case["dampening"], nesterov=case["nesterov"],
                                    weight_decay=case["weight_decay"])
    norms, trajectory = [], []
    for step in range(STEPS):
        optimizer.param_groups[0]["lr"] = LEARNING_RATES[step]
        optimizer.param_groups[1]["lr"] = 2 * LEARNING_RATES[step]
        for param, grad in zip(params, grads[step]):
            param.grad = grad.clone()
        if case["max_norm"] > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, case["max_norm"])
        else:  # vktune still reports the norm when clipping is off
            norm = torch.norm(torch.stack([torch.norm(p.grad) for p in params]))
        norms.append(short(norm))
        optimizer.step()
        trajectory.append([floats(p) for p in params])
    return dict(case, grad_norms=norms, params=trajectory)


def main():
    torch.manual_seed(1234)
    initial = [torch.randn(n, dtype=torch.float32) for n in SIZES]
    grads = [[torch.randn(n, dtype=torch.float32) * GRAD_SCALES[s] for n in SIZES] for s in range(STEPS)]
    grads[1][2][5] = 0.0  # an exact zero gradient element at step 2: only the decayed moments move it
    result = dict(
        format=FORMAT,
        version=VERSION,
        torch=torch.__version__,
        sizes=SIZES,
        steps=STEPS,
        learning_rates=LEARNING_RATES,
        lr_scales=[1.0, 1.0, 1.0, 2.0],
        decay_scales=[1.0, 1.0, 1.0, 0.0],
        initial_params=[floats(t) for t in initial],
        grads=[[floats(g) for g in step] for step in grads],
        cases=[run_case(case, initial, grads) for case in CASES],
    )
    write_reference("optim_reference.json", result)


def write_reference(file_name, result):
    """Writes `result` as compact JSON to tests/data/FILE_NAME."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", file_name)
    with open(path, "w") as out:
        json.dump(result, out, separators=(",", ":"))
        out.write("\n")
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
