#!/usr/bin/env python3
"""Golden RoPE scaling from transformers itself: for tests/test_model_rope_scaling.cpp.

For each case, a LlamaConfig is built with the case's rope_parameters and max_position_embeddings,
and transformers' own ROPE_INIT_FUNCTIONS[rope_type] (modeling_rope_utils.py) is called, with
seq_len as a tensor when given (as dynamic_frequency_update does at inference). Writes
tests/data/rope/rope_scaling_golden.json: per case the config, the inv_freq (fp32 bit patterns) and
the attention scaling (the factor cos/sin are multiplied by). Also the config.json transformers
saves for each case (save_pretrained's rope_parameters), so the C++ side can check it reads what
transformers writes.

The logits of a tiny Llama with yarn RoPE (and LoRA gradients, QLoRA, generation) are in
hf_golden.py's "llama_yarn" family.

Run: /work/venv/bin/python tests/reference/rope_scaling_golden.py  (--verify compares instead)
"""
import json
import os
import struct
import sys

import torch
import transformers
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from golden_io import write_or_verify_text

PINNED = {"torch": "2.15.0", "transformers": "5.23.0"}
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "rope", "rope_scaling_golden.json")

# name, head_dim, max_position_embeddings, rope_parameters, seq_len (None: the init call)
CASES = [
    ("linear_x4", 64, 1024, {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}, None),
    ("llama3_x8", 128, 131072, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 8192, "rope_theta": 500000.0}, None),
    ("llama3_small", 8, 1024, {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 256, "rope_theta": 10000.0}, None),
    ("yarn_x4", 64, 1024, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256,
                           "rope_theta": 10000.0}, None),
    ("yarn_betas", 128, 32768, {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 4096,
                                "beta_fast": 16.0, "beta_slow": 2.0, "rope_theta": 1000000.0}, None),
    ("yarn_attention", 64, 4096, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024,
                                  "attention_factor": 1.25, "truncate": False, "rope_theta": 10000.0}, None),
    ("yarn_mscale", 64, 16384, {"rope_type": "yarn", "factor": 16.0, "original_max_position_embeddings": 1024,
                                "mscale": 1.0, "mscale_all_dim": 0.707, "rope_theta": 10000.0}, None),
    ("yarn_small", 8, 256, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
                            "rope_theta": 10000.0}, None),
    ("dynamic_init", 64, 256, {"rope_type": "dynamic", "factor": 4.0, "rope_theta": 10000.0}, None),
    ("dynamic_within", 64, 256, {"rope_type": "dynamic", "factor": 4.0, "rope_theta": 10000.0}, 200),
    ("dynamic_1024", 64, 256, {"rope_type": "dynamic", "factor": 4.0, "rope_theta": 10000.0}, 1024),
    ("dynamic_777", 128, 4096, {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 500000.0}, 7777),
    ("dynamic_small", 8, 8, {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}, 13),
]


def bits(tensor):
    return [struct.unpack("<I", struct.pack("<f", float(v)))[0] for v in tensor.tolist()]


def case(name, head_dim, max_positions, rope, seq_len):
    config = transformers.LlamaConfig(hidden_size=head_dim * 4, num_attention_heads=4, head_dim=head_dim,
                                      max_position_embeddings=max_positions, rope_parameters=dict(rope))
    seq = None if seq_len is None else torch.tensor(seq_len, dtype=torch.int64)
    inv_freq, attention = ROPE_INIT_FUNCTIONS[rope["rope_type"]](config, "cpu", seq_len=seq)
    assert inv_freq.dtype == torch.float32
    saved = config.to_dict()
    return {"name": name, "head_dim": head_dim, "max_position_embeddings": max_positions, "rope_parameters": rope,
            "seq_len": seq_len, "inv_freq_bits": bits(inv_freq), "attention_scaling": float(attention),
            "saved_rope_parameters": saved["rope_parameters"]}


def main():
    found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__}
    if found != PINNED:
        sys.exit("rope_scaling_golden.py is pinned to %s, found %s" % (PINNED, found))
    torch.set_num_threads(1)
    document = {"versions": PINNED, "cases": [case(*c) for c in CASES]}
    text = json.dumps(document, indent=None, sort_keys=True) + "\n"
    write_or_verify_text(OUT, text, "--verify" in sys.argv)


if __name__ == "__main__":
    main()
