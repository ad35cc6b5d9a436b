#!/work/venv/bin/python
"""Golden trajectories of torch.amp.GradScaler (dynamic fp16 loss scaling) for tests/test_train_loss_scaler.cpp.

Pinned: torch 2.15.0 (CPU). Usage, from the repository root:
    /work/venv/bin/python tests/reference/grad_scaler_golden.py            # writes tests/data/grad_scaler.json
    /work/venv/bin/python tests/reference/grad_scaler_golden.py --verify   # fails unless the file is unchanged

The loop is HF Trainer's fp16 step (transformers 5.23 through accelerate): scale the loss, backward,
unscale_ the gradients, clip_grad_norm_, scaler.step (skipped when unscale_ found an Inf/NaN),
scaler.update, and the lr scheduler steps only when the optimizer step was not skipped
(`if not accelerator.optimizer_step_was_skipped: lr_scheduler.step()`; accelerate calls a step skipped
when the scale went down). AdamW's own step count advances only on applied steps.

Each step's loss is sum(p * c_t) for given c_t, so the scaled gradient is fp32(scale * c_t): a c_t
entry of 1e35 overflows to Inf at scale 2^16 while the loss stays finite; Inf and NaN entries make
both non-finite.

Cases:
  small_interval: growth_interval 3 (growth and the tracker reset on overflow show within 24 steps),
      AdamW + clipping + LambdaLR; every step's scale, skip, growth tracker, lr and parameters.
  defaults: torch's defaults (init 2^16, growth 2 every 2000 finite steps, backoff 0.5) over 4500
      steps with overflows at 1-based steps 3, 4, 2500 and 4499; the skipped steps, the scale
      after every change and the final scale and tracker (SGD, lr 0: only the scaler matters).
  ceiling: init 2^126 with growth_interval 1: growth would make the fp32 scale Inf, which torch
      refuses (the scale stays), then an overflow halves it.
"""
import json
import math
import os
import sys

import torch

assert torch.__version__.startswith("2.15."), torch.__version__
torch.manual_seed(0)
torch.set_num_threads(1)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "grad_scaler.json")
FORMAT = "vktune-grad-scaler-reference"
VERSION = 1
N = 5
BIG = 1e35  # finite in fp32; times 2^16 it is not


def short(value):
    """JSON has no Inf/NaN: spelled as strings; floats as their shortest round-tripping decimal."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(repr(float(value)))


def coefficients(step, overflow):
    """c_t for 1-based step `step`: smooth values, or an overflow of the kind given."""
    c = [0.3 * math.sin(0.7 * step + i) + 0.05 * i for i in range(N)]
    if overflow == "big":
        c[1] = BIG
    elif overflow == "inf":
        c[2] = float("inf")
    elif overflow == "nan":
        c[3] = float("nan")
    return c


def run(steps, overflows, init_scale, growth_interval, optimizer, record_all):
    p = torch.nn.Parameter(torch.tensor([0.5, -0.25, 0.125, 1.0, -1.5], dtype=torch.float32))
    initial = p.detach().clone()
    if optimizer == "adamw":
        opt = torch.optim.AdamW([p], lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    else:
        opt = torch.optim.SGD([p], lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0 / (1.0 + 0.5 * k))
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_factor=2.0, backoff_factor=0.5,
                                  growth_interval=growth_interval)
    records, skipped, changes = [], [], []
    for step in range(1, steps + 1):
        overflow = overflows.get(step)
        c = torch.tensor(coefficients(step, overflow), dtype=torch.float32)
        opt.zero_grad(set_to_none=True)
        loss = (p * c).sum()
        scale_used = scaler.get_scale()
        lr_used = opt.param_groups[0]["lr"]
        scaler.scale(loss).backward()
        scaled_grad = p.grad.detach().clone()
        scaler.unscale_(opt)
        norm = torch.nn.utils.clip_grad_norm_([p], max_norm=1.0)
        scaler.step(opt)
        scaler.update()
        was_skipped = scaler.get_scale() < scale_used
        if not was_skipped:
            sched.step()
        else:
            skipped.append(step)
        if scaler.get_scale() != scale_used:
            changes.append([step, short(scaler.get_scale())])
        if record_all:
            records.append({
                "step": step,
                "overflow": overflow or "",
                "scale": short(scale_used),
                "scaled_grad": [short(v) for v in scaled_grad.tolist()],
                "skipped": was_skipped,
                "growth_tracker": int(scaler._growth_tracker.item()),
                "lr": short(lr_used),
                "grad_norm": short(float(norm)),
                "param": [short(v) for v in p.detach().tolist()],
            })
    result = {
        "init_scale": short(init_scale),
        "growth_factor": 2.0,
        "backoff_factor": 0.5,
        "growth_interval": growth_interval,
        "steps": steps,
        "overflow_steps": {str(k): v for k, v in sorted(overflows.items())},
        "skipped_steps": skipped,
        "scale_changes": changes,
        "final_scale": short(scaler.get_scale()),
        "final_growth_tracker": int(scaler._growth_tracker.item()),
    }
    if record_all:
        result["initial_param"] = [short(v) for v in initial.tolist()]
        result["coefficients"] = [[short(v) for v in coefficients(s, overflows.get(s))] for s in range(1, steps + 1)]
        result["records"] = records
    if record_all and optimizer == "adamw":
        result["adamw"] = {"lr": 0.05, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01, "max_norm": 1.0,
                           "schedule": "lr * 1 / (1 + 0.5 * k), k = scheduler steps taken"}
    return result


def main():
    cases = {
        "small_interval": run(24, {4: "big", 9: "inf", 10: "big", 17: "nan"}, 65536.0, 3, "adamw", True),
        "defaults": run(4500, {3: "big", 4: "inf", 2500: "big", 4499: "nan"}, 65536.0, 2000, "sgd", False),
        "ceiling": run(6, {5: "big"}, 2.0 ** 126, 1, "sgd", True),
    }
    # Self-checks of the semantics the C++ scaler implements (fail loudly if torch changed them).
    d = cases["defaults"]
    assert d["skipped_steps"] == [3, 4, 2500, 4499], d["skipped_steps"]
    assert d["scale_changes"][0] == [3, 32768.0] and d["scale_changes"][1] == [4, 16384.0], d["scale_changes"]
    assert [2004, 32768.0] in d["scale_changes"], d["scale_changes"]  # 2000 finite steps after step 4
    ceiling = cases["ceiling"]["records"]
    assert ceiling[1]["scale"] == 2.0 ** 127 and ceiling[2]["scale"] == 2.0 ** 127, ceiling  # growth to Inf refused
    text = json.dumps({"format": FORMAT, "version": VERSION, "torch": torch.__version__, "cases": cases},
                      indent=1, sort_keys=True) + "\n"
    if "--verify" in sys.argv:
        with open(OUT) as f:
            if f.read() != text:
                sys.exit("grad_scaler.json differs from a fresh run")
        print("grad_scaler.json verified")
        return
    with open(OUT, "w") as f:
        f.write(text)
    print("wrote", OUT, len(text), "bytes")


if __name__ == "__main__":
    main()
