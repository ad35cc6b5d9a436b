#!/usr/bin/env python3
"""Golden GGUF files written by the `gguf` package (llama.cpp's own Python writer and numpy
dequantizers), for vktune's GGUF reader and ggml block formats.

  tests/data/gguf/blocks.gguf    per ggml type T: "T.blocks" (random blocks with finite scales, as
                                 type T) and "T.expected" (F32: gguf.quants.dequantize of them);
                                 per quantizable type Q: "Q.source" (F32) and "Q.quantized" (type Q:
                                 gguf.quants.quantize of the source), for the exporter's quantizers.
  tests/data/gguf/metadata.gguf  one key of every metadata value type, arrays (also nested and
                                 empty-string elements), general.alignment 64, tensors of
                                 1 to 4 dimensions.

Run: /work/venv/bin/python tests/reference/gguf_golden.py   (needs gguf==0.19.0, numpy)
"""
import os
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V

assert gguf.__version__ if hasattr(gguf, "__version__") else True
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "gguf")
rng = np.random.default_rng(20261204)

# Byte offsets of the fp16 scale fields inside one block, per type (ggml-common.h's block_* structs).
SCALE_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def finite_f16(count):
    """Scales as a real quantizer leaves them: mostly 1e-4..1e-1, both signs, some zero and subnormal."""
    values = (rng.standard_normal(count) * 0.02).astype(np.float16)
    values[::7] = np.float16(0.0)
    values[3::11] = np.float16(6e-8)  # fp16 subnormal
    values[5::13] = -values[5::13]
    return values


def random_blocks(qtype, n_blocks):
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for offset in SCALE_FIELDS[qtype]:
        raw[:, offset:offset + 2] = finite_f16(n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return raw


def write_blocks():
    writer = gguf.GGUFWriter(os.path.join(OUT, "blocks.gguf"), "vktune-test")
    rows = 3
    for qtype in [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K]:
        block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        blocks_per_row = 4 if block_elems == 32 else 2
        raw = random_blocks(qtype, rows * blocks_per_row).reshape(rows, blocks_per_row * block_bytes)
        writer.add_tensor(f"{qtype.name}.blocks", raw, raw_shape=None, raw_dtype=qtype)
        expected = gguf.quants.dequantize(raw, qtype).astype(np.float32)
        assert expected.shape == (rows, blocks_per_row * block_elems)
        writer.add_tensor(f"{qtype.name}.expected", expected)
    # 16-bit floats: every class of value except NaN (inf, subnormals, signed zeros)
    f16 = rng.integers(0, 1 << 16, size=(2, 64), dtype=np.uint16)
    f16[(f16 & 0x7C00) == 0x7C00] &= 0xFC00  # NaN -> inf
    writer.add_tensor("F16.blocks", f16.view(np.float16))
    writer.add_tensor("F16.expected", f16.view(np.float16).astype(np.float32))
    bf16 = rng.integers(0, 1 << 16, size=(2, 64), dtype=np.uint16)
    bf16[(bf16 & 0x7F80) == 0x7F80] &= 0xFF80
    writer.add_tensor("BF16.blocks", bf16.view(np.uint8).reshape(2, 128), raw_dtype=T.BF16)
    writer.add_tensor("BF16.expected", gguf.quants.dequantize(bf16.view(np.uint8).reshape(2, 128), T.BF16))
    # Quantizers (what `vktune export --format gguf` writes): values like trained weights, plus
    # rows that hit the edge cases (all zero, one large outlier, exact ties at .5 after scaling).
    source = (rng.standard_normal((4, 256)) * 0.05).astype(np.float32)
    source[1] = 0.0
    source[2, 17] = 3.0
    source[3] = np.linspace(-1.0, 1.0, 256, dtype=np.float32)
    writer.add_tensor("source", source)
    for qtype in [T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.BF16]:
        quantized = gguf.quants.quantize(source, qtype)
        writer.add_tensor(f"{qtype.name}.quantized", quantized, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_metadata():
    writer = gguf.GGUFWriter(os.path.join(OUT, "metadata.gguf"), "llama")
    writer.data_alignment = 64
    writer.add_uint32("general.alignment", 64)
    writer.add_uint8("test.u8", 200)
    writer.add_int8("test.i8", -100)
    writer.add_uint16("test.u16", 60000)
    writer.add_int16("test.i16", -30000)
    writer.add_uint32("test.u32", 4000000000)
    writer.add_int32("test.i32", -2000000000)
    writer.add_float32("test.f32", 0.1)
    writer.add_uint64("test.u64", 18000000000000000000)
    writer.add_int64("test.i64", -9000000000000000000)
    writer.add_float64("test.f64", 0.1)
    writer.add_bool("test.bool", True)
    writer.add_string("test.string", "héllo, 世界 🙂")
    writer.add_array("test.strings", ["a", "", "ünï", "<|im_start|>"])
    writer.add_key_value("test.i32s", [1, -2, 3], V.ARRAY, sub_type=V.INT32)
    writer.add_key_value("test.f32s", [0.5, -1.25], V.ARRAY, sub_type=V.FLOAT32)
    writer.add_key_value("test.u8s", [0, 255], V.ARRAY, sub_type=V.UINT8)
    writer.add_key_value("test.bools", [True, False], V.ARRAY, sub_type=V.BOOL)
    writer.add_key_value("test.nested", [[1, 2], [3]], V.ARRAY, sub_type=V.ARRAY)
    for dims in range(1, 5):
        shape = tuple([2, 3, 5, 7][:dims])[::-1]
        writer.add_tensor(f"t{dims}d", np.arange(np.prod(shape), dtype=np.float32).reshape(shape))
    writer.add_tensor("t_f16", np.arange(6, dtype=np.float16).reshape(2, 3))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    write_blocks()
    write_metadata()
    for name in ["blocks.gguf", "metadata.gguf"]:
        print(name, os.path.getsize(os.path.join(OUT, name)), "bytes")
