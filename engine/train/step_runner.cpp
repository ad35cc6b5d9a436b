#include "engine/train/step_runner.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>
#include <regex>

#include "engine/base/error.hpp"
#include "engine/kernels/elementwise.hpp"
#include "engine/kernels/optimizer_8bit.hpp"
#include "engine/train/distributed.hpp"
#include "engine/train/evaluate.hpp"

namespace vkt::train {

bool excluded_from_weight_decay(const std::string& name) {
  // Trainer.get_decay_parameter_names' patterns (transformers 5.23), searched in the lowercased name.
  static const std::regex patterns(R"(bias|layernorm|rmsnorm|(?:^|\.)norm(?:$|\.)|_norm(?:$|\.))");
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return std::regex_search(lower, patterns);
}

float loraplus_lr_scale(const std::string& name, double ratio) {
  return name.ends_with(".lora_B") ? static_cast<float>(ratio) : 1.0f;
}

StepRunner::StepRunner(vk::Context& context, model::ModelSession& session, const OptimizerSettings& settings)
    : context_(context), session_(session), settings_(settings) {
  auto& buffers = *session.buffers;
  const auto& plan = session.plan;
  std::vector<kernels::OptimizerTensor> tensors;
  for (const auto& spec : plan.buffers) {
    if (spec.name.rfind("grad.", 0) != 0) continue;
    std::string name = spec.name.substr(5);
    bool norm_or_bias = excluded_from_weight_decay(name);
    kernels::OptimizerTensor tensor;
    tensor.param = buffers.range(name);
    tensor.grad = buffers.range(spec.name);
    if (settings.optimizer == spec::Optimizer::adamw || settings.optimizer == spec::Optimizer::adamw_8bit) {
      tensor.state0 = buffers.range("adam_m." + name);
      tensor.state1 = buffers.range("adam_v." + name);
    } else if (settings.optimizer == spec::Optimizer::momentum) {
      tensor.state0 = buffers.range("momentum." + name);
    }
    tensor.count = static_cast<uint32_t>(tensor.param.bytes / 4);
    tensor.states_8bit =
        settings.optimizer == spec::Optimizer::adamw_8bit && tensor.count >= kernels::blockwise_8bit_min_elements;
    tensor.decay_scale = norm_or_bias ? 0.0f : 1.0f;
    tensor.lr_scale = loraplus_lr_scale(name, settings.loraplus_lr_ratio);
    tensors.push_back(tensor);
    gradients_.push_back(tensor.grad);
    trainable_names_.push_back(name);
  }
  VKT_ASSERT(!tensors.empty(), "nothing to train");
  tensor_list_ = std::make_unique<kernels::TensorList>(context, tensors);

  auto& transformer = *session.transformer;
  auto body = [&transformer](vk::Recorder& r) {
    transformer.record_forward(r, true, true);
    transformer.record_backward(r);
  };
  micro_ = std::make_unique<vk::Sequence>(context);
  micro_->record(body);
  micro_profiled_ = std::make_unique<vk::Sequence>(context, true);
  micro_profiled_->record(body);
  const vk::BufferRange step_state = buffers.range("step_state");
  const vk::BufferRange loss_step = buffers.buffer("loss.step").range(0, 4);
  const vk::BufferRange loss_window = buffers.buffer("loss.window").range(0, 4);
  const vk::BufferRange loss_scale = buffers.buffer("step_state").range(model::step_state_loss_scale_offset, 4);
  optimizer_ = std::make_unique<vk::Sequence>(context);
  optimizer_->record([&](vk::Recorder& r) {
    kernels::grad_norm(r, *tensor_list_, step_state, static_cast<float>(settings_.max_grad_norm), &loss_step);
    if (settings_.optimizer == spec::Optimizer::adamw || settings_.optimizer == spec::Optimizer::adamw_8bit) {
      kernels::AdamWConfig adamw;
      adamw.beta1 = settings_.beta1;
      adamw.beta2 = settings_.beta2;
      adamw.eps = static_cast<float>(settings_.epsilon);
      adamw.weight_decay = static_cast<float>(settings_.weight_decay);
      if (settings_.optimizer == spec::Optimizer::adamw_8bit)
        kernels::adamw_8bit(r, *tensor_list_, step_state, adamw);
      else
        kernels::adamw(r, *tensor_list_, step_state, adamw);
    } else {
      kernels::SgdConfig sgd;
      sgd.momentum = settings_.optimizer == spec::Optimizer::momentum ? static_cast<float>(settings_.momentum) : 0.0f;
      sgd.weight_decay = static_cast<float>(settings_.weight_decay);
      kernels::sgd(r, *tensor_list_, step_state, sgd);
    }
    // A pruned model's zeros stay zero (vktune prune): weight *= mask after the update.
    for (const auto& spec : session_.plan.buffers)
      if (spec.name.starts_with("prune_mask.")) {
        const vk::BufferRange weight = buffers.range(spec.name.substr(11)), mask = buffers.range(spec.name);
        kernels::scale_channels(r, weight, mask, weight, 1, static_cast<uint32_t>(spec.bytes / 4));
      }
    kernels::zero_gradients(r, *tensor_list_);
    // The step's loss: Σ w·CE over its micro-batches times 1/Σw, added to the logging window.
    kernels::scale(r, loss_step, 1, 1.0f, &loss_scale);
    kernels::axpby(r, loss_step, loss_window, 1, 1.0f, 1.0f);
    r.fill(loss_step);
  });
  eval_ = std::make_unique<vk::Sequence>(context);
  eval_->record([&transformer](vk::Recorder& r) { transformer.record_forward(r, true, false); });
  state_.rng_seed = settings.seed;
}

void StepRunner::reset() {
  auto& buffers = *session_.buffers;
  context_.run([&](vk::Recorder& r) {
    kernels::zero_gradients(r, *tensor_list_);
    for (const auto& spec : session_.plan.buffers)
      if (spec.category == vk::Category::optimizer_state || spec.name.rfind("loss.", 0) == 0)
        r.fill(buffers.range(spec.name));
  });
}

void StepRunner::write_state() { kernels::write_step_state(context_, session_.buffers->buffer("step_state"), state_); }

void StepRunner::upload(const MicroBatch& batch) { upload_micro_batch(context_, *session_.buffers, batch); }

uint32_t StepRunner::step(int64_t step, double lr, const std::vector<MicroBatch>& micro_batches, bool profile) {
  // Σw and tokens of the step over all ranks: each rank's loss and gradient are Σ w·CE / Σw_global,
  // so their sum over ranks is the global step's.
  double totals[2] = {0, 0};
  for (const MicroBatch& batch : micro_batches) {
    totals[0] += batch.weight_sum;
    totals[1] += static_cast<double>(batch.tokens);
  }
  Communicator* ranks = settings_.communicator;
  const int64_t rank_count = ranks ? ranks->size() : 1, rank = ranks ? ranks->rank() : 0;
  if (rank_count > 1) ranks->sum(totals, 2, settings_.deterministic);
  const double weight_sum = totals[0];
  step_tokens_ = static_cast<int64_t>(totals[1]);
  const float loss_weight = weight_sum > 0 ? static_cast<float>(1.0 / weight_sum) : 0.0f;
  state_.spare[0] = loss_weight * (scaler_ ? scaler_->scale() : 1.0f);  // the loss gradient's factor
  const int64_t accumulation = static_cast<int64_t>(micro_batches.size());
  for (int64_t i = 0; i < accumulation; i++) {
    upload(micro_batches[static_cast<size_t>(i)]);
    // A fresh dropout mask per micro-batch, numbered in the global order (Batcher::shard).
    state_.rng_step = static_cast<uint32_t>(((step - 1) * accumulation + i) * rank_count + rank);
    write_state();
    bool profiled = profile && i == 0;
    context_.submit({profiled ? micro_profiled_.get() : micro_.get()});
    if (profiled) {
      std::map<std::string, double> by_kernel;
      for (const auto& timing : micro_profiled_->timings()) by_kernel[timing.label] += timing.milliseconds;
      kernel_times_.clear();
      for (const auto& [name, ms] : by_kernel) kernel_times_.push_back({name, ms * double(accumulation)});
      std::sort(kernel_times_.begin(), kernel_times_.end(),
                [](const KernelTime& a, const KernelTime& b) { return a.milliseconds > b.milliseconds; });
      if (kernel_times_.size() > 12) kernel_times_.resize(12);
    }
  }
  if (rank_count > 1) all_reduce_gradients();
  // Skipped (overflowed) fp16 steps do not advance AdamW's step count, as in torch.
  const auto optimizer_step = static_cast<uint32_t>(scaler_ ? scaler_->optimizer_step(step) : step);
  if (settings_.optimizer == spec::Optimizer::adamw || settings_.optimizer == spec::Optimizer::adamw_8bit) {
    kernels::AdamWConfig adamw;
    adamw.beta1 = settings_.beta1;
    adamw.beta2 = settings_.beta2;
    kernels::set_optimizer_step(state_, optimizer_step, lr, adamw);
  } else {
    kernels::set_optimizer_step(state_, optimizer_step, lr);
  }
  state_.spare[0] = loss_weight;                                  // the step's loss, unscaled
  state_.grad_scale = scaler_ ? scaler_->inverse_scale() : 1.0f;  // unscales norm, clipping and update
  write_state();
  context_.submit({optimizer_.get()});
  // The finite check of this step: one word, read back every step (the submission has completed).
  uint32_t flags = 0;
  context_.download(session_.buffers->buffer("step_state"), &flags, kernels::step_state_flags_offset, 4);
  return flags & kernels::step_flag_non_finite;
}

void StepRunner::all_reduce_gradients() {
  const auto start = std::chrono::steady_clock::now();
  const vk::BufferRange loss_step = session_.buffers->buffer("loss.step").range(0, 4);
  size_t count = 1;
  for (const vk::BufferRange& gradient : gradients_) count += gradient.bytes / 4;
  staging_.resize(count);
  // The norm, clipping and optimizer then run on the summed values, identically on every rank.
  size_t offset = 0;
  for (const vk::BufferRange& gradient : gradients_) {
    context_.download(gradient, staging_.data() + offset);
    offset += gradient.bytes / 4;
  }
  context_.download(loss_step, staging_.data() + offset);
  settings_.communicator->sum(staging_.data(), staging_.size(), settings_.deterministic);
  offset = 0;
  for (const vk::BufferRange& gradient : gradients_) {
    context_.upload(gradient, staging_.data() + offset);
    offset += gradient.bytes / 4;
  }
  context_.upload(loss_step, staging_.data() + offset);
  all_reduce_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double StepRunner::take_loss_sum() {
  auto& buffer = session_.buffers->buffer("loss.window");
  float sum = 0, zero = 0;
  context_.download(buffer, &sum, 0, 4);
  context_.upload(buffer, &zero, 0, 4);
  return sum;
}

kernels::StepState StepRunner::device_state() {
  return kernels::read_step_state(context_, session_.buffers->buffer("step_state"));
}

double StepRunner::evaluate(const std::vector<MicroBatch>& micro_batches) {
  return weighted_loss(context_, session_, *eval_, micro_batches);
}

}  // namespace vkt::train
