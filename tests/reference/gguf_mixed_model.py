#!/usr/bin/env python3
"""A tiny llama GGUF whose linear weights use every ggml block type vktune keeps on the device, for
the model test that --quant gguf (the blocks dequantized in the matmul) gives the logits, loss and
input gradient of the dequantize-on-load path (tests/test_model_gguf_blocks.cpp).

  tests/data/gguf/mixed_blocks.gguf   llama, hidden 256 (K-quants need in_features % 256 == 0),
      intermediate 64, 1 layer, 4 heads of 64, 2 KV heads, vocab 128 (the llama3 golden batch's ids),
      tied embeddings (F16), norms F32; attn_q Q4_K, attn_k Q5_K, attn_v Q6_K (as in Q4_K_M),
      attn_output Q5_0, ffn_gate Q4_0, ffn_up Q5_1, ffn_down Q4_1 (Q8_0: the q8_0 golden files).
      The blocks are random (codes uniform, fp16 scales sized so weights stay ~0.05): the test
      compares two vktune paths over the same blocks, not a trained model.

Run: /work/venv/bin/python tests/reference/gguf_mixed_model.py [--verify]   (gguf==0.19.0, numpy)
"""
import os
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_golden  # noqa: E402  (write_or_verify)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "gguf")
HIDDEN, FFN, HEADS, KV_HEADS, VOCAB, LAYERS = 256, 64, 4, 2, 128, 1
BLOCK = {T.Q8_0: (32, 34), T.Q4_0: (32, 18), T.Q4_1: (32, 20), T.Q5_0: (32, 22), T.Q5_1: (32, 24),
         T.Q4_K: (256, 144), T.Q5_K: (256, 176), T.Q6_K: (256, 210)}
# fp16 fields per block: (offset, low, high) of a uniform draw; the codes make the rest.
SCALES = {
    T.Q8_0: [(0, -4e-4, 4e-4)], T.Q4_0: [(0, -6e-3, 6e-3)], T.Q5_0: [(0, -3e-3, 3e-3)],
    T.Q4_1: [(0, 0, 6e-3), (2, -0.05, 0)], T.Q5_1: [(0, 0, 3e-3), (2, -0.05, 0)],
    T.Q4_K: [(0, 0, 1e-4), (2, 0, 1e-4)], T.Q5_K: [(0, 0, 5e-5), (2, 0, 1e-4)], T.Q6_K: [(208, -1e-5, 1e-5)],
}
LAYER_TYPES = [
    {"attn_q": T.Q4_K, "attn_k": T.Q5_K, "attn_v": T.Q6_K, "attn_output": T.Q5_0, "ffn_gate": T.Q4_0,
     "ffn_up": T.Q5_1, "ffn_down": T.Q4_1},
]
SHAPES = {"attn_q": (HIDDEN, HIDDEN), "attn_k": (KV_HEADS * 64, HIDDEN), "attn_v": (KV_HEADS * 64, HIDDEN),
          "attn_output": (HIDDEN, HIDDEN), "ffn_gate": (FFN, HIDDEN), "ffn_up": (FFN, HIDDEN),
          "ffn_down": (HIDDEN, FFN)}


def random_blocks(rng, qtype, rows, cols):
    elems, size = BLOCK[qtype]
    blocks = rows * cols // elems
    raw = rng.integers(0, 256, size=(blocks, size), dtype=np.uint8)
    for offset, low, high in SCALES[qtype]:
        halves = rng.uniform(low, high, size=blocks).astype(np.float16)
        raw[:, offset:offset + 2] = halves.view(np.uint8).reshape(blocks, 2)
    return raw.reshape(rows, cols // elems * size)


def run(out_dir):
    rng = np.random.default_rng(20261205)
    path = os.path.join(out_dir, "mixed_blocks.gguf")
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(64)
    writer.add_vocab_size(VOCAB)
    writer.add_tensor("token_embd.weight", (rng.standard_normal((VOCAB, HIDDEN)) * 0.5).astype(np.float16))
    writer.add_tensor("output_norm.weight", (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32))
    for layer, types in enumerate(LAYER_TYPES):
        for norm in ("attn_norm", "ffn_norm"):
            writer.add_tensor("blk.%d.%s.weight" % (layer, norm), (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32))
        for name, qtype in types.items():
            rows, cols = SHAPES[name]
            writer.add_tensor("blk.%d.%s.weight" % (layer, name), random_blocks(rng, qtype, rows, cols), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    assert gguf.GGUFWriter is not None
    hf_golden.write_or_verify(run, OUT, "tests/data/gguf/mixed_blocks.gguf")
