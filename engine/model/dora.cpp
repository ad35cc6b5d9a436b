#include "engine/model/dora.hpp"

#include <cmath>

#include "engine/base/error.hpp"
#include "engine/kernels/dora.hpp"
#include "engine/kernels/elementwise.hpp"
#include "engine/kernels/matmul.hpp"
#include "engine/kernels/quantize.hpp"
#include "engine/kernels/random.hpp"

namespace vkt::model {

using kernels::DType;

std::string dora_buffer_name(const spec::ModelShape& shape, uint32_t layer, spec::Module module) {
  return "model.layers." + std::to_string(layer) + "." + spec::stored_module_path(shape, module) +
         ".lora_magnitude_vector";
}

std::string dora_peft_name(const spec::ModelShape& shape, uint32_t layer, spec::Module module) {
  return "base_model.model." + dora_buffer_name(shape, layer, module);  // PEFT saves it without ".weight"
}

namespace {
BufferRange part(const BufferRange& range, uint64_t first, uint64_t count, const char* what) {
  BufferRange slice = range;
  slice.offset += first * 4;
  slice.address += first * 4;
  slice.bytes = count * 4;
  VKT_ASSERT((first + count) * 4 <= range.bytes, std::string("DoRA scratch too small: ") + what);
  return slice;
}

// The layer as plain LoRA without its bias: v = x·Wᵀ + s·t·Bᵀ, and its backward for dv.
struct PlainLora {
  LoraParams lora;
  Linear layer;
  explicit PlainLora(const Linear& dora) : lora(*dora.lora), layer(dora) {
    lora.magnitude = lora.grad_magnitude = BufferRange{};
    lora.dropout = 0;  // DoRA drops the input out itself (dropped_input): both terms see the same x_d
    layer.lora = &lora;
    layer.bias = layer.grad_bias = BufferRange{};
  }
};

// x_d = dropout(x) in scratch.dropout_x (the step's mask, recomputed identically), or x itself.
BufferRange dropped_input(Recorder& r, const Linear& layer, const BufferRange& x, uint32_t rows,
                          const LinearScratch& scratch) {
  if (layer.lora->dropout <= 0 || !scratch.dropout_x.bytes) return x;  // inference plans no dropout
  const uint64_t n = uint64_t(rows) * layer.in;
  BufferRange dropped = part(scratch.dropout_x, 0, n, "dropout(x)");
  kernels::dropout(r, x, dropped, DType::f32, n, layer.lora->dropout, layer.lora->rng_layer, scratch.step_state);
  return dropped;
}

BufferRange saved_v(const Linear& layer, const BufferRange& y, uint32_t rows, const LinearScratch& scratch) {
  return scratch.dora_v.bytes ? part(scratch.dora_v, 0, uint64_t(rows) * layer.out, "v") : y;
}
}  // namespace

void dora_weight_norm(Recorder& r, const Linear& layer, const LinearScratch& scratch, bool init) {
  const LoraParams& lora = *layer.lora;
  const uint64_t n = uint64_t(layer.out) * layer.in;
  BufferRange weight = part(scratch.dora_weight, 0, n, "W + s·B·A");
  kernels::dequantize(r, layer.weight, n, weight, n % 8 != 0);
  // W (out, in) += s · B (out, r) · A (r, in)
  kernels::matmul_nn(r, lora.b, DType::f32, kernels::dense_f32(lora.a), weight, DType::f32, layer.out, lora.rank,
                     layer.in, lora.scale, 1.0f);
  kernels::dora_norm(r, weight, lora.magnitude, part(scratch.dora_scales, layer.out, layer.out, "inv_norm"),
                     part(scratch.dora_scales, 0, layer.out, "scale"), layer.out, layer.in, init);
}

void dora_linear_intermediate(Recorder& r, const Linear& layer, const BufferRange& x, uint32_t rows,
                              const LinearScratch& scratch) {
  dora_weight_norm(r, layer, scratch, false);
  PlainLora plain(layer);
  BufferRange input = dropped_input(r, layer, x, rows, scratch);
  linear_forward(r, plain.layer, input, saved_v(layer, BufferRange{}, rows, scratch), rows, scratch);
}

void dora_linear_forward(Recorder& r, const Linear& layer, const BufferRange& x, const BufferRange& y, uint32_t rows,
                         const LinearScratch& scratch) {
  VKT_ASSERT(layer.act == DType::f32, "DoRA stores fp32 activations");
  dora_weight_norm(r, layer, scratch, false);
  PlainLora plain(layer);
  BufferRange input = dropped_input(r, layer, x, rows, scratch);
  BufferRange v = saved_v(layer, y, rows, scratch);
  linear_forward(r, plain.layer, input, v, rows, scratch);
  const BufferRange* bias = layer.bias.bytes ? &layer.bias : nullptr;
  kernels::dora_output(r, v, part(scratch.dora_scales, 0, layer.out, "scale"), bias, y, rows, layer.out);
  if (input.address == x.address) return;
  // PEFT's dropout path: the base result stays x·Wᵀ + b, so y += (x - x_d)·Wᵀ.
  kernels::axpby(r, x, input, rows * layer.in, 1.0f, -1.0f);
  kernels::matmul_nt(r, input, DType::f32, layer.weight, y, DType::f32, rows, layer.out, layer.in, 1.0f, 1.0f);
}

void dora_linear_backward(Recorder& r, const Linear& layer, const BufferRange& x, const BufferRange& dy,
                          const BufferRange& dx, bool accumulate_dx, uint32_t rows, const LinearScratch& scratch) {
  const LoraParams& lora = *layer.lora;
  const uint64_t n = uint64_t(rows) * layer.out;
  BufferRange scale = part(scratch.dora_scales, 0, layer.out, "scale");
  BufferRange inv_norm = part(scratch.dora_scales, layer.out, layer.out, "inv_norm");
  BufferRange d_scale = part(scratch.dora_scales, 2 * uint64_t(layer.out), layer.out, "d scale");
  BufferRange dv = part(scratch.dora_grad, 0, n, "dv"), product = part(scratch.dora_grad, n, n, "product");
  // d scale = Σ_rows dy ⊙ v; dv = dy ⊙ scale.
  kernels::scale_channels_backward(r, dy, part(scratch.dora_v, 0, n, "v"), scale, dv, d_scale, product,
                                   scratch.reduce_workspace, rows, layer.out, false);
  if (lora.grad_magnitude.bytes) {  // d m += d scale / ‖W + s·B·A‖ (a constant: detached)
    kernels::scale_channels(r, d_scale, inv_norm, d_scale, 1, layer.out);
    kernels::axpby(r, d_scale, lora.grad_magnitude, layer.out, 1.0f, 1.0f);
  }
  PlainLora plain(layer);
  if (lora.dropout <= 0 || !scratch.dropout_x.bytes)
    return linear_backward(r, plain.layer, x, dv, dx, accumulate_dx, rows, scratch);
  // With dropout: y = x·Wᵀ + b + g ⊙ v(x_d) - x_d·Wᵀ, so dx = dy·W + dropout'(dv·W + dt·A - dy·W).
  BufferRange input = dropped_input(r, layer, x, rows, scratch);
  const bool want_dx = dx.bytes > 0;
  BufferRange d_input = want_dx ? part(scratch.dora_grad, n, uint64_t(rows) * layer.in, "d x_d") : BufferRange{};
  linear_backward(r, plain.layer, input, dv, d_input, false, rows, scratch);
  if (!want_dx) return;
  kernels::matmul_nn(r, dy, DType::f32, layer.weight, d_input, DType::f32, rows, layer.out, layer.in, -1.0f, 1.0f);
  kernels::dropout_backward(r, d_input, d_input, DType::f32, uint64_t(rows) * layer.in, lora.dropout, lora.rng_layer,
                            scratch.step_state);
  kernels::matmul_nn(r, dy, DType::f32, layer.weight, dx, DType::f32, rows, layer.out, layer.in, 1.0f,
                     accumulate_dx ? 1.0f : 0.0f);
  kernels::axpby(r, d_input, dx, rows * layer.in, 1.0f, 1.0f);
}

void dora_merge_rows(std::vector<float>& weight, const std::vector<float>& magnitude, uint64_t in) {
  VKT_ASSERT(weight.size() == magnitude.size() * in, "DoRA merge: weight size");
  for (size_t o = 0; o < magnitude.size(); o++) {
    double sum = 0;
    for (uint64_t i = 0; i < in; i++) sum += double(weight[o * in + i]) * weight[o * in + i];
    const double factor = magnitude[o] / std::sqrt(sum);
    for (uint64_t i = 0; i < in; i++) weight[o * in + i] = static_cast<float>(weight[o * in + i] * factor);
  }
}

}  // namespace vkt::model

namespace vkt::ref {

namespace {
// g = m / ‖W + s·B·A‖ per output row, and 1/‖·‖.
void dora_scales(const float* w, const float* a, const float* b, const float* magnitude, uint32_t in, uint32_t out,
                 uint32_t rank, float scale, std::vector<double>& g, std::vector<double>& inv_norm) {
  g.assign(out, 0.0);
  inv_norm.assign(out, 0.0);
  for (uint32_t o = 0; o < out; o++) {
    double sum = 0;
    for (uint32_t i = 0; i < in; i++) {
      double product = 0;
      for (uint32_t k = 0; k < rank; k++) product += double(b[size_t(o) * rank + k]) * a[size_t(k) * in + i];
      const double value = w[size_t(o) * in + i] + scale * product;
      sum += value * value;
    }
    inv_norm[o] = 1.0 / std::sqrt(sum);
    g[o] = magnitude[o] * inv_norm[o];
  }
}
}  // namespace

void dora_linear_forward(const float* x, const float* w, const float* bias, const float* a, const float* b,
                         const float* magnitude, const float* keep, float* y, uint32_t rows, uint32_t in, uint32_t out,
                         uint32_t rank, float scale) {
  std::vector<double> g, inv_norm;
  dora_scales(w, a, b, magnitude, in, out, rank, scale, g, inv_norm);
  std::vector<float> dropped(x, x + size_t(rows) * in), removed(size_t(rows) * out, 0.0f);
  if (keep) {
    for (size_t i = 0; i < dropped.size(); i++) dropped[i] = static_cast<float>(double(x[i]) * keep[i]);
    std::vector<float> difference(dropped.size());
    for (size_t i = 0; i < dropped.size(); i++) difference[i] = x[i] - dropped[i];
    matmul_nt(difference.data(), w, removed.data(), rows, out, in, 1.0f, 0.0f);  // (x - x_d)·Wᵀ
  }
  lora_linear_forward(dropped.data(), w, nullptr, a, b, nullptr, y, rows, in, out, rank, scale);  // v
  for (size_t i = 0; i < size_t(rows) * out; i++)
    y[i] = static_cast<float>(y[i] * g[i % out] + (bias ? bias[i % out] : 0.0) + removed[i]);
}

void dora_linear_backward(const float* x, const float* w, const float* a, const float* b, const float* magnitude,
                          const float* keep, const float* dy, float* dx, float* grad_a, float* grad_b,
                          float* grad_magnitude, uint32_t rows, uint32_t in, uint32_t out, uint32_t rank, float scale) {
  std::vector<double> g, inv_norm;
  dora_scales(w, a, b, magnitude, in, out, rank, scale, g, inv_norm);
  std::vector<float> dropped(x, x + size_t(rows) * in);
  if (keep)
    for (size_t i = 0; i < dropped.size(); i++) dropped[i] = static_cast<float>(double(x[i]) * keep[i]);
  std::vector<float> v(size_t(rows) * out), dv(size_t(rows) * out);
  lora_linear_forward(dropped.data(), w, nullptr, a, b, nullptr, v.data(), rows, in, out, rank, scale);
  std::vector<double> d_scale(out, 0.0);
  for (size_t i = 0; i < v.size(); i++) {
    d_scale[i % out] += double(dy[i]) * v[i];
    dv[i] = static_cast<float>(dy[i] * g[i % out]);
  }
  for (uint32_t o = 0; o < out; o++) grad_magnitude[o] = static_cast<float>(d_scale[o] * inv_norm[o]);
  lora_linear_backward(dropped.data(), w, a, b, nullptr, dv.data(), dx, grad_a, grad_b, nullptr, nullptr, rows, in, out,
                       rank, scale);
  if (!keep) return;
  std::vector<float> base(size_t(rows) * in);  // dx = dy·W + keep ⊙ (d x_d - dy·W)
  matmul_nn(dy, w, base.data(), rows, out, in, 1.0f, 0.0f);
  for (size_t i = 0; i < base.size(); i++) dx[i] = static_cast<float>(base[i] + keep[i] * (double(dx[i]) - base[i]));
}

}  // namespace vkt::ref
