#!/usr/bin/env python3
"""Golden Q4_K / Q6_K quantizations by ggml's own C reference quantizers (quantize_row_q4_K_ref and
quantize_row_q6_K_ref of ggml-quants.c, what llama-quantize runs without an importance matrix): the
`gguf` package has no K-quant quantizers, so this compiles ggml-quants.c from the pinned PyPI sdist
llama-cpp-python==0.3.36 (vendor/llama.cpp/ggml) with a small driver, -O2 -ffp-contract=off.

  tests/data/gguf/kquants.gguf   "source" (F32, rows like trained weights plus edge cases: all zero,
                                 tiny values below GROUP_MAX_EPS, one outlier, all positive, constant,
                                 a ramp), "Q4_K.quantized" and "Q6_K.quantized" (ggml's bytes).

Run: LLAMA_CPP=/tmp/lcp/llama_cpp_python-0.3.36/vendor/llama.cpp /work/venv/bin/python \
       tests/reference/ggml_kquant_golden.py [--verify]
     (the sdist: `pip download llama-cpp-python==0.3.36 --no-deps --no-binary :all: -d /tmp/lcp &&
      tar xzf /tmp/lcp/llama_cpp_python-0.3.36.tar.gz -C /tmp/lcp`; needs gcc, gguf==0.19.0, numpy)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_golden  # noqa: E402

LLAMA_CPP = os.environ.get("LLAMA_CPP", "/tmp/lcp/llama_cpp_python-0.3.36/vendor/llama.cpp")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "gguf")

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "ggml-quants.h"
// n floats (n % 256 == 0) on stdin -> Q4_K blocks then Q6_K blocks on stdout
int main(int argc, char** argv) {
  long n = atol(argv[1]);
  float* x = malloc(n * 4);
  if (fread(x, 4, n, stdin) != (size_t)n) return 1;
  void* q4 = malloc(n / 256 * 144);
  void* q6 = malloc(n / 256 * 210);
  quantize_row_q4_K_ref(x, q4, n);
  quantize_row_q6_K_ref(x, q6, n);
  fwrite(q4, 1, n / 256 * 144, stdout);
  fwrite(q6, 1, n / 256 * 210, stdout);
  return 0;
}
"""


def check_sdist():
    pkg_info = os.path.join(LLAMA_CPP, "..", "..", "PKG-INFO")
    with open(pkg_info) as f:
        if "Version: 0.3.36\n" not in f.read():
            sys.exit("%s is not the llama-cpp-python 0.3.36 sdist" % LLAMA_CPP)
    assert gguf.__version__ == "0.19.0" if hasattr(gguf, "__version__") else True


def ggml_quantize(values):
    ggml = os.path.join(LLAMA_CPP, "ggml")
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "driver.c"), "w") as f:
            f.write(DRIVER)
        flags = ["-O2", "-ffp-contract=off", "-ffunction-sections", "-fdata-sections",
                 "-I" + os.path.join(ggml, "include"), "-I" + os.path.join(ggml, "src")]
        subprocess.check_call(["gcc", *flags, "-c", os.path.join(ggml, "src", "ggml-quants.c"), "-o",
                               os.path.join(tmp, "quants.o")])
        subprocess.check_call(["gcc", *flags, os.path.join(tmp, "driver.c"), os.path.join(tmp, "quants.o"),
                               "-Wl,--gc-sections", "-lm", "-o", os.path.join(tmp, "driver")])
        flat = values.astype(np.float32).ravel()
        out = subprocess.run([os.path.join(tmp, "driver"), str(flat.size)], input=flat.tobytes(),
                             stdout=subprocess.PIPE, check=True).stdout
    blocks = flat.size // 256
    q4 = np.frombuffer(out[:blocks * 144], dtype=np.uint8).reshape(values.shape[0], -1)
    q6 = np.frombuffer(out[blocks * 144:], dtype=np.uint8).reshape(values.shape[0], -1)
    return q4, q6


def run(out_dir):
    rng = np.random.default_rng(20261205)
    source = (rng.standard_normal((8, 512)) * 0.05).astype(np.float32)
    source[1] = 0.0
    source[2, :256] = (rng.standard_normal(256) * 1e-17).astype(np.float32)  # below GROUP_MAX_EPS
    source[3, 17] = 3.0
    source[4] = np.abs(source[4]) + 0.01  # all positive: the min is clamped to 0
    source[5, 256:] = 0.25                # constant half
    source[6] = np.linspace(-1.0, 1.0, 512, dtype=np.float32)
    q4, q6 = ggml_quantize(source)
    # sanity: ggml's bytes decode (gguf-py) close to the source
    for raw, qtype, bound in [(q4, T.Q4_K, 0.2), (q6, T.Q6_K, 0.05)]:
        error = np.abs(gguf.quants.dequantize(raw, qtype) - source).max()
        assert error < bound, (qtype, error)
    writer = gguf.GGUFWriter(os.path.join(out_dir, "kquants.gguf"), "vktune-test")
    writer.add_tensor("source", source)
    writer.add_tensor("Q4_K.quantized", q4, raw_dtype=T.Q4_K)
    writer.add_tensor("Q6_K.quantized", q6, raw_dtype=T.Q6_K)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    check_sdist()
    hf_golden.write_or_verify(run, OUT, "tests/data/gguf")
