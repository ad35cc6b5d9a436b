#include "engine/kernels/adafactor.hpp"

#include <algorithm>
#include <cmath>

#include "engine/base/error.hpp"
#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {

uint64_t adafactor_state0_bytes(uint64_t count, AdafactorShape shape) {
  return (shape.cols > 0 ? shape.rows : count) * 4;
}
uint64_t adafactor_state1_bytes(AdafactorShape shape) { return uint64_t{shape.cols} * 4; }

void set_adafactor_step(StepState& state, uint32_t step, double learning_rate, const AdafactorConfig& config) {
  set_optimizer_step(state, step, learning_rate);
  // HF: beta2t = 1.0 - math.pow(step, decay_rate) in Python floats; mul_(beta2t) and
  // add_(..., alpha=1.0 - beta2t) round each to fp32.
  const double beta2t = 1.0 - std::pow(static_cast<double>(step), config.decay_rate);
  state.adam_step_size = static_cast<float>(beta2t);
  state.adam_bias_correction2_sqrt = static_cast<float>(1.0 - beta2t);
}

AdafactorTable::AdafactorTable(vk::Context& context, const std::vector<AdafactorTensor>& tensors) : tensors_(tensors) {
  VKT_ASSERT(!tensors.empty(), "adafactor: no tensors");
  std::vector<Entry> entries;
  for (const AdafactorTensor& tensor : tensors) {
    VKT_ASSERT(tensor.state0.bytes > 0 && (tensor.shape.cols == 0 || tensor.state1.bytes > 0) &&
                   tensor.state0.bytes >= uint64_t{tensor.shape.rows} * 4 &&
                   tensor.state1.bytes >= uint64_t{tensor.shape.cols} * 4,
               "adafactor: a tensor's state ranges do not fit its shape");
    entries.push_back({tensor.state0.address, tensor.state1.address, tensor.shape.rows, tensor.shape.cols});
    states_.push_back(tensor.state0);
    if (tensor.state1.bytes) states_.push_back(tensor.state1);
  }
  table_ =
      context.allocate(table_bytes(static_cast<uint32_t>(entries.size())), vk::Category::workspace, "adafactor_table");
  context.upload(table_, entries.data(), 0, entries.size() * sizeof(Entry));
}

void check_adafactor_fits(const std::string& tensor, uint32_t count, AdafactorShape shape) {
  if (uint64_t{count} / TensorList::threads + shape.rows + shape.cols < 60000) return;
  throw UserError("--optim adafactor: " + tensor + " (" + std::to_string(shape.rows) +
                      (shape.cols ? " x " + std::to_string(shape.cols) : "") +
                      ") is too large for vktune's Adafactor, which updates each tensor in one workgroup",
                  "use --optim adamw_torch or adamw_8bit for this model (or train a LoRA adapter)");
}

void adafactor(Recorder& recorder, const TensorList& list, const AdafactorTable& states, const BufferRange& step_state,
               const AdafactorConfig& config) {
  require_bytes(step_state, sizeof(StepState), "adafactor", "step_state");
  VKT_ASSERT(states.size() == list.tensor_count(), "adafactor: one state entry per tensor of the list");
  for (size_t t = 0; t < list.tensors().size(); t++) {
    const uint32_t count = list.tensors()[t].count;
    const AdafactorShape shape = states.tensors()[t].shape;
    VKT_ASSERT(shape.cols == 0 ? shape.rows == count : uint64_t{shape.rows} * shape.cols == count,
               "adafactor: tensor " + std::to_string(t) + "'s shape does not match its element count");
    check_adafactor_fits("tensor " + std::to_string(t), count, shape);
  }
  struct {
    uint64_t table, states, step_state;
    uint32_t tensor_count;
    float eps1, clip_threshold, weight_decay;
  } push{list.table().address, states.table().address, step_state.address, list.tensor_count(),
         config.eps1,          config.clip_threshold,  config.weight_decay};
  static_assert(offsetof(decltype(push), weight_decay) == 36, "push constants must match shaders/adafactor.comp");
  std::vector<BufferRange> reads = list.param_spans(), writes = list.param_spans();
  reads.insert(reads.end(), list.grad_spans().begin(), list.grad_spans().end());
  reads.insert(reads.end(), states.states().begin(), states.states().end());
  writes.insert(writes.end(), states.states().begin(), states.states().end());
  reads.insert(reads.end(), {list.table(), states.table(), step_state});
  record_dispatch(
      recorder,
      {.shader = "adafactor", .push = push, .grid = grid_1d(list.tensor_count(), 1), .reads = reads, .writes = writes});
}

}  // namespace vkt::kernels

namespace vkt::ref {

void adafactor(float* param, const float* grad, float* state0, float* state1, size_t n, kernels::AdafactorShape shape,
               uint32_t step, double lr, const kernels::AdafactorConfig& config, float grad_multiplier) {
  const double beta2t = 1.0 - std::pow(static_cast<double>(step), config.decay_rate);
  const bool first = step <= 1;  // the accumulators start from zero
  std::vector<double> g(n), u(n);
  for (size_t i = 0; i < n; i++) g[i] = static_cast<double>(grad[i]) * grad_multiplier;
  if (shape.cols > 0) {
    const size_t rows = shape.rows, cols = shape.cols;
    VKT_ASSERT(rows * cols == n, "adafactor reference: shape does not match the element count");
    double row_sum = 0;
    for (size_t r = 0; r < rows; r++) {
      double sum = 0;
      for (size_t c = 0; c < cols; c++) sum += g[r * cols + c] * g[r * cols + c] + config.eps1;
      state0[r] = static_cast<float>((first ? 0.0 : state0[r]) * beta2t + (1 - beta2t) * (sum / double(cols)));
      row_sum += state0[r];
    }
    for (size_t c = 0; c < cols; c++) {
      double sum = 0;
      for (size_t r = 0; r < rows; r++) sum += g[r * cols + c] * g[r * cols + c] + config.eps1;
      state1[c] = static_cast<float>((first ? 0.0 : state1[c]) * beta2t + (1 - beta2t) * (sum / double(rows)));
    }
    const double row_mean = row_sum / double(rows);
    for (size_t i = 0; i < n; i++)
      u[i] = g[i] / std::sqrt(double(state0[i / cols]) / row_mean) / std::sqrt(double(state1[i % cols]));
  } else {
    for (size_t i = 0; i < n; i++) {
      state0[i] = static_cast<float>((first ? 0.0 : state0[i]) * beta2t + (1 - beta2t) * (g[i] * g[i] + config.eps1));
      u[i] = g[i] / std::sqrt(double(state0[i]));
    }
  }
  double squares = 0;
  for (double value : u) squares += value * value;
  const double divisor = std::max(1.0, std::sqrt(squares / double(n)) / config.clip_threshold);
  for (size_t i = 0; i < n; i++) {
    double x = param[i];
    x += x * (-static_cast<double>(config.weight_decay) * lr);
    param[i] = static_cast<float>(x - u[i] / divisor * lr);
  }
}

}  // namespace vkt::ref
