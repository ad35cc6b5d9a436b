#!/usr/bin/env python3
"""Golden RoPE inverse frequencies from torch, with the expressions of transformers'
modeling_rope_utils.py (_compute_default_rope_parameters, _compute_linear_scaling_rope_parameters,
_compute_llama3_parameters), for tests/test_model_io.cpp.

Writes tests/data/rope/rope_reference.json: for each case the torch fp32 results as uint32 bit
patterns: "default" (unscaled inv_freq) and "scaled" (after rope_scaling). The C++ test checks
rope_inv_freq against "scaled" (within 1 ulp: torch's CPU pow is SLEEF's 1-ulp powf) and
apply_rope_scaling(torch's own "default") against "scaled" bit for bit.
Run: /usr/bin/python3 tests/reference/rope_reference.py
"""
import json
import math
import os

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "rope")

CASES = [
    # name, theta, head_dim, rope_scaling
    ("tinyllama", 10000.0, 64, None),
    ("llama2_7b", 10000.0, 128, None),
    ("qwen2", 1000000.0, 64, None),
    ("qwen2_128", 1000000.0, 128, None),
    ("smollm_96", 10000.0, 96, None),
    ("llama3_8b", 500000.0, 128, None),
    ("llama31_8b", 500000.0, 128, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    ("llama32_1b", 500000.0, 64, {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    ("linear_2", 10000.0, 64, {"rope_type": "linear", "factor": 2.0}),
]


def default_inv_freq(base, dim):
    # _compute_default_rope_parameters
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def llama3(inv_freq, scaling):
    # _compute_llama3_parameters, verbatim in its arithmetic
    factor = scaling["factor"]
    low_freq_factor = scaling["low_freq_factor"]
    high_freq_factor = scaling["high_freq_factor"]
    old_context_len = scaling["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def bits(tensor):
    assert tensor.dtype == torch.float32
    return tensor.contiguous().view(torch.int32).tolist()


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = []
    for name, theta, dim, scaling in CASES:
        inv_freq = default_inv_freq(theta, dim)
        if scaling is None:
            scaled = inv_freq
        elif scaling["rope_type"] == "linear":
            scaled = inv_freq.clone()
            scaled /= scaling["factor"]
        else:
            scaled = llama3(inv_freq, scaling)
        cases.append({"name": name, "rope_theta": theta, "head_dim": dim, "rope_scaling": scaling,
                      "default_bits": [b & 0xffffffff for b in bits(inv_freq)],
                      "scaled_bits": [b & 0xffffffff for b in bits(scaled)]})
    with open(os.path.join(OUT, "rope_reference.json"), "w") as f:
        json.dump({"torch_version": torch.__version__, "cases": cases}, f)
        f.write("\n")
    print("wrote", len(cases), "cases with torch", torch.__version__)


if __name__ == "__main__":
    main()
