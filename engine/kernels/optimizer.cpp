#include "engine/kernels/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <limits>
#include <map>

#include "engine/base/error.hpp"
#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {

// ---- StepState (host side) ----

void set_optimizer_step(StepState& state, uint32_t step, double learning_rate) {
  VKT_ASSERT(step >= 1, "optimizer steps are 1-based");
  state.step = step;
  state.learning_rate = static_cast<float>(learning_rate);
  state.adam_step_size = static_cast<float>(learning_rate);
  state.adam_bias_correction2_sqrt = 1.0f;
}

void set_optimizer_step(StepState& state, uint32_t step, double learning_rate, const AdamWConfig& adamw) {
  set_optimizer_step(state, step, learning_rate);
  // torch.optim.AdamW (non-capturable): Python floats, i.e. double, then one rounding to fp32
  // when the scalar meets the fp32 tensors.
  double bias_correction1 = 1.0 - std::pow(adamw.beta1, static_cast<double>(step));
  double bias_correction2 = 1.0 - std::pow(adamw.beta2, static_cast<double>(step));
  state.adam_step_size = static_cast<float>(learning_rate / bias_correction1);
  state.adam_bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
}

vk::Buffer allocate_step_state(vk::Context& context, const StepState& initial, const std::string& name) {
  vk::Buffer buffer = context.allocate(sizeof(StepState), vk::Category::workspace, name);
  write_step_state(context, buffer, initial);
  return buffer;
}

void write_step_state(vk::Context& context, const vk::Buffer& buffer, const StepState& state) {
  VKT_ASSERT(buffer.size() >= sizeof(StepState), "step state buffer too small");
  context.upload(buffer, &state, 0, sizeof(StepState));
}

StepState read_step_state(vk::Context& context, const vk::Buffer& buffer) {
  StepState state;
  context.download(buffer, &state, 0, sizeof(StepState));
  return state;
}

// ---- TensorList ----

namespace {
// Merges ranges that live in the same VkBuffer into one covering span per buffer.
std::vector<BufferRange> covering_spans(const std::vector<BufferRange>& ranges) {
  std::map<VkBuffer, BufferRange> spans;
  for (const BufferRange& range : ranges) {
    if (range.bytes == 0) continue;
    auto [it, inserted] = spans.try_emplace(range.buffer, range);
    if (inserted) continue;
    BufferRange& span = it->second;
    VkDeviceAddress begin = std::min(span.address, range.address);
    VkDeviceAddress end = std::max(span.address + span.bytes, range.address + range.bytes);
    span.offset = span.offset - (span.address - begin);  // same VkBuffer: offsets move with addresses
    span.address = begin;
    span.bytes = end - begin;
  }
  std::vector<BufferRange> result;
  for (auto& [buffer, span] : spans) result.push_back(span);
  return result;
}

// The first `bytes` of a range: what a kernel touches of it.
BufferRange prefix(const BufferRange& range, uint64_t bytes) {
  return {range.buffer, range.offset, bytes, range.address};
}
}  // namespace

uint64_t TensorList::table_bytes(uint32_t tensor_count) { return sizeof(Entry) * std::max<uint32_t>(tensor_count, 1); }
uint64_t TensorList::partials_bytes(uint32_t chunk_count) { return 4ull * std::max<uint32_t>(chunk_count, 1); }

uint32_t TensorList::default_chunk_elements(const vk::Capabilities& caps) {
  if (const char* value = std::getenv("VKT_CHUNK_ELEMENTS")) {
    long chunk = std::strtol(value, nullptr, 10);
    if (chunk < threads || chunk % threads != 0 || chunk > (1l << 24))
      throw UserError("VKT_CHUNK_ELEMENTS=" + std::string(value) + " is not a multiple of 256 between 256 and 2^24",
                      "unset it or use e.g. VKT_CHUNK_ELEMENTS=4096");
    return static_cast<uint32_t>(chunk);
  }
  return caps.device_type == VK_PHYSICAL_DEVICE_TYPE_CPU ? 16384u : 4096u;
}

TensorList::TensorList(vk::Context& context, std::vector<OptimizerTensor> tensors, uint32_t chunk_elements,
                       const std::string& name)
    : tensors_(std::move(tensors)),
      chunk_elements_(chunk_elements ? chunk_elements : default_chunk_elements(context.caps())) {
  chunk_elements = chunk_elements_;
  VKT_ASSERT(!tensors_.empty(), name + ": empty tensor list");
  VKT_ASSERT(chunk_elements >= threads && chunk_elements % threads == 0,
             name + ": chunk_elements must be a positive multiple of 256");
  std::vector<BufferRange> params, grads, states;
  uint64_t chunks = 0;
  for (size_t i = 0; i < tensors_.size(); i++) {
    const OptimizerTensor& tensor = tensors_[i];
    std::string what = name + " tensor " + std::to_string(i);
    uint64_t bytes = 4ull * tensor.count;
    VKT_ASSERT(tensor.count <= std::numeric_limits<uint32_t>::max() - chunk_elements, what + ": too many elements");
    const uint64_t param_bytes = (tensor.param_bf16 ? 2ull : 4ull) * tensor.count;
    VKT_ASSERT(tensor.param.bytes >= param_bytes && tensor.grad.bytes >= bytes, what + ": param/grad range too small");
    VKT_ASSERT(tensor.param.address % 4 == 0 && tensor.grad.address % 4 == 0, what + ": unaligned fp32 range");
    bool has0 = tensor.state0.address != 0, has1 = tensor.state1.address != 0;
    // 8-bit states: (count) codes padded to 4 bytes, then an fp32 absmax per 256-block.
    uint64_t state_bytes = tensor.states_8bit ? (bytes / 4 + 3) / 4 * 4 + 4ull * ceil_div(tensor.count, 256) : bytes;
    if (has0) VKT_ASSERT(tensor.state0.bytes >= state_bytes && tensor.state0.address % 4 == 0, what + ": state0 range");
    if (has1) VKT_ASSERT(tensor.state1.bytes >= state_bytes && tensor.state1.address % 4 == 0, what + ": state1 range");
    has_state0_ = has_state0_ && has0;
    has_state1_ = has_state1_ && has1;
    Entry entry{};
    entry.param = tensor.param.address;
    entry.grad = tensor.grad.address;
    entry.state0 = tensor.state0.address;
    entry.state1 = tensor.state1.address;
    entry.count = tensor.count;
    entry.first_chunk = static_cast<uint32_t>(chunks);
    entry.lr_scale = tensor.lr_scale;
    entry.decay_scale = tensor.decay_scale;
    entries_.push_back(entry);
    chunks += ceil_div(tensor.count, chunk_elements);
    element_count_ += tensor.count;
    params.push_back(prefix(tensor.param, param_bytes));
    grads.push_back(prefix(tensor.grad, bytes));
    if (has0) states.push_back(prefix(tensor.state0, state_bytes));
    if (has1) states.push_back(prefix(tensor.state1, state_bytes));
  }
  VKT_ASSERT(chunks <= std::numeric_limits<uint32_t>::max(), name + ": too many chunks");
  chunk_count_ = static_cast<uint32_t>(chunks);
  param_spans_ = covering_spans(params);
  grad_spans_ = covering_spans(grads);
  state_spans_ = covering_spans(states);

  table_ = context.allocate(table_bytes(tensor_count()), vk::Category::workspace, name + ".table");
  context.upload(table_, entries_.data(), 0, sizeof(Entry) * entries_.size());
  partials_ = context.allocate(partials_bytes(chunk_count_), vk::Category::workspace, name + ".partials");
}

// ---- kernels ----

namespace {
std::vector<BufferRange> joined(std::initializer_list<const std::vector<BufferRange>*> parts,
                                std::initializer_list<BufferRange> more = {}) {
  std::vector<BufferRange> result;
  for (const auto* part : parts) result.insert(result.end(), part->begin(), part->end());
  result.insert(result.end(), more.begin(), more.end());
  return result;
}

void check_step_state(const BufferRange& step_state, const char* op) {
  require_bytes(step_state, sizeof(StepState), op, "step_state");
  VKT_ASSERT(step_state.address % 16 == 0, std::string(op) + ": step_state is not 16-byte aligned");
}
}  // namespace

void grad_norm(Recorder& recorder, const TensorList& list, const BufferRange& step_state, float max_norm,
               const BufferRange* loss) {
  check_step_state(step_state, "grad_norm");
  if (loss) require_bytes(*loss, 4, "grad_norm", "loss");
  struct {
    uint64_t table, partials, step_state;
    uint32_t tensor_count, chunk_count, chunk_elements;
  } partial_push{list.table().address, list.partials().address, step_state.address,
                 list.tensor_count(),  list.chunk_count(),      list.chunk_elements()};
  record_dispatch(recorder, {.shader = "grad_norm",
                             .push = partial_push,
                             .grid = grid_1d(list.chunk_count(), 1),
                             .reads = joined({&list.grad_spans()}, {list.table(), step_state}),
                             .writes = {list.partials()}});
  struct {
    uint64_t partials, step_state, loss;
    uint32_t chunk_count;
    float max_norm;
  } finish_push{list.partials().address, step_state.address, loss ? loss->address : 0, list.chunk_count(), max_norm};
  std::vector<BufferRange> reads = {list.partials(), step_state};
  if (loss) reads.push_back(*loss);
  record_dispatch(
      recorder,
      {.shader = "grad_norm_finish", .push = finish_push, .grid = {1, 1, 1}, .reads = reads, .writes = {step_state}});
}

void adamw(Recorder& recorder, const TensorList& list, const BufferRange& step_state, const AdamWConfig& config) {
  record_adamw_shader(recorder, list, step_state, config, "adamw");
}

void record_adamw_shader(Recorder& recorder, const TensorList& list, const BufferRange& step_state,
                         const AdamWConfig& config, const char* shader) {
  check_step_state(step_state, shader);
  VKT_ASSERT(list.has_state0() && list.has_state1(),
             std::string(shader) + ": every tensor needs exp_avg (state0) and exp_avg_sq (state1)");
  // Flat, in the shader's std430 order (a nested struct would be padded to 8 bytes).
  struct {
    uint64_t table, step_state;
    uint32_t tensor_count, chunk_count, chunk_elements;
    float beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay;
  } push{list.table().address,
         step_state.address,
         list.tensor_count(),
         list.chunk_count(),
         list.chunk_elements(),
         static_cast<float>(config.beta1),
         static_cast<float>(config.beta2),
         static_cast<float>(1.0 - config.beta1),
         static_cast<float>(1.0 - config.beta2),
         config.eps,
         config.weight_decay};
  static_assert(offsetof(decltype(push), weight_decay) == 48, "push constants must match shaders/adamw.comp");
  record_dispatch(recorder, {.shader = shader,
                             .push = push,
                             .grid = grid_1d(list.chunk_count(), 1),
                             .reads = joined({&list.param_spans(), &list.grad_spans(), &list.state_spans()},
                                             {list.table(), step_state}),
                             .writes = joined({&list.param_spans(), &list.state_spans()})});
}

void sgd(Recorder& recorder, const TensorList& list, const BufferRange& step_state, const SgdConfig& config) {
  check_step_state(step_state, "sgd");
  bool momentum = config.momentum != 0.0f;
  VKT_ASSERT(!momentum || list.has_state0(), "sgd: momentum needs a momentum buffer (state0) for every tensor");
  VKT_ASSERT(!config.nesterov || (momentum && config.dampening == 0.0f),
             "sgd: nesterov needs momentum and zero dampening");
  struct {
    uint64_t table, step_state;
    uint32_t tensor_count, chunk_count, chunk_elements;
    float momentum, one_minus_dampening, weight_decay;
    uint32_t nesterov;
  } push{list.table().address,
         step_state.address,
         list.tensor_count(),
         list.chunk_count(),
         list.chunk_elements(),
         config.momentum,
         static_cast<float>(1.0 - double(config.dampening)),
         config.weight_decay,
         config.nesterov ? 1u : 0u};
  static_assert(offsetof(decltype(push), nesterov) == 40, "push constants must match shaders/sgd.comp");
  std::vector<BufferRange> states = momentum ? list.state_spans() : std::vector<BufferRange>{};
  record_dispatch(recorder,
                  {.shader = "sgd",
                   .push = push,
                   .grid = grid_1d(list.chunk_count(), 1),
                   .reads = joined({&list.param_spans(), &list.grad_spans(), &states}, {list.table(), step_state}),
                   .writes = joined({&list.param_spans(), &states})});
}

void scale_gradients(Recorder& recorder, const TensorList& list, float factor) {
  struct {
    uint64_t table;
    uint32_t tensor_count, chunk_count, chunk_elements;
    float factor;
  } push{list.table().address, list.tensor_count(), list.chunk_count(), list.chunk_elements(), factor};
  record_dispatch(recorder, {.shader = "scale_gradients",
                             .push = push,
                             .grid = grid_1d(list.chunk_count(), 1),
                             .reads = joined({&list.grad_spans()}, {list.table()}),
                             .writes = list.grad_spans()});
}

void zero_gradients(Recorder& recorder, const TensorList& list) {
  // Sorted by address, ranges that touch in the same VkBuffer become one fill.
  std::vector<BufferRange> ranges;
  for (const OptimizerTensor& tensor : list.tensors())
    if (tensor.count) ranges.push_back(prefix(tensor.grad, 4ull * tensor.count));
  std::sort(ranges.begin(), ranges.end(),
            [](const BufferRange& a, const BufferRange& b) { return a.address < b.address; });
  std::vector<BufferRange> fills;
  for (const BufferRange& range : ranges) {
    BufferRange* last = fills.empty() ? nullptr : &fills.back();
    if (last && last->buffer == range.buffer && last->address + last->bytes >= range.address) {
      last->bytes = std::max(last->address + last->bytes, range.address + range.bytes) - last->address;
    } else {
      fills.push_back(range);
    }
  }
  for (const BufferRange& fill : fills) recorder.fill(fill, 0);
}

}  // namespace vkt::kernels

namespace vkt::ref {

double grad_norm(const std::vector<const float*>& grads, const std::vector<size_t>& counts, double scale) {
  // The kernel's fp32 product scale * g (an Inf/NaN element, or one the scale overflows, gives a
  // non-finite norm), squared and summed in double.
  double sum = 0;
  for (size_t t = 0; t < grads.size(); t++)
    for (size_t i = 0; i < counts[t]; i++) {
      const double g = static_cast<float>(grads[t][i] * static_cast<float>(scale));
      sum += g * g;
    }
  return std::sqrt(sum);
}

float clip_coefficient(double norm, float max_norm) {
  if (max_norm <= 0) return 1.0f;
  return static_cast<float>(std::min(1.0, max_norm / (norm + 1e-6)));
}

void adamw(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, size_t n, uint32_t step, double lr,
           const kernels::AdamWConfig& config, float grad_multiplier) {
  double bias_correction1 = 1.0 - std::pow(config.beta1, double(step));
  double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(config.beta2, double(step)));
  for (size_t i = 0; i < n; i++) {
    double g = static_cast<double>(grad[i]) * grad_multiplier;
    double x = static_cast<double>(param[i]) * (1.0 - lr * config.weight_decay);
    double m = step <= 1 ? 0.0 : exp_avg[i];
    double v = step <= 1 ? 0.0 : exp_avg_sq[i];
    m = config.beta1 * m + (1.0 - config.beta1) * g;
    v = config.beta2 * v + (1.0 - config.beta2) * g * g;
    x -= lr / bias_correction1 * m / (std::sqrt(v) / bias_correction2_sqrt + config.eps);
    exp_avg[i] = static_cast<float>(m);
    exp_avg_sq[i] = static_cast<float>(v);
    param[i] = static_cast<float>(x);
  }
}

void sgd(float* param, const float* grad, float* momentum_buffer, size_t n, uint32_t step, double lr,
         const kernels::SgdConfig& config, float grad_multiplier) {
  for (size_t i = 0; i < n; i++) {
    double g = static_cast<double>(grad[i]) * grad_multiplier + double(config.weight_decay) * param[i];
    if (config.momentum != 0) {
      double buffered = step <= 1 ? g : double(config.momentum) * momentum_buffer[i] + (1.0 - config.dampening) * g;
      momentum_buffer[i] = static_cast<float>(buffered);
      g = config.nesterov ? g + double(config.momentum) * buffered : buffered;
    }
    param[i] = static_cast<float>(param[i] - lr * g);
  }
}

}  // namespace vkt::ref
