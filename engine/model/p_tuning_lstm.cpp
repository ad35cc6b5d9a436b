#include "engine/model/p_tuning_lstm.hpp"

#include <cmath>
#include <string>
#include <vector>

#include "engine/kernels/lstm_cell.hpp"
#include "engine/kernels/matmul.hpp"
#include "engine/kernels/random.hpp"
#include "engine/kernels/ranges.hpp"
#include "engine/kernels/reduce.hpp"
#include "engine/kernels/relu.hpp"
#include "engine/model/soft_prompt.hpp"

namespace vkt::model {

using kernels::DType;
using kernels::slice;

namespace {
const char* const directions[2] = {"", "_reverse"};  // torch.nn.LSTM's parameter suffixes

std::string lstm_parameter(const char* kind, uint32_t layer, uint32_t direction) {
  return std::string("prompt_encoder.lstm_head.") + kind + "_l" + std::to_string(layer) + directions[direction];
}
std::string lstm_work(const char* kind, uint32_t layer, uint32_t direction) {
  return std::string("prompt_encoder.lstm.") + kind + ".l" + std::to_string(layer) + directions[direction];
}
std::string layer_output(uint32_t layer) { return "prompt_encoder.lstm.out.l" + std::to_string(layer); }

// Row `row` of an (rows, width) fp32 buffer, `count` floats from column `column`.
BufferRange row_part(const BufferRange& range, uint32_t row, uint32_t width, uint32_t column, uint32_t count) {
  return slice(range, (uint64_t(row) * width + column) * 4, uint64_t(count) * 4);
}
}  // namespace

uint32_t lstm_encoder_layers(const BufferSet& buffers) {
  uint32_t layers = 0;
  while (buffers.has(lstm_parameter("weight_ih", layers, 0))) layers++;
  return layers;
}

void init_lstm_prompt_encoder(vk::Context& context, BufferSet& buffers, uint32_t n, uint32_t d, uint32_t h,
                              uint64_t seed, uint32_t key) {
  std::vector<float> table = prompt_random_init(n, d, seed);
  context.upload(buffers.buffer("prompt_encoder.embedding.weight"), table.data());
  auto uniform = [&](const std::string& name, uint64_t count, float bound) {
    std::vector<float> values(count);
    ref::random_uniform(values.data(), count, uint32_t(seed), random::stream_init, 1, key++, -bound, bound);
    context.upload(buffers.buffer(name), values.data());
  };
  const float lstm_bound = 1.0f / std::sqrt(static_cast<float>(h));
  const uint32_t layers = lstm_encoder_layers(buffers);
  for (uint32_t l = 0; l < layers; l++)
    for (uint32_t dir = 0; dir < 2; dir++) {
      uniform(lstm_parameter("weight_ih", l, dir), uint64_t(4) * h * (l ? 2 * h : d), lstm_bound);
      uniform(lstm_parameter("weight_hh", l, dir), uint64_t(4) * h * h, lstm_bound);
      uniform(lstm_parameter("bias_ih", l, dir), 4 * h, lstm_bound);
      uniform(lstm_parameter("bias_hh", l, dir), 4 * h, lstm_bound);
    }
  const float head_bound = 1.0f / std::sqrt(2.0f * static_cast<float>(h));  // both Linears read 2H
  uniform("prompt_encoder.mlp_head.0.weight", uint64_t(4) * h * h, head_bound);
  uniform("prompt_encoder.mlp_head.0.bias", 2 * h, head_bound);
  uniform("prompt_encoder.mlp_head.2.weight", uint64_t(d) * 2 * h, head_bound);
  uniform("prompt_encoder.mlp_head.2.bias", d, head_bound);
}

void record_lstm_encoder_forward(Recorder& r, const BufferSet& b, uint32_t n, uint32_t d, uint32_t h) {
  const uint32_t layers = lstm_encoder_layers(b);
  for (uint32_t l = 0; l < layers; l++) {
    const BufferRange input = b.range(l ? layer_output(l - 1) : "prompt_encoder.embedding.weight");
    const BufferRange output = b.range(layer_output(l));
    const uint32_t in = l ? 2 * h : d;
    for (uint32_t dir = 0; dir < 2; dir++) {
      const BufferRange gates = b.range(lstm_work("gates", l, dir)), cells = b.range(lstm_work("cells", l, dir));
      const BufferRange hs = b.range(lstm_work("h", l, dir)), bias_ih = b.range(lstm_parameter("bias_ih", l, dir));
      const auto w_hh = kernels::dense_f32(b.range(lstm_parameter("weight_hh", l, dir)));
      // x·W_ihᵀ + b_ih for every token at once; then the recurrence, token by token in its direction.
      kernels::matmul_nt(r, input, DType::f32, kernels::dense_f32(b.range(lstm_parameter("weight_ih", l, dir))), gates,
                         DType::f32, n, 4 * h, in, 1.0f, 0.0f, &bias_ih);
      for (uint32_t k = 0; k < n; k++) {
        const uint32_t t = dir == 0 ? k : n - 1 - k, prev = dir == 0 ? t - 1 : t + 1;  // prev: only when k > 0
        const BufferRange gates_t = row_part(gates, t, 4 * h, 0, 4 * h);
        if (k > 0)
          kernels::matmul_nt(r, row_part(hs, prev, h, 0, h), DType::f32, w_hh, gates_t, DType::f32, 1, 4 * h, h, 1.0f,
                             1.0f);
        kernels::lstm_cell(r,
                           {gates_t, b.range(lstm_parameter("bias_hh", l, dir)),
                            k > 0 ? row_part(cells, prev, h, 0, h) : BufferRange{}, row_part(cells, t, h, 0, h),
                            row_part(hs, t, h, 0, h), row_part(output, t, 2 * h, dir * h, h)},
                           h);
      }
    }
  }
  // The head: Linear(2H, 2H) - ReLU - Linear(2H, D).
  const BufferRange hidden1 = b.range("prompt_encoder.hidden1"), bias0 = b.range("prompt_encoder.mlp_head.0.bias");
  const BufferRange bias2 = b.range("prompt_encoder.mlp_head.2.bias");
  kernels::matmul_nt(r, b.range(layer_output(layers - 1)), DType::f32,
                     kernels::dense_f32(b.range("prompt_encoder.mlp_head.0.weight")), hidden1, DType::f32, n, 2 * h,
                     2 * h, 1.0f, 0.0f, &bias0);
  kernels::relu(r, hidden1, n * 2 * h);
  kernels::matmul_nt(r, hidden1, DType::f32, kernels::dense_f32(b.range("prompt_encoder.mlp_head.2.weight")),
                     b.range("prompt_embeddings"), DType::f32, n, d, 2 * h, 1.0f, 0.0f, &bias2);
}

void record_lstm_encoder_backward(Recorder& r, const BufferSet& b, uint32_t n, uint32_t d, uint32_t h) {
  const uint32_t layers = lstm_encoder_layers(b);
  const BufferRange reduce = b.range("prompt_encoder.reduce");
  // A Linear's backward: d bias, d W (both added), dx = dy·W (overwritten).
  auto linear_backward = [&](const BufferRange& dy, const BufferRange& x, const char* weight, const char* bias,
                             const BufferRange& dx, uint32_t out, uint32_t in) {
    kernels::sum_rows(r, dy, b.range("grad." + std::string(bias)), reduce, n, out, true);
    kernels::matmul_tn(r, dy, DType::f32, x, DType::f32, b.range("grad." + std::string(weight)), n, out, in, 1.0f,
                       1.0f);
    kernels::matmul_nn(r, dy, DType::f32, kernels::dense_f32(b.range(weight)), dx, DType::f32, n, out, in, 1.0f, 0.0f);
  };
  const BufferRange hidden1 = b.range("prompt_encoder.hidden1"), grad_hidden1 = b.range("prompt_encoder.grad_hidden1");
  const BufferRange grad_out_a = b.range("prompt_encoder.lstm.grad_out_a");
  linear_backward(b.range("prompt_encoder.grad_output"), hidden1, "prompt_encoder.mlp_head.2.weight",
                  "prompt_encoder.mlp_head.2.bias", grad_hidden1, d, 2 * h);
  kernels::relu_backward(r, hidden1, grad_hidden1, n * 2 * h);
  linear_backward(grad_hidden1, b.range(layer_output(layers - 1)), "prompt_encoder.mlp_head.0.weight",
                  "prompt_encoder.mlp_head.0.bias", grad_out_a, 2 * h, 2 * h);
  const BufferRange d_gates = b.range("prompt_encoder.lstm.grad_gates"), dc = b.range("prompt_encoder.lstm.grad_cell");
  for (uint32_t l = layers; l-- > 0;) {
    // The layer's output gradient (N, 2H) ping-pongs with the one of its input (layer l-1's output).
    const bool even = (layers - 1 - l) % 2 == 0;
    const BufferRange d_out = even ? grad_out_a : b.range("prompt_encoder.lstm.grad_out_b");
    const BufferRange d_in = l == 0 ? b.range("grad.prompt_encoder.embedding.weight")
                             : even ? b.range("prompt_encoder.lstm.grad_out_b")
                                    : grad_out_a;
    const BufferRange input = b.range(l ? layer_output(l - 1) : "prompt_encoder.embedding.weight");
    const uint32_t in = l ? 2 * h : d;
    for (uint32_t dir = 0; dir < 2; dir++) {
      const BufferRange gates = b.range(lstm_work("gates", l, dir)), cells = b.range(lstm_work("cells", l, dir));
      const BufferRange hs = b.range(lstm_work("h", l, dir));
      const auto w_hh = kernels::dense_f32(b.range(lstm_parameter("weight_hh", l, dir)));
      // Through time from the direction's last token: dh = the output's gradient plus (added into
      // d_out by the later step) its recurrent part; dc carries from step to step.
      for (uint32_t k = 0; k < n; k++) {
        const uint32_t t = dir == 0 ? n - 1 - k : k, prev = dir == 0 ? t - 1 : t + 1;
        const bool has_prev = dir == 0 ? t > 0 : t + 1 < n;
        const BufferRange d_gates_t = row_part(d_gates, t, 4 * h, 0, 4 * h);
        kernels::lstm_cell_backward(r,
                                    {.gates = row_part(gates, t, 4 * h, 0, 4 * h),
                                     .c_prev = has_prev ? row_part(cells, prev, h, 0, h) : BufferRange{},
                                     .c = row_part(cells, t, h, 0, h),
                                     .dh = row_part(d_out, t, 2 * h, dir * h, h),
                                     .dc = dc,
                                     .first = k == 0,
                                     .d_gates = d_gates_t},
                                    h);
        if (has_prev)
          kernels::matmul_nn(r, d_gates_t, DType::f32, w_hh, row_part(d_out, prev, 2 * h, dir * h, h), DType::f32, 1,
                             4 * h, h, 1.0f, 1.0f);
      }
      // The pre-activation gradient is both biases'; W_ih's over every token, W_hh's over those with a
      // previous h (forward: tokens 1 .. N-1 read h 0 .. N-2; reverse: 0 .. N-2 read 1 .. N-1).
      kernels::sum_rows(r, d_gates, b.range("grad." + lstm_parameter("bias_ih", l, dir)), reduce, n, 4 * h, true);
      kernels::sum_rows(r, d_gates, b.range("grad." + lstm_parameter("bias_hh", l, dir)), reduce, n, 4 * h, true);
      kernels::matmul_tn(r, d_gates, DType::f32, input, DType::f32,
                         b.range("grad." + lstm_parameter("weight_ih", l, dir)), n, 4 * h, in, 1.0f, 1.0f);
      if (n > 1) {
        const uint32_t first_gate_row = dir == 0 ? 1 : 0, first_h_row = dir == 0 ? 0 : 1;
        kernels::matmul_tn(r, slice(d_gates, uint64_t(first_gate_row) * 16 * h, uint64_t(n - 1) * 16 * h), DType::f32,
                           slice(hs, uint64_t(first_h_row) * 4 * h, uint64_t(n - 1) * 4 * h), DType::f32,
                           b.range("grad." + lstm_parameter("weight_hh", l, dir)), n - 1, 4 * h, h, 1.0f, 1.0f);
      }
      // dx: the input's gradient, both directions' parts summed (the embedding's adds across micro-batches).
      kernels::matmul_nn(r, d_gates, DType::f32, kernels::dense_f32(b.range(lstm_parameter("weight_ih", l, dir))), d_in,
                         DType::f32, n, 4 * h, in, 1.0f, l == 0 || dir == 1 ? 1.0f : 0.0f);
    }
  }
}

}  // namespace vkt::model
