#!/usr/bin/env python3
"""Writes tests/data/schedules.json: every HF learning-rate schedule's multiplier at every
scheduler step, computed with the formulas of transformers.optimization (written out here so
that no transformers install is needed). The C++ test compares engine/train/schedule.cpp to it.
Run: /usr/bin/python3 tests/reference/schedules_reference.py"""
import json
import math
import os

def warm(step, warmup):
    return float(step) / float(max(1, warmup))

def linear(step, w, total, **_):
    if step < w:
        return warm(step, w)
    return max(0.0, float(total - step) / float(max(1, total - w)))

def cosine(step, w, total, num_cycles=0.5, **_):
    if step < w:
        return warm(step, w)
    progress = float(step - w) / float(max(1, total - w))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))

def cosine_with_restarts(step, w, total, num_cycles=1, **_):
    if step < w:
        return warm(step, w)
    progress = float(step - w) / float(max(1, total - w))
    if progress >= 1.0:
        return 0.0
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((float(num_cycles) * progress) % 1.0))))

def polynomial(step, w, total, lr_init=1e-3, lr_end=1e-7, power=1.0, **_):
    if step < w:
        return warm(step, w)
    if step > total:
        return lr_end / lr_init
    decay = (lr_init - lr_end) * (1 - (step - w) / (total - w)) ** power + lr_end
    return decay / lr_init

def constant(step, w, total, **_):
    return 1.0

def constant_with_warmup(step, w, total, **_):
    if step < w:
        return float(step) / float(max(1.0, w))
    return 1.0

def inverse_sqrt(step, w, total, **_):
    timescale = w or 10_000
    if step < w:
        return warm(step, w)
    shift = timescale - w
    return 1.0 / math.sqrt((step + shift) / timescale)

def warmup_stable_decay(step, w, total, num_decay_steps=None, min_lr_ratio=0.0, num_cycles=0.5, **_):
    stable = total - w - num_decay_steps
    if step < w:
        return max(0.0, warm(step, w) * (1.0 - min_lr_ratio) + min_lr_ratio)
    if step < w + stable:
        return 1.0
    if step < w + stable + num_decay_steps:
        progress = float(step - w - stable) / float(max(1, num_decay_steps))
        factor = 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress))
        return max(0.0, factor * (1.0 - min_lr_ratio) + min_lr_ratio)
    return min_lr_ratio

cases = []
for name, fn, extra in [
    ("linear", linear, {}), ("cosine", cosine, {}), ("cosine_with_restarts", cosine_with_restarts, {"num_cycles": 3}),
    ("polynomial", polynomial, {"power": 2.0}), ("constant", constant, {}),
    ("constant_with_warmup", constant_with_warmup, {}), ("inverse_sqrt", inverse_sqrt, {}),
    ("warmup_stable_decay", warmup_stable_decay, {"num_decay_steps": 12, "min_lr_ratio": 0.1}),
]:
    for warmup, total in [(0, 30), (5, 50), (7, 23)]:
        values = [fn(step, warmup, total, **extra) for step in range(total + 3)]
        cases.append({"type": name, "warmup": warmup, "max_steps": total, "peak_lr": 1e-3, "kwargs": extra,
                      "multipliers": values})

path = os.path.join(os.path.dirname(__file__), "..", "data", "schedules.json")
with open(path, "w") as f:
    json.dump({"version": 1, "cases": cases}, f, indent=0)
print("wrote", path, len(cases), "cases")
