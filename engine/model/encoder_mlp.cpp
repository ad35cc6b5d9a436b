#include "engine/model/encoder_mlp.hpp"

#include <cmath>

#include "engine/kernels/matmul.hpp"
#include "engine/kernels/random.hpp"
#include "engine/kernels/reduce.hpp"
#include "engine/kernels/relu.hpp"

namespace vkt::model {

using kernels::DType;

void init_encoder_mlp(vk::Context& context, BufferSet& buffers, const std::vector<EncoderLinear>& layers, uint64_t seed,
                      uint32_t first_key) {
  uint32_t key = first_key;
  for (const EncoderLinear& layer : layers) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(layer.in));
    std::vector<float> weight(uint64_t(layer.out) * layer.in), bias(layer.out);
    ref::random_uniform(weight.data(), weight.size(), uint32_t(seed), random::stream_init, 1, key++, -bound, bound);
    ref::random_uniform(bias.data(), bias.size(), uint32_t(seed), random::stream_init, 1, key++, -bound, bound);
    context.upload(buffers.buffer(layer.weight), weight.data());
    context.upload(buffers.buffer(layer.bias), bias.data());
  }
}

void record_encoder_mlp_forward(Recorder& r, const BufferSet& buffers, const std::vector<EncoderLinear>& layers,
                                uint32_t n) {
  for (const EncoderLinear& layer : layers) {
    const BufferRange bias = buffers.range(layer.bias), out = buffers.range(layer.output);
    kernels::matmul_nt(r, buffers.range(layer.input), DType::f32, kernels::dense_f32(buffers.range(layer.weight)), out,
                       DType::f32, n, layer.out, layer.in, 1.0f, 0.0f, &bias);
    if (layer.activation == EncoderActivation::relu) kernels::relu(r, out, n * layer.out);
    if (layer.activation == EncoderActivation::tanh) kernels::tanh(r, out, n * layer.out);
  }
}

void record_encoder_mlp_backward(Recorder& r, const BufferSet& buffers, const std::vector<EncoderLinear>& layers,
                                 uint32_t n, const BufferRange& reduce) {
  // Layer by layer from the output: dY (n, out) -> d bias (column sums), d W = dYᵀ·X, dX = dY·W; dX
  // then through the activation that made X (from X itself: ReLU's mask, tanh's 1 - X²).
  for (size_t i = layers.size(); i-- > 0;) {
    const EncoderLinear& layer = layers[i];
    const BufferRange dy = buffers.range(layer.grad_output), x = buffers.range(layer.input);
    kernels::sum_rows(r, dy, buffers.range("grad." + layer.bias), reduce, n, layer.out, true);
    kernels::matmul_tn(r, dy, DType::f32, x, DType::f32, buffers.range("grad." + layer.weight), n, layer.out, layer.in,
                       1.0f, 1.0f);
    const BufferRange dx = buffers.range(i > 0 ? layers[i - 1].grad_output : "grad." + layer.input);
    kernels::matmul_nn(r, dy, DType::f32, kernels::dense_f32(buffers.range(layer.weight)), dx, DType::f32, n, layer.out,
                       layer.in, 1.0f, i > 0 ? 0.0f : 1.0f);
    if (i == 0) continue;
    if (layers[i - 1].activation == EncoderActivation::relu) kernels::relu_backward(r, x, dx, n * layer.in);
    if (layers[i - 1].activation == EncoderActivation::tanh) kernels::tanh_backward(r, x, dx, n * layer.in);
  }
}

}  // namespace vkt::model
