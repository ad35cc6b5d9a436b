#include "engine/model/linear.hpp"

#include <vector>

#include "engine/base/error.hpp"
#include "engine/kernels/elementwise.hpp"
#include "engine/kernels/matmul_lora_a.hpp"
#include "engine/kernels/random.hpp"
#include "engine/kernels/reduce.hpp"
#include "engine/model/dora.hpp"
#include "engine/model/ia3.hpp"
#include "engine/model/qat.hpp"

namespace vkt::model {

using kernels::DType;

namespace {
BufferRange slice_rows(const BufferRange& range, uint32_t rows, uint32_t cols, DType type) {
  BufferRange slice = range;
  slice.bytes = static_cast<uint64_t>(rows) * cols * kernels::dtype_bytes(type);
  VKT_ASSERT(slice.bytes <= range.bytes, "scratch too small");
  return slice;
}

// Whether the LoRA input is dropout(x) rather than x (an eval-mode pass has no dropout scratch).
bool lora_dropout_active(const Linear& layer, const LinearScratch& scratch) {
  return layer.lora->dropout > 0 && scratch.dropout_x.bytes;
}

// The LoRA input: x itself, or dropout(x) written into the scratch.
BufferRange lora_input(Recorder& recorder, const Linear& layer, const BufferRange& x, uint32_t rows,
                       const LinearScratch& scratch) {
  if (!lora_dropout_active(layer, scratch)) return x;
  BufferRange dropped = slice_rows(scratch.dropout_x, rows, layer.in, layer.act);
  kernels::dropout(recorder, x, dropped, layer.act, static_cast<uint64_t>(rows) * layer.in, layer.lora->dropout,
                   layer.lora->rng_layer, scratch.step_state);
  return dropped;
}
}  // namespace

void linear_lora_intermediate(Recorder& recorder, const Linear& layer, const BufferRange& x, uint32_t rows,
                              const LinearScratch& scratch) {
  if (layer.ia3) return ia3_linear_intermediate(recorder, layer, x, rows, scratch);
  if (!layer.lora) return;
  if (layer.lora->magnitude.bytes) return dora_linear_intermediate(recorder, layer, x, rows, scratch);
  const LoraParams& lora = *layer.lora;
  BufferRange t = slice_rows(scratch.lora_t, rows, lora.rank, layer.act);
  BufferRange input = lora_input(recorder, layer, x, rows, scratch);
  // t = dropout(x)·Aᵀ : (rows, r)
  kernels::matmul_nt(recorder, input, layer.act, kernels::dense_f32(lora.a), t, layer.act, rows, lora.rank, layer.in);
}

void linear_base_and_lora_intermediate(Recorder& recorder, const Linear& layer, const BufferRange& x,
                                       const BufferRange& y, uint32_t rows, const BufferRange* bias,
                                       const LinearScratch& scratch) {
  VKT_ASSERT(!layer.ia3 && !(layer.lora && layer.lora->magnitude.bytes) && layer.qat == kernels::WeightFormat::f32,
             "linear_base_and_lora_intermediate: plain and LoRA layers only");
  if (!layer.lora || lora_dropout_active(layer, scratch)) {
    // No LoRA, or its input is dropout(x): two products of different inputs.
    kernels::matmul_nt(recorder, x, layer.act, layer.weight, y, layer.act, rows, layer.out, layer.in, 1.0f, 0.0f,
                       bias);
    linear_lora_intermediate(recorder, layer, x, rows, scratch);
    return;
  }
  // y = x·Wᵀ (+ bias) and t = x·Aᵀ in one dispatch that reads x once (kernels/matmul_lora_a.hpp).
  BufferRange t = slice_rows(scratch.lora_t, rows, layer.lora->rank, layer.act);
  kernels::matmul_nt_lora_a(recorder, x, layer.act, layer.weight, y, layer.act, rows, layer.out, layer.in, bias,
                            {layer.lora->a, t, layer.lora->rank});
}

void linear_forward(Recorder& recorder, const Linear& layer, const BufferRange& x, const BufferRange& y, uint32_t rows,
                    const LinearScratch& scratch) {
  if (layer.ia3) return ia3_linear_forward(recorder, layer, x, y, rows, scratch);
  if (layer.lora && layer.lora->magnitude.bytes) return dora_linear_forward(recorder, layer, x, y, rows, scratch);
  if (layer.qat != kernels::WeightFormat::f32) return qat_linear_forward(recorder, layer, x, y, rows, scratch);
  const BufferRange* bias = layer.bias.bytes ? &layer.bias : nullptr;
  linear_base_and_lora_intermediate(recorder, layer, x, y, rows, bias, scratch);
  if (!layer.lora) return;
  const LoraParams& lora = *layer.lora;
  BufferRange t = slice_rows(scratch.lora_t, rows, lora.rank, layer.act);
  // y += s·t·Bᵀ
  kernels::matmul_nt(recorder, t, layer.act, kernels::dense_f32(lora.b), y, layer.act, rows, layer.out, lora.rank,
                     lora.scale, 1.0f);
}

void linear_backward(Recorder& recorder, const Linear& layer, const BufferRange& x, const BufferRange& dy,
                     const BufferRange& dx, bool accumulate_dx, uint32_t rows, const LinearScratch& scratch) {
  if (layer.ia3) return ia3_linear_backward(recorder, layer, x, dy, dx, accumulate_dx, rows, scratch);
  if (layer.lora && layer.lora->magnitude.bytes)
    return dora_linear_backward(recorder, layer, x, dy, dx, accumulate_dx, rows, scratch);
  if (layer.qat != kernels::WeightFormat::f32)
    return qat_linear_backward(recorder, layer, x, dy, dx, accumulate_dx, rows, scratch);
  const bool want_dx = dx.bytes > 0;  // an empty dx skips the input gradient
  // dx = dy·W (+ dx); with LoRA, dt = s·dy·B (rows, r) in the same dispatch (kernels/matmul_lora_a.hpp)
  const bool dt_with_dx = want_dx && layer.lora;
  if (dt_with_dx) {
    const LoraParams& lora = *layer.lora;
    kernels::matmul_nn_lora_b(recorder, dy, layer.act, layer.weight, dx, layer.act, rows, layer.out, layer.in,
                              accumulate_dx ? 1.0f : 0.0f,
                              {lora.b, slice_rows(scratch.grad_lora_t, rows, lora.rank, layer.act), lora.rank,
                               lora.scale});
  } else if (want_dx) {
    kernels::matmul_nn(recorder, dy, layer.act, layer.weight, dx, layer.act, rows, layer.out, layer.in, 1.0f,
                       accumulate_dx ? 1.0f : 0.0f);
  }
  if (layer.grad_weight.bytes) {
    // dW += dyᵀ·x
    kernels::matmul_tn(recorder, dy, layer.act, x, layer.act, layer.grad_weight, rows, layer.out, layer.in, 1.0f, 1.0f);
  }
  if (layer.grad_bias.bytes) {
    VKT_ASSERT(layer.act == DType::f32, "bias gradients read dy in fp32 (the model refuses 16-bit activations here)");
    kernels::sum_rows(recorder, dy, layer.grad_bias, scratch.reduce_workspace, rows, layer.out, true);
  }
  if (!layer.lora) return;
  const LoraParams& lora = *layer.lora;
  BufferRange t = slice_rows(scratch.lora_t, rows, lora.rank, layer.act);
  BufferRange dt = slice_rows(scratch.grad_lora_t, rows, lora.rank, layer.act);
  // dB += s·dyᵀ·t : (out, r)
  kernels::matmul_tn(recorder, dy, layer.act, t, layer.act, lora.grad_b, rows, layer.out, lora.rank, lora.scale, 1.0f);
  // dt = s·dy·B : (rows, r), unless it came with dx
  if (!dt_with_dx)
    kernels::matmul_nn(recorder, dy, layer.act, kernels::dense_f32(lora.b), dt, layer.act, rows, layer.out, lora.rank,
                       lora.scale, 0.0f);
  // dA += dtᵀ·dropout(x) : (r, in); the same mask as the forward (same step state).
  BufferRange input = lora_input(recorder, layer, x, rows, scratch);
  kernels::matmul_tn(recorder, dt, layer.act, input, layer.act, lora.grad_a, rows, lora.rank, layer.in, 1.0f, 1.0f);
  // dx += dropout'(dt·A): with dropout the mask applies on the way back.
  if (!want_dx) return;
  if (lora.dropout <= 0) {
    kernels::matmul_nn(recorder, dt, layer.act, kernels::dense_f32(lora.a), dx, layer.act, rows, lora.rank, layer.in,
                       1.0f, 1.0f);
  } else {
    BufferRange through = slice_rows(scratch.dropout_x, rows, layer.in, layer.act);
    kernels::matmul_nn(recorder, dt, layer.act, kernels::dense_f32(lora.a), through, layer.act, rows, lora.rank,
                       layer.in, 1.0f, 0.0f);
    kernels::dropout_backward(recorder, through, through, layer.act, static_cast<uint64_t>(rows) * layer.in,
                              lora.dropout, lora.rng_layer, scratch.step_state);
    kernels::axpby(recorder, through, dx, static_cast<uint32_t>(static_cast<uint64_t>(rows) * layer.in), 1.0f, 1.0f,
                   layer.act);
  }
}

}  // namespace vkt::model

namespace vkt::ref {

void lora_linear_forward(const float* x, const float* w, const float* bias, const float* a, const float* b,
                         const float* keep, float* y, uint32_t rows, uint32_t in, uint32_t out, uint32_t rank,
                         float scale) {
  std::vector<double> t(rank);
  for (uint32_t r = 0; r < rows; r++) {
    const float* xr = x + static_cast<size_t>(r) * in;
    for (uint32_t k = 0; k < rank; k++) {
      double sum = 0;
      for (uint32_t i = 0; i < in; i++)
        sum += double(xr[i]) * (keep ? keep[size_t(r) * in + i] : 1.0) * a[size_t(k) * in + i];
      t[k] = static_cast<float>(sum);  // the kernel stores t in fp32
    }
    for (uint32_t o = 0; o < out; o++) {
      double base = bias ? bias[o] : 0.0, lora = 0;
      for (uint32_t i = 0; i < in; i++) base += double(xr[i]) * w[size_t(o) * in + i];
      for (uint32_t k = 0; k < rank; k++) lora += t[k] * b[size_t(o) * rank + k];
      y[size_t(r) * out + o] = static_cast<float>(base + scale * lora);
    }
  }
}

void lora_linear_backward(const float* x, const float* w, const float* a, const float* b, const float* keep,
                          const float* dy, float* dx, float* grad_a, float* grad_b, float* grad_w, float* grad_bias,
                          uint32_t rows, uint32_t in, uint32_t out, uint32_t rank, float scale) {
  auto xk = [&](uint32_t r, uint32_t i) {
    return double(x[size_t(r) * in + i]) * (keep ? keep[size_t(r) * in + i] : 1.0);
  };
  std::vector<double> t(size_t(rows) * rank, 0.0), dt(size_t(rows) * rank, 0.0);
  for (uint32_t r = 0; r < rows; r++)
    for (uint32_t k = 0; k < rank; k++) {
      double sum = 0;
      for (uint32_t i = 0; i < in; i++) sum += xk(r, i) * a[size_t(k) * in + i];
      t[size_t(r) * rank + k] = sum;
      double d = 0;
      for (uint32_t o = 0; o < out; o++) d += double(dy[size_t(r) * out + o]) * b[size_t(o) * rank + k];
      dt[size_t(r) * rank + k] = scale * d;
    }
  for (uint32_t o = 0; o < out; o++)
    for (uint32_t k = 0; k < rank; k++) {
      double sum = 0;
      for (uint32_t r = 0; r < rows; r++) sum += double(dy[size_t(r) * out + o]) * t[size_t(r) * rank + k];
      grad_b[size_t(o) * rank + k] = static_cast<float>(scale * sum);
    }
  for (uint32_t k = 0; k < rank; k++)
    for (uint32_t i = 0; i < in; i++) {
      double sum = 0;
      for (uint32_t r = 0; r < rows; r++) sum += dt[size_t(r) * rank + k] * xk(r, i);
      grad_a[size_t(k) * in + i] = static_cast<float>(sum);
    }
  for (uint32_t r = 0; r < rows; r++)
    for (uint32_t i = 0; i < in; i++) {
      double base = 0, lora = 0;
      for (uint32_t o = 0; o < out; o++) base += double(dy[size_t(r) * out + o]) * w[size_t(o) * in + i];
      for (uint32_t k = 0; k < rank; k++) lora += dt[size_t(r) * rank + k] * a[size_t(k) * in + i];
      double mask = keep ? keep[size_t(r) * in + i] : 1.0;
      dx[size_t(r) * in + i] = static_cast<float>(base + lora * mask);
    }
  if (grad_w)
    for (uint32_t o = 0; o < out; o++)
      for (uint32_t i = 0; i < in; i++) {
        double sum = 0;
        for (uint32_t r = 0; r < rows; r++) sum += double(dy[size_t(r) * out + o]) * x[size_t(r) * in + i];
        grad_w[size_t(o) * in + i] = static_cast<float>(sum);
      }
  if (grad_bias)
    for (uint32_t o = 0; o < out; o++) {
      double sum = 0;
      for (uint32_t r = 0; r < rows; r++) sum += dy[size_t(r) * out + o];
      grad_bias[o] = static_cast<float>(sum);
    }
}

}  // namespace vkt::ref
