"""bitsandbytes' NF4 4-bit quantization with double quantization ("compress_statistics"), in numpy.

Written from bitsandbytes' algorithm (functional.quantize_4bit / quantize_blockwise /
dequantize_4bit, the CUDA kernels kQuantizeBlockwise + dQuantizeNF4 and the pure-torch "default"
backend), as an independent check of the C++ quantizer. All arithmetic is float32, as there.

quantize_4bit(W, blocksize=64, quant_type="nf4", compress_statistics=True):
  x = W flattened row-major (float32); blocks of 64 consecutive elements (the last may be partial)
  absmax[b] = max |x| over block b                                        (float32, one per block)
  scaled    = clamp(x * (1 / absmax[b]), -1, 1)   with 1/absmax rounded to float32 first
  q         = index of the nearest NF4 code value: the number of midpoints (code[i]+code[i+1])/2
              (float32) strictly below `scaled` (a value exactly on a midpoint takes the lower code)
  packed    = uint8 [(n+1)//2, 1]: element 2i in the HIGH nibble, element 2i+1 in the low nibble
  double quantization of absmax:
    offset   = mean(absmax) (float32; we round the exact mean, torch may differ by an ulp)
    y        = absmax - offset                                           (float32)
    8-bit blockwise quantization of y with blocksize 256 and the signed dynamic map
    (create_dynamic_map(signed=True)): nested_absmax[c] = max |y| over block c,
    qabsmax = nearest code index of clamp(y * (1/nested_absmax[c]), -1, 1) (uint8)
dequantize:
  absmax' = dynamic_map[qabsmax] * nested_absmax[c] + offset               (float32, in that order)
  W'      = nf4_code[q] * absmax'[b]                                      (float32)
"""
import numpy as np

F32 = np.float32

# bitsandbytes.functional.get_4bit_type("nf4"): the 16 NF4 values (already normalised to [-1, 1]).
NF4_CODE = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
], dtype=F32)


def _linspace_f32(start, end, steps):
    """torch.linspace(start, end, steps, dtype=float32) as the CPU kernel of an AVX2 build computes it
    (bitsandbytes builds its dynamic map on the CPU with it). step = (end-start)/(steps-1) in float32;
    element i is start + i*step in the first half and end - (steps-1-i)*step in the second; but runs
    of 16 elements are produced as two 8-wide vectors base + k*step (k = 0..7, plain float32 ops) from
    base = the scalar formula at the vector's first index, and the scalar formula itself is compiled to a
    fused multiply-add (one rounding). Emulating this matches torch 1.13 bit for bit; the values differ
    from a naive linspace by at most an ulp, which only matters for exact reproduction of the map."""
    start, end = F32(start), F32(end)
    step = F32(F32(end - start) / F32(steps - 1))
    halfway = steps // 2

    def fused(a, b, c):  # round(a*b + c) once: the float64 product of two float32 values is exact
        return F32(np.float64(a) * np.float64(b) + np.float64(c))

    def scalar(i):
        return fused(step, F32(i), start) if i < halfway else fused(-step, F32(steps - i - 1), end)

    out = np.empty(steps, dtype=F32)
    i = 0
    while i <= steps - 16:
        for first in (i, i + 8):
            base = scalar(first)
            for k in range(8):
                out[first + k] = base + F32(k) * step
        i += 16
    for j in range(i, steps):
        out[j] = scalar(j)
    return out


def create_dynamic_map_signed():
    """bitsandbytes.functional.create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    256 sorted float32 values in [-0.99297, 1]; 0 appears once, 1.0 is the largest."""
    data = []
    max_exponent_bits, non_sign_bits = 7, 7
    for i in range(max_exponent_bits):
        fraction_items = 2 ** (i + non_sign_bits - max_exponent_bits) + 1
        boundaries = _linspace_f32(0.1, 1.0, fraction_items)
        means = (boundaries[:-1] + boundaries[1:]) / F32(2.0)
        scale = 10 ** (-(max_exponent_bits - 1) + i)
        data += (F32(scale) * means).astype(np.float64).tolist()
        data += (F32(-scale) * means).astype(np.float64).tolist()
    data += [0.0, 1.0]
    assert len(data) == 256
    return np.array(sorted(data), dtype=F32)


DYNAMIC_MAP = create_dynamic_map_signed()


def _midpoints(code):
    return ((code[:-1] + code[1:]) / F32(2.0)).astype(F32)


def _blockwise_quantize(x, code, blocksize, divide=False):
    """x: (n,) float32 -> (codes (n,) uint8, absmax (ceil(n/blocksize),) float32).
    divide=True normalises with x/absmax instead of x*(1/absmax) (bitsandbytes' default backend does
    that for a partial last block); the self-check asserts both give the same codes on our data."""
    n = x.size
    blocks = (n + blocksize - 1) // blocksize
    padded = np.zeros(blocks * blocksize, dtype=F32)
    padded[:n] = x
    padded = padded.reshape(blocks, blocksize)
    absmax = np.abs(padded).max(axis=1).astype(F32)
    safe = np.maximum(absmax, F32(1e-38))[:, None]
    scaled = (padded / safe) if divide else (padded * (F32(1.0) / safe))
    scaled = np.clip(scaled, F32(-1.0), F32(1.0)).astype(F32).reshape(-1)[:n]
    codes = np.searchsorted(_midpoints(code), scaled, side="left").astype(np.uint8)
    return codes, absmax, scaled


def boundary_distance(x, code, blocksize):
    """Smallest |scaled - midpoint| over all elements: how far the data is from a rounding tie."""
    _, _, scaled = _blockwise_quantize(x, code, blocksize)
    mids = _midpoints(code).astype(np.float64)
    s = scaled.astype(np.float64)
    idx = np.clip(np.searchsorted(mids, s), 1, mids.size - 1)
    return float(np.minimum(np.abs(s - mids[idx - 1]), np.abs(s - mids[idx])).min())


def quantize_nf4(weight, blocksize=64, nested_blocksize=256, divide=False):
    """weight: (out, in) float32. Returns a dict with bitsandbytes' serialized quant-state pieces."""
    x = np.asarray(weight, dtype=F32).reshape(-1)
    q, absmax, _ = _blockwise_quantize(x, NF4_CODE, blocksize, divide)
    if q.size % 2:
        q = np.concatenate([q, np.zeros(1, np.uint8)])
    packed = ((q[0::2] << 4) | q[1::2]).astype(np.uint8).reshape(-1, 1)
    offset = F32(absmax.astype(np.float64).mean())
    centred = (absmax - offset).astype(F32)
    qabsmax, nested_absmax, _ = _blockwise_quantize(centred, DYNAMIC_MAP, nested_blocksize, divide)
    return {
        "weight": packed,                 # (ceil(n/2), 1) uint8
        "absmax": qabsmax,                # (blocks,) uint8: indices into the dynamic map
        "quant_map": NF4_CODE.copy(),     # (16,) float32
        "nested_absmax": nested_absmax,   # (ceil(blocks/256),) float32
        "nested_quant_map": DYNAMIC_MAP.copy(),  # (256,) float32
        "offset": offset,                 # float32 scalar
        "shape": tuple(np.shape(weight)),
        "blocksize": blocksize,
        "nested_blocksize": nested_blocksize,
        "absmax_fp32": absmax,            # (blocks,) float32 before double quantization (not saved)
    }


def dequantize_nf4(state):
    """Inverse of quantize_nf4, exactly as bitsandbytes computes it (float32 result)."""
    shape = state["shape"]
    n = int(np.prod(shape))
    blocks = state["absmax"].size
    nested = state["nested_blocksize"]
    block_of = np.arange(blocks) // nested
    absmax = (state["nested_quant_map"][state["absmax"]] * state["nested_absmax"][block_of]).astype(F32)
    absmax = (absmax + state["offset"]).astype(F32)
    packed = state["weight"].reshape(-1)
    q = np.empty(packed.size * 2, dtype=np.uint8)
    q[0::2] = packed >> 4
    q[1::2] = packed & 0xF
    values = state["quant_map"][q[:n]]
    out = (values * absmax[np.arange(n) // state["blocksize"]]).astype(F32)
    return out.reshape(shape)
