#!/work/venv/bin/python
"""bitsandbytes' blockwise 8-bit Adam states: the quantization maps and golden data for adamw_8bit.

Pinned: torch 2.15.0, bitsandbytes 0.50.2 (CPU; its Adam8bit step and quantize_blockwise run there).
Writes
  engine/kernels/dynamic_maps.inc, shaders/dynamic_maps.glsl: create_dynamic_map(signed=True) (state1,
      exp_avg) and create_dynamic_map(signed=False) (state2, exp_avg_sq) as fp32 bits, and for each the
      255 thresholds of bnb's CPU quantizer. bnb 0.50.2 quantizes on the CPU through a 65536-entry table:
        v = clamp(x * (1 / absmax), -1, 1);  i = trunc(((v + 1) * 0.5) * 65535 + 0.5)   (each op fp32)
        code = lut[i],  lut[i] = #{k : mid_k < -1 + (2 i) / 65535},  mid_k = 0.5 * (map[k] + map[k+1])
      so code = #{k : threshold_k <= i} with threshold_k = min{i : mid_k < -1 + 2i/65535}; a block whose
      absmax is 0 gets code 0. Checked here against functional.quantize_blockwise on random data.
  tests/data/optim8/quantize.safetensors: inputs, codes and absmax from functional.quantize_blockwise
      (block 256) for both maps, with a short last block.
  tests/data/optim8/trajectory.safetensors: 20 steps of bnb.optim.AdamW(optim_bits=8) (what HF Trainer's
      --optim adamw_8bit builds; min_8bit_size 4096, so the 300-element tensor keeps fp32 states) on
      two tensors whose initial values and gradients are exact formulas (gradient() below, repeated in the
      C++ test), parameters and states saved after steps 0, 1, 2, 5, 10, 19, 20.
Usage: /work/venv/bin/python tests/reference/optim8_reference.py
"""
import os

import numpy
import torch
import bitsandbytes
import bitsandbytes.functional as F
from safetensors.torch import save_file

assert torch.__version__.startswith("2.15"), torch.__version__
assert bitsandbytes.__version__ == "0.50.2", bitsandbytes.__version__
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
f32 = numpy.float32
SAVED_STEPS = [0, 1, 2, 5, 10, 19, 20]
LR, BETAS, EPS, WEIGHT_DECAY = 0.01, (0.9, 0.999), 1e-8, 0.01
SIZES = {"big": (64, 64), "small": (12, 25)}  # 4096 elements: 8-bit states (16 blocks); 300: fp32 states


def thresholds(code):
    mids = (f32(0.5) * (code[:-1] + code[1:]).astype(f32)).astype(f32)
    i = numpy.arange(65536)
    val = (f32(-1.0) + (f32(2.0) * i.astype(f32)).astype(f32) / f32(65535)).astype(f32)
    lut = numpy.searchsorted(mids, val, side="left")
    return numpy.array([int(numpy.argmax(lut > k)) for k in range(255)], numpy.uint32)


def emulate_quantize(a, code, thr):
    out = numpy.zeros(a.size, numpy.uint8)
    absmax = []
    for b in range(0, a.size, 256):
        block = a[b:b + 256].astype(f32)
        m = f32(numpy.max(numpy.abs(block)))
        absmax.append(m)
        if m == 0:
            continue
        v = numpy.clip((block * f32(f32(1.0) / m)).astype(f32), f32(-1), f32(1))
        t = ((((v + f32(1)).astype(f32) * f32(0.5)).astype(f32) * f32(65535)).astype(f32) + f32(0.5)).astype(f32)
        out[b:b + block.size] = numpy.searchsorted(thr, numpy.trunc(t).astype(numpy.int64), side="right")
    return out, numpy.array(absmax, f32)


def gradient(size, step, scale_log2):
    """Exact in fp32 on both sides: small integers times a power of two."""
    i = numpy.arange(size, dtype=numpy.int64)
    k = (i * 7919 + step * 104729 + (i * i) % 613) % 2001 - 1000
    return (k.astype(f32) * f32(2.0 ** (-10 - scale_log2))).astype(f32)


def main():
    maps = {"signed": F.create_dynamic_map(signed=True).numpy().astype(f32),
            "unsigned": F.create_dynamic_map(signed=False).numpy().astype(f32)}
    thr = {name: thresholds(code) for name, code in maps.items()}
    tensors = {}
    generator = torch.Generator().manual_seed(15)
    for name, code in maps.items():
        for trial in range(4):
            n = 4096 + 1003
            x = torch.randn(n, generator=generator) * 10 ** (2 * torch.randn(n, generator=generator))
            if name == "unsigned":
                x = x.abs()
            x[256:512] = 0  # an all-zero block: absmax 0, codes 0
            q, state = F.quantize_blockwise(x, code=torch.from_numpy(code), blocksize=256)
            mine, absmax = emulate_quantize(x.numpy(), code, thr[name])
            assert (mine == q.numpy()).all() and (absmax == state.absmax.numpy()).all(), name
            if trial == 0:
                tensors[f"{name}.input"] = x
                tensors[f"{name}.codes"] = q
                tensors[f"{name}.absmax"] = state.absmax
    save_file(tensors, os.path.join(ROOT, "tests/data/optim8/quantize.safetensors"),
              metadata={"format": "vktune-optim8-quantize", "version": "1", "blocksize": "256"})

    params = {}
    for index, (name, shape) in enumerate(SIZES.items()):
        n = shape[0] * shape[1]
        params[name] = torch.nn.Parameter(torch.from_numpy(gradient(n, 1000 + index, 0).reshape(shape)))
    optimizer = bitsandbytes.optim.AdamW(list(params.values()), lr=LR, betas=BETAS, eps=EPS,
                                         weight_decay=WEIGHT_DECAY, optim_bits=8)
    out = {}

    def save(step):
        for name, p in params.items():
            out[f"{name}.param.{step}"] = p.detach().clone().reshape(-1)
            if step == 0:
                continue
            s = optimizer.state[p]
            if name == "big":
                out[f"{name}.m_codes.{step}"] = s["state1"].reshape(-1).clone()
                out[f"{name}.m_absmax.{step}"] = s["absmax1"].clone()
                out[f"{name}.v_codes.{step}"] = s["state2"].reshape(-1).clone()
                out[f"{name}.v_absmax.{step}"] = s["absmax2"].clone()
            else:
                assert s["state1"].dtype == torch.float32
                out[f"{name}.m.{step}"] = s["state1"].reshape(-1).clone()
                out[f"{name}.v.{step}"] = s["state2"].reshape(-1).clone()

    save(0)
    for step in range(1, 21):
        for index, (name, p) in enumerate(params.items()):
            p.grad = torch.from_numpy(gradient(p.numel(), step, index + step % 3).reshape(p.shape))
        optimizer.step()
        if step in SAVED_STEPS:
            save(step)
    assert optimizer.state[params["big"]]["state1"].dtype == torch.uint8
    save_file(out, os.path.join(ROOT, "tests/data/optim8/trajectory.safetensors"),
              metadata={"format": "vktune-optim8-trajectory", "version": "1", "lr": str(LR),
                        "beta1": str(BETAS[0]), "beta2": str(BETAS[1]), "eps": str(EPS),
                        "weight_decay": str(WEIGHT_DECAY)})

    def c_array(kind, name, values):
        body = ",".join(("\n  " if i % 8 == 0 else " ") + f"0x{v:08x}u" for i, v in enumerate(values))
        return f"{kind} {name}[{len(values)}] = {{{body}}};\n"

    def glsl_array(name, values):
        body = ",".join(("\n  " if i % 8 == 0 else " ") + f"0x{v:08x}u" for i, v in enumerate(values))
        return f"const uint {name}[{len(values)}] = uint[]({body});\n"

    header = ("// Generated by tests/reference/optim8_reference.py from bitsandbytes 0.50.2: do not edit.\n"
              "// create_dynamic_map(signed=True / False) as fp32 bits, and the thresholds of bnb's CPU\n"
              "// quantizer: code = #{k : threshold[k] <= trunc(((v + 1) * 0.5) * 65535 + 0.5)}.\n")
    arrays = [("dynamic_map_signed_bits", maps["signed"].view(numpy.uint32)),
              ("dynamic_map_unsigned_bits", maps["unsigned"].view(numpy.uint32)),
              ("dynamic_map_signed_thresholds", thr["signed"]),
              ("dynamic_map_unsigned_thresholds", thr["unsigned"])]
    with open(os.path.join(ROOT, "engine/kernels/dynamic_maps.inc"), "w") as f:
        f.write(header + "".join(c_array("constexpr uint32_t", n, v) for n, v in arrays))
    with open(os.path.join(ROOT, "shaders/dynamic_maps.glsl"), "w") as f:
        f.write(header + "".join(glsl_array(n, v) for n, v in arrays))


if __name__ == "__main__":
    main()
