#!/usr/bin/python3
"""bitsandbytes NF4 with double quantization, re-implemented in numpy as a test oracle.

What it reproduces: bitsandbytes.functional.quantize_4bit(A, blocksize=64, quant_type="nf4",
compress_statistics=True) on an fp32 tensor, and dequantize_4bit of the result, following the
published algorithm (bitsandbytes functional.py and the CUDA kernels in csrc/kernels.cu):

  quantize_4bit      blocks of 64 consecutive elements (the last one padded with zeros);
                     absmax = max |x|; each x is multiplied by the fp32 reciprocal 1/absmax and
                     mapped with dQuantizeNF4, a comparison tree over 15 fp32 thresholds with
                     strict '>'; two codes per byte, the first element in the high nibble.
                     A zero block gives 0 * inf = NaN, which falls through the tree to code 0.
  compress_statistics offset = absmax.mean(); quantize_blockwise(absmax - offset, blocksize=256)
                     with the signed dynamic map: per 256 values absmax2 = max |v|, v * (1/absmax2)
                     mapped by dQuantize (binary search from pivot 127 over 7 halving steps,
                     then the nearer neighbour by fp32 midpoint).
  dequantize_4bit    absmax = map[code] * absmax2 + offset; value = NF4[code] * absmax.

Written independently of engine/quant (C++): the comparison tree and the binary search follow the
CUDA kernels' structure (nested ifs, lower/upper pivots), the map is built from numpy fp32 as
create_dynamic_map describes, the mean is exact (fractions). The C++ test
(tests/test_kernels_quantize.cpp, "quantize_nf4: matches the bitsandbytes reference fixture")
compares engine/quant against the fixture bit for bit, so two implementations must agree.

Choices that bitsandbytes leaves to its environment (documented in engine/quant/quantize.hpp):
  * torch.linspace: bitsandbytes builds the dynamic map with torch.linspace(dtype=float32) on the
    CPU. This follows PyTorch 2.x's CPU kernel (step = (end-start)/(steps-1) in fp32; the first
    half counts up from start, the second half down from end, products rounded to fp32). Other
    torch builds differ in the last ulp of a few entries (the local torch is reported below).
  * absmax.mean(): the offset is the fp32 value nearest to the exact mean; torch's own reduction
    can land one ulp away (reported below).
  * dQuantizeNF4's thresholds are fp32 `f` literals: each decimal is rounded once to fp32
    (f32_literal); four of them are exact fp32 ties as doubles, so float32(float(text)) would be
    one ulp off.
  * 1/absmax: correctly rounded; bitsandbytes' CUDA build uses --use_fast_math (approximate
    reciprocal), which can differ for values within an ulp of a threshold.

Usage:
  /usr/bin/python3 tests/reference/nf4_bnb_reference.py            # writes tests/data/nf4_reference.bin
  /usr/bin/python3 tests/reference/nf4_bnb_reference.py --glsl     # prints the constants of shaders/quant.glsl

File format (little-endian), version 1:
  char[8]  magic "VKTNF4RF"
  uint32   version (1), tensor_count, nf4_entries (16), map_entries (256)
  float32  nf4_table[16], dynamic_map[256]
  per tensor:
    uint32  n, block_size (64), blocks = ceil(n/64), groups = ceil(blocks/256)
    float32 offset
    float32 input[n]
    uint8   codes[(n+1)//2]        (bitsandbytes' packed length)
    float32 absmax[blocks]         (before double quantization)
    uint8   absmax_codes[blocks]
    float32 absmax2[groups]
    float32 dequantized[n]         (dequantize_4bit of the double-quantized state)
"""
import argparse
import functools
import os
import struct
import sys
from fractions import Fraction

import numpy as np

f32 = np.float32

# ---- NF4 (bitsandbytes get_4bit_type("nf4")) ----
NF4 = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=np.float32)


@functools.lru_cache(maxsize=None)
def f32_literal(text):
    """The fp32 value of the C/CUDA literal `text`f: the decimal rounded directly to fp32 (nearest,
    ties to even). Going through a Python float first would round twice, and four of dQuantizeNF4's
    literals are doubles that sit exactly halfway between two fp32 values."""
    exact = Fraction(text)
    guess = f32(float(exact))
    candidates = [np.nextafter(guess, f32(-np.inf)), guess, np.nextafter(guess, f32(np.inf))]
    return min(candidates, key=lambda c: (abs(Fraction(float(c)) - exact), int(c.view(np.uint32)) % 2))


NF4_THRESHOLD_LITERALS = [  # dQuantizeNF4's literals, ascending
    "-0.8480964004993439", "-0.6106329262256622", "-0.4599952697753906", "-0.33967943489551544",
    "-0.23460740596055984", "-0.13791173323988914", "-0.045525018125772476", "0.03979014977812767",
    "0.1202552504837513", "0.2035212516784668", "0.2920137718319893", "0.3893125355243683",
    "0.5016634166240692", "0.6427869200706482", "0.8614784181118011"]


def quantize_nf4_value(x):
    """dQuantizeNF4's comparison tree; x is an np.float32 (possibly NaN); thresholds are fp32."""
    t = lambda text: f32_literal(text)  # noqa: E731  (the CUDA literals carry an f suffix)
    if x > t("0.03979014977812767"):
        if x > t("0.3893125355243683"):
            if x > t("0.6427869200706482"):
                return 0b1111 if x > t("0.8614784181118011") else 0b1110
            return 0b1101 if x > t("0.5016634166240692") else 0b1100
        if x > t("0.2035212516784668"):
            return 0b1011 if x > t("0.2920137718319893") else 0b1010
        return 0b1001 if x > t("0.1202552504837513") else 0b1000
    if x > t("-0.33967943489551544"):
        if x > t("-0.13791173323988914"):
            return 0b0111 if x > t("-0.045525018125772476") else 0b0110
        return 0b0101 if x > t("-0.23460740596055984") else 0b0100
    if x > t("-0.6106329262256622"):
        return 0b0011 if x > t("-0.4599952697753906") else 0b0010
    return 0b0001 if x > t("-0.8480964004993439") else 0b0000


# ---- the signed dynamic map (create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)) ----

def torch2_linspace_f32(start, end, steps):
    start, end = f32(start), f32(end)
    step = f32(f32(end - start) / f32(steps - 1))
    out = np.empty(steps, dtype=np.float32)
    for i in range(steps):
        if i < steps // 2:
            out[i] = f32(start + f32(step * f32(i)))
        else:
            out[i] = f32(end - f32(step * f32(steps - i - 1)))
    return out


def create_dynamic_map(linspace=torch2_linspace_f32):
    max_exponent_bits, total_bits, non_sign_bits = 7, 8, 7
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1  # 0 for these arguments
    assert additional_items == 0
    data = []
    for i in range(max_exponent_bits):
        fraction_items = 2 ** (i + non_sign_bits - max_exponent_bits) + 1
        boundaries = linspace(0.1, 1.0, fraction_items)
        means = ((boundaries[:-1] + boundaries[1:]).astype(np.float32) / f32(2.0)).astype(np.float32)
        scale = f32(10 ** (-(max_exponent_bits - 1) + i))  # python float times an fp32 tensor: fp32
        data += list((scale * means).astype(np.float32))
        data += list((-scale * means).astype(np.float32))
    data.append(f32(0.0))
    data.append(f32(1.0))
    assert len(data) == 2 ** total_bits
    return np.array(sorted(data), dtype=np.float32)


def quantize_dynamic_value(code, x):
    """dQuantize<STOCHASTIC=0> from csrc/kernels.cu: binary search with lower/upper pivots."""
    pivot, upper_pivot, lower_pivot = 127, 255, 0
    lower, upper = f32(-1.0), f32(1.0)
    val = code[pivot]
    i = 64
    while i > 0:
        if x > val:
            lower_pivot, lower = pivot, val
            pivot += i
        else:
            upper_pivot, upper = pivot, val
            pivot -= i
        val = code[pivot]
        i >>= 1
    if upper_pivot == 255:
        upper = code[upper_pivot]
    if lower_pivot == 0:
        lower = code[lower_pivot]
    if x > val:
        midpoint = f32(f32(upper + val) * f32(0.5))
        return upper_pivot if x > midpoint else pivot
    midpoint = f32(f32(lower + val) * f32(0.5))
    return lower_pivot if x < midpoint else pivot


def quantize_blockwise(values, code, blocksize):
    """quantize_blockwise (General8bit, fp32 input): returns (codes uint8, absmax fp32)."""
    n = len(values)
    blocks = (n + blocksize - 1) // blocksize
    codes = np.zeros(n, dtype=np.uint8)
    absmax = np.zeros(blocks, dtype=np.float32)
    for b in range(blocks):
        chunk = values[b * blocksize:(b + 1) * blocksize]
        absmax[b] = np.max(np.abs(chunk))
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = f32(f32(1.0) / absmax[b])
            for j, v in enumerate(chunk):
                codes[b * blocksize + j] = quantize_dynamic_value(code, f32(v * inv))
    return codes, absmax


def exact_mean_f32(values):
    """The fp32 value nearest to the exact mean (ties to even), via fractions."""
    exact = sum((Fraction(float(v)) for v in values), Fraction(0)) / len(values)
    guess = f32(float(exact))
    best = None
    for candidate in (np.nextafter(guess, f32(-np.inf)), guess, np.nextafter(guess, f32(np.inf))):
        distance = abs(Fraction(float(candidate)) - exact)
        if best is None or distance < best[0] or (distance == best[0] and int(candidate.view(np.uint32)) % 2 == 0):
            best = (distance, candidate)
    return f32(best[1])


def quantize_4bit_nf4_dq(a, dynamic_map, blocksize=64):
    n = len(a)
    blocks = (n + blocksize - 1) // blocksize
    padded = np.zeros(blocks * blocksize, dtype=np.float32)
    padded[:n] = a
    absmax = np.zeros(blocks, dtype=np.float32)
    nibbles = np.zeros(blocks * blocksize, dtype=np.uint8)
    for b in range(blocks):
        block = padded[b * blocksize:(b + 1) * blocksize]
        absmax[b] = np.max(np.abs(a[b * blocksize:min((b + 1) * blocksize, n)]))
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = f32(f32(1.0) / absmax[b])
            for j in range(blocksize):
                nibbles[b * blocksize + j] = quantize_nf4_value(f32(block[j] * inv))
    packed = ((nibbles[0::2] << 4) | nibbles[1::2]).astype(np.uint8)[:(n + 1) // 2]
    offset = exact_mean_f32(absmax)
    absmax_codes, absmax2 = quantize_blockwise((absmax - offset).astype(np.float32), dynamic_map, 256)
    return packed, absmax, offset, absmax_codes, absmax2


def dequantize_4bit_nf4_dq(packed, n, offset, absmax_codes, absmax2, dynamic_map, blocksize=64):
    absmax = np.array([f32(f32(dynamic_map[c] * absmax2[b // 256]) + offset) for b, c in enumerate(absmax_codes)],
                      dtype=np.float32)
    nibbles = np.empty(2 * len(packed), dtype=np.uint8)
    nibbles[0::2] = packed >> 4
    nibbles[1::2] = packed & 15
    out = np.array([f32(NF4[nibbles[i]] * absmax[i // blocksize]) for i in range(n)], dtype=np.float32)
    return out


# ---- test tensors ----

def special_tensor(rng):
    """257 blocks (two double-quant groups, the second with one block) minus 27 elements, with
    blocks that sit on codes, on thresholds, at zero, and at the extremes."""
    n = 257 * 64 - 27
    scales = (10.0 ** rng.uniform(-3, 0, size=257)).astype(np.float32)
    a = (rng.standard_normal(n).astype(np.float32) * np.repeat(scales, 64)[:n]).astype(np.float32)
    a[3 * 64:4 * 64] = 0.0  # a zero block
    block = np.zeros(64, dtype=np.float32)  # every NF4 value, absmax exactly 1
    block[:16] = NF4
    block[16:32] = NF4[::-1]
    a[5 * 64:6 * 64] = block
    thresholds = [f32_literal(t) for t in NF4_THRESHOLD_LITERALS]
    block = np.zeros(64, dtype=np.float32)  # thresholds and their upper neighbours, absmax 1
    block[0] = 1.0
    for k, t in enumerate(thresholds):
        block[1 + 2 * k] = t
        block[2 + 2 * k] = np.nextafter(t, f32(np.inf))
    block[31] = np.nextafter(thresholds[0], f32(-np.inf))
    a[7 * 64:8 * 64] = block
    a[9 * 64:10 * 64] = -np.abs(a[9 * 64:10 * 64])  # one sign only
    a[11 * 64] = 37.0  # an outlier block
    a[11 * 64 + 1] = -37.0
    return a


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--glsl", action="store_true", help="print the GLSL constants of shaders/quant.glsl")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data",
                                                      "nf4_reference.bin"))
    args = parser.parse_args()

    dynamic_map = create_dynamic_map()
    assert np.all(np.diff(dynamic_map) > 0), "the map is strictly increasing"

    if args.glsl:
        def hex_rows(values, per_row):
            words = [f"0x{int(v):08x}u" for v in np.asarray(values, dtype=np.float32).view(np.uint32)]
            return ",\n".join("    " + ", ".join(words[i:i + per_row]) for i in range(0, len(words), per_row))
        print("const uint NF4_TABLE_BITS[16] = uint[16](\n" + hex_rows(NF4, 4) + ");")
        thresholds = [f32_literal(t) for t in NF4_THRESHOLD_LITERALS]
        print("const uint NF4_THRESHOLD_BITS[15] = uint[15](\n" + hex_rows(thresholds, 4) + ");")
        print("const uint DYNAMIC_MAP_BITS[256] = uint[256](\n" + hex_rows(dynamic_map, 8) + ");")
        return

    try:  # how the local torch's own linspace/mean compare (information only)
        import torch
        def torch_linspace(s, e, steps):
            return torch.linspace(s, e, steps, dtype=torch.float32).numpy()
        local = create_dynamic_map(torch_linspace)
        print(f"torch {torch.__version__}: create_dynamic_map via torch.linspace differs from the torch 2.x "
              f"formula in {int(np.sum(local != dynamic_map))} of 256 entries (max "
              f"{int(np.max(np.abs(local.view(np.int32) - dynamic_map.view(np.int32))))} ulp)")
    except ImportError:
        torch = None

    rng = np.random.default_rng(20240611)
    tensors = [
        ("odd", (rng.standard_normal(64 * 3 + 10) * 0.02).astype(np.float32)),
        ("specials", special_tensor(rng)),
        ("rows", (rng.uniform(-1, 1, size=(33, 65)) * 10.0 ** rng.uniform(-3, 1, size=(33, 1)))
         .astype(np.float32).reshape(-1)),
    ]
    payload = bytearray()
    payload += b"VKTNF4RF" + struct.pack("<4I", 1, len(tensors), 16, 256)
    payload += NF4.astype("<f4").tobytes() + dynamic_map.astype("<f4").tobytes()
    for name, a in tensors:
        packed, absmax, offset, absmax_codes, absmax2 = quantize_4bit_nf4_dq(a, dynamic_map)
        dequantized = dequantize_4bit_nf4_dq(packed, len(a), offset, absmax_codes, absmax2, dynamic_map)
        blocks, groups = len(absmax), len(absmax2)
        payload += struct.pack("<4I", len(a), 64, blocks, groups) + struct.pack("<f", offset)
        payload += a.astype("<f4").tobytes() + packed.tobytes() + absmax.astype("<f4").tobytes()
        payload += absmax_codes.tobytes() + absmax2.astype("<f4").tobytes() + dequantized.astype("<f4").tobytes()
        error = np.abs(dequantized - a)
        note = ""
        if torch is not None:
            torch_mean = torch.from_numpy(absmax).mean().item()
            note = f", torch mean differs by {abs(int(f32(torch_mean).view(np.int32)) - int(offset.view(np.int32)))} ulp"
        print(f"{name}: n={len(a)} blocks={blocks} groups={groups} offset={offset!r} max|x-deq|={error.max():.3g}{note}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(payload)
    print(f"wrote {os.path.normpath(args.out)} ({len(payload)} bytes)")


if __name__ == "__main__":
    sys.exit(main())
