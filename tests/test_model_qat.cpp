// QAT's linear layer (engine/model/qat.hpp): the forward equals the layer with its weight replaced
// by engine/quant's CPU quantize∘dequantize (of W, or of the merged W + s·B·A with LoRA), and the
// gradients are the straight-through ones: the non-QAT layer's gradients evaluated at fq(W). Each
// case also shows that fq moves the result far beyond the tolerance, so skipping it fails.
// Suite kernels_quant.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/kernels/reduce.hpp"
#include "engine/model/linear.hpp"
#include "engine/quant/fake_quant.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/support.hpp"

using namespace vkt;
using kernels::WeightFormat;
using test::context;
using test::Guarded;

namespace {
// Random values on a grid of 1/denominator, so that W + s·B·A is exact in fp32 on the device and on
// the CPU alike (fq of a value rounded differently could land in another code).
std::vector<float> grid_floats(size_t n, uint32_t seed, float range, float denominator) {
  std::vector<float> values = test::random_floats(n, seed, -range, range);
  for (float& v : values) v = std::round(v * denominator) / denominator;
  return values;
}

double max_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); i++) worst = std::max(worst, std::fabs(double(a[i]) - b[i]));
  return worst;
}

void check_qat_linear(WeightFormat format, bool with_lora) {
  const uint32_t rows = 7, in = 64, out = 20, rank = 3, block = 64;
  const float s = 2.0f;
  const uint64_t n = uint64_t(out) * in;
  auto x = test::random_floats(rows * in, 501, -1, 1), dy = test::random_floats(rows * out, 502, -1, 1);
  auto w = grid_floats(n, 503, 0.5f, 256), bias = test::random_floats(out, 504, -0.5f, 0.5f);
  auto a = grid_floats(rank * in, 505, 0.5f, 8), b = grid_floats(out * rank, 506, 0.5f, 8);
  Guarded xb = Guarded::of(x, "x"), dyb = Guarded::of(dy, "dy"), wb = Guarded::of(w, "w");
  Guarded biasb = Guarded::of(bias, "bias"), ab = Guarded::of(a, "a"), bb = Guarded::of(b, "b");
  Guarded y(rows * out * 4, "y"), dx(rows * in * 4, "dx");
  Guarded gw = Guarded::of(std::vector<float>(n, 0), "dW"), gbias = Guarded::of(std::vector<float>(out, 0), "db");
  Guarded ga = Guarded::of(std::vector<float>(rank * in, 0), "dA");
  Guarded gb = Guarded::of(std::vector<float>(out * rank, 0), "dB");
  Guarded t(rows * rank * 4, "t"), dt(rows * rank * 4, "dt"), state(256, "state");
  Guarded workspace(kernels::sum_rows_workspace_bytes(rows, out), "workspace"), weight(n * 4, "fq(W)");
  Guarded codes(quant::fake_quant_codes_bytes(format, n, block), "codes");
  Guarded scales(quant::fake_quant_scales_bytes(n, block), "scales"), zeros(n / block + 4, "zeros");
  model::LoraParams lora{ab.range(), bb.range(), ga.range(), gb.range(), rank, s};
  const model::Linear layer{.weight = kernels::dense_f32(wb.range()),
                            .bias = biasb.range(),
                            .in = in,
                            .out = out,
                            .grad_weight = with_lora ? kernels::BufferRange{} : gw.range(),
                            .grad_bias = gbias.range(),
                            .lora = with_lora ? &lora : nullptr,
                            .qat = format,
                            .qat_block = block};
  const model::LinearScratch scratch{.lora_t = t.range(),
                                     .grad_lora_t = dt.range(),
                                     .step_state = state.range(),
                                     .reduce_workspace = workspace.range(),
                                     .qat_weight = weight.range(),
                                     .qat_codes = codes.range(),
                                     .qat_scales = scales.range(),
                                     .qat_zeros = zeros.range()};
  context().run([&](vk::Recorder& r) {
    model::linear_forward(r, layer, xb.range(), y.range(), rows, scratch);
    model::linear_backward(r, layer, xb.range(), dyb.range(), dx.range(), false, rows, scratch);
  });
  // The deployed weight: M = W (+ s·B·A, exact on this grid), then the CPU quantize∘dequantize.
  std::vector<float> merged = w;
  if (with_lora)
    for (uint32_t o = 0; o < out; o++)
      for (uint32_t i = 0; i < in; i++) {
        double sum = 0;
        for (uint32_t k = 0; k < rank; k++) sum += double(b[o * rank + k]) * a[k * in + i];
        merged[o * in + i] = static_cast<float>(w[o * in + i] + s * sum);
      }
  const std::vector<float> quantized = ref::fake_quantize(merged.data(), out, in, format, block);
  std::vector<float> ey(rows * out), plain_y(rows * out), edx(rows * in), plain_dx(rows * in);
  ref::matmul_nt(x.data(), quantized.data(), ey.data(), rows, out, in, 1.0f, 0.0f, bias.data());
  ref::matmul_nt(x.data(), merged.data(), plain_y.data(), rows, out, in, 1.0f, 0.0f, bias.data());
  // STE: dx = dy·fq(M); the parameter gradients those of the unquantized layer (dW = dyᵀ·x; dA, dB
  // of plain LoRA, which do not read W).
  ref::matmul_nn(dy.data(), quantized.data(), edx.data(), rows, out, in, 1.0f, 0.0f);
  ref::matmul_nn(dy.data(), merged.data(), plain_dx.data(), rows, out, in, 1.0f, 0.0f);
  std::vector<float> unused_dx(rows * in), ega(rank * in), egb(out * rank), egw(n), egbias(out);
  ref::lora_linear_backward(x.data(), quantized.data(), a.data(), b.data(), nullptr, dy.data(), unused_dx.data(),
                            ega.data(), egb.data(), egw.data(), egbias.data(), rows, in, out, rank, s);
  // fp32 matmuls of 64 terms against the double reference.
  test::check_close(y.floats(), ey, 1e-11, 1e-5, "y = x·fq(M)ᵀ + b");
  test::check_close(dx.floats(), edx, 1e-11, 1e-5, "dx = dy·fq(M)");
  test::check_close(gbias.floats(), egbias, 1e-11, 1e-5, "d bias");
  if (with_lora) {
    test::check_close(ga.floats(), ega, 1e-11, 1e-5, "dA (straight through)");
    test::check_close(gb.floats(), egb, 1e-11, 1e-5, "dB (straight through)");
  } else {
    test::check_close(gw.floats(), egw, 1e-11, 1e-5, "dW (straight through)");
  }
  // Without fq the outputs would differ by far more than the tolerance above.
  CHECK(max_difference(ey, plain_y) > 1e-3);
  CHECK(max_difference(edx, plain_dx) > 1e-3);
  for (const Guarded* g : {&y, &dx, &gw, &gbias, &ga, &gb, &t, &dt, &weight, &codes, &scales, &zeros})
    CHECK(g->guard_intact());
}
}  // namespace

TEST_SUITE("kernels_quant") {

TEST_CASE("qat linear: forward = the layer at CPU quantize∘dequantize of W (full) or W + s·B·A (LoRA); STE grads") {
  for (WeightFormat format : {WeightFormat::nf4, WeightFormat::int4, WeightFormat::int8})
    for (bool with_lora : {false, true}) {
      INFO(kernels::quant_name(format) << (with_lora ? " lora" : " full"));
      check_qat_linear(format, with_lora);
    }
}

}  // TEST_SUITE
