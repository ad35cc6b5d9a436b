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
#include "engine/train/optimizer_shard.hpp"

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
    : context_(context), session_(session), settings_(settings), sixteen_bit_(session) {
  auto& buffers = *session.buffers;
  const auto& plan = session.plan;
  std::vector<kernels::OptimizerTensor> tensors;
  std::vector<kernels::AdafactorTensor> adafactor_tensors;  // --optim adafactor: states and shapes
  // ZeRO-1: the states live in the shard buffers (optimizer_shard.hpp), not per tensor.
  const bool sharded = plan.settings.optimizer_shards > 1;
  VKT_ASSERT(!sharded || (settings.communicator &&
                          settings.communicator->size() == static_cast<int>(plan.settings.optimizer_shards)),
             "--shard-optimizer: the plan's shard count is not the number of ranks");
  for (const auto& spec : plan.buffers) {
    if (spec.name.rfind("grad.", 0) != 0) continue;
    std::string name = spec.name.substr(5);
    bool norm_or_bias = excluded_from_weight_decay(name);
    kernels::OptimizerTensor tensor;
    sixteen_bit_.route(tensor, name);  // the weight, or its fp32 master (16-bit full finetuning)
    tensor.grad = buffers.range(spec.name);
    if (sharded) {
    } else if (settings.optimizer == spec::Optimizer::adamw || settings.optimizer == spec::Optimizer::adamw_8bit) {
      tensor.state0 = buffers.range("adam_m." + name);
      tensor.state1 = buffers.range("adam_v." + name);
    } else if (settings.optimizer == spec::Optimizer::momentum) {
      tensor.state0 = buffers.range("momentum." + name);
    } else if (settings.optimizer == spec::Optimizer::adafactor) {  // HF's shape decides the factoring
      const uint64_t count = tensor.param.bytes / 4;
      const std::vector<uint64_t> dims = plan::hf_parameter_shape(plan.shape, plan.settings.lora_r, name, count);
      const bool factored = dims.size() == 2;
      kernels::AdafactorTensor states;
      states.state0 = buffers.range((factored ? "adafactor_row." : "adafactor_v.") + name);
      if (factored) states.state1 = buffers.range("adafactor_col." + name);
      states.shape = {static_cast<uint32_t>(dims[0]), factored ? static_cast<uint32_t>(dims[1]) : 0u};
      kernels::check_adafactor_fits(name, static_cast<uint32_t>(count), states.shape);  // before any step
      adafactor_tensors.push_back(states);
    }
    tensor.states_8bit =
        settings.optimizer == spec::Optimizer::adamw_8bit && tensor.count >= kernels::blockwise_8bit_min_elements;
    tensor.decay_scale = norm_or_bias ? 0.0f : 1.0f;
    tensor.lr_scale = loraplus_lr_scale(name, settings.loraplus_lr_ratio);
    tensors.push_back(tensor);
    gradients_.push_back(tensor.grad);
    trainable_names_.push_back(name);
  }
  VKT_ASSERT(!tensors.empty(), "nothing to train");
  // ZeRO-1 with 16-bit weights: the whole list feeds only the norm and the zeroing, which read no
  // weight; a 16-bit weight (its masters are the slice's, OptimizerShard::set_masters) is listed by
  // its gradient's fp32 range.
  std::vector<kernels::OptimizerTensor> listed = tensors;
  if (sixteen_bit_.sharded_masters())
    for (kernels::OptimizerTensor& tensor : listed)
      if (tensor.param.bytes < 4ull * tensor.count) tensor.param = tensor.grad;
  tensor_list_ = std::make_unique<kernels::TensorList>(context, listed);
  if (!adafactor_tensors.empty())
    adafactor_states_ = std::make_unique<kernels::AdafactorTable>(context, adafactor_tensors);
  if (sharded) {
    std::vector<uint64_t> counts;
    for (const kernels::OptimizerTensor& tensor : tensors) {
      counts.push_back(tensor.count);
      parameters_.push_back(tensor.param);
    }
    const bool blockwise_8bit = settings.optimizer == spec::Optimizer::adamw_8bit;  // slices on whole blocks
    shard_ = std::make_unique<OptimizerShard>(*settings.communicator, counts, blockwise_8bit);
    const bool adam = settings.optimizer == spec::Optimizer::adamw || blockwise_8bit;
    if (sixteen_bit_.sharded_masters()) sixteen_bit_.shard_masters(*shard_, tensors);  // 16-bit full finetuning
    const bool momentum = settings.optimizer == spec::Optimizer::momentum;
    const vk::BufferRange state0 = adam       ? buffers.range("adam_m.shard")
                                   : momentum ? buffers.range("momentum.shard")
                                              : vk::BufferRange{};
    const vk::BufferRange state1 = adam ? buffers.range("adam_v.shard") : vk::BufferRange{};
    if (!shard_->pieces().empty())  // a rank with no elements (fewer elements than ranks) updates nothing
      update_list_ =
          std::make_unique<kernels::TensorList>(context, shard_->tensors(tensors, state0, state1), 0, "shard_list");
  }
  sixteen_bit_.finish(context, tensors);

  auto& transformer = *session.transformer;
  auto body = [&transformer](vk::Recorder& r) {
    transformer.record_forward(r, true, true);
    transformer.record_backward(r);
  };
  micro_ = std::make_unique<vk::Sequence>(context);
  micro_->record(body);
  micro_profiled_ = std::make_unique<vk::Sequence>(context, true);
  micro_profiled_->record(body);
  if (settings.communicator && settings.communicator->size() > 1) {
    buckets_ = std::make_unique<GradientBuckets>(context, *settings.communicator, settings.deterministic, gradients_,
                                                 trainable_names_, buffers.buffer("loss.step").range(0, 12),
                                                 transformer.layer_count(), settings.bucket_cap_bytes);
    buckets_->record([&transformer](vk::Recorder& r, const GradientBuckets::Group& group) {
      if (group.layer_end == transformer.layer_count()) transformer.record_forward(r, true, true);
      transformer.record_backward(r, group.layer_begin, group.layer_end);
    });
  }
  const vk::BufferRange step_state = buffers.range("step_state");
  const vk::BufferRange loss_step = buffers.buffer("loss.step").range(0, 4);
  const vk::BufferRange loss_scale = buffers.buffer("step_state").range(model::step_state_loss_scale_offset, 4);
  optimizer_ = std::make_unique<vk::Sequence>(context);
  optimizer_->record([&](vk::Recorder& r) {
    if (buckets_) buckets_->record_copy_back(r);  // the gradients summed over the ranks
    kernels::grad_norm(r, *tensor_list_, step_state, static_cast<float>(settings_.max_grad_norm), &loss_step);
    // Sharded: the norm above saw every gradient; the update below touches this rank's slice.
    const kernels::TensorList& update = shard_ ? *update_list_ : *tensor_list_;
    if (shard_ && !update_list_) {
    } else if (settings_.optimizer == spec::Optimizer::adafactor) {
      kernels::AdafactorConfig adafactor;
      adafactor.weight_decay = static_cast<float>(settings_.weight_decay);
      kernels::adafactor(r, update, *adafactor_states_, step_state, adafactor);
    } else if (settings_.optimizer == spec::Optimizer::adamw || settings_.optimizer == spec::Optimizer::adamw_8bit) {
      kernels::AdamWConfig adamw;
      adamw.beta1 = settings_.beta1;
      adamw.beta2 = settings_.beta2;
      adamw.eps = static_cast<float>(settings_.epsilon);
      adamw.weight_decay = static_cast<float>(settings_.weight_decay);
      if (settings_.optimizer == spec::Optimizer::adamw_8bit)
        kernels::adamw_8bit(r, update, step_state, adamw);
      else if (sixteen_bit_.pure())
        sixteen_bit_.record_adamw(r, step_state, adamw);
      else
        kernels::adamw(r, update, step_state, adamw);
    } else {
      kernels::SgdConfig sgd;
      sgd.momentum = settings_.optimizer == spec::Optimizer::momentum ? static_cast<float>(settings_.momentum) : 0.0f;
      sgd.weight_decay = static_cast<float>(settings_.weight_decay);
      kernels::sgd(r, update, step_state, sgd);
    }
    // A pruned model's zeros stay zero (vktune prune): weight *= mask after the update (on the fp32 master
    // when 16-bit full finetuning keeps one, before its 16-bit copy is written).
    for (const auto& spec : session_.plan.buffers)
      if (spec.name.starts_with("prune_mask.")) {
        const std::string weight_name = spec.name.substr(11);
        const std::string master_name = "master." + weight_name;
        const vk::BufferRange weight = buffers.range(session_.plan.contains(master_name) ? master_name : weight_name),
                              mask = buffers.range(spec.name);
        kernels::scale_channels(r, weight, mask, weight, 1, static_cast<uint32_t>(spec.bytes / 4));
      }
    sixteen_bit_.record_copies(r);  // masters -> their 16-bit weights
    kernels::zero_gradients(r, *tensor_list_);
    session_.transformer->record_prompt_encoder(r);  // P-tuning: the updated encoder's prompt (what a save reads)
    // The step's loss: Σ w·CE over its micro-batches times 1/Σw, added to the logging window; with
    // distillation also its KL and CE parts ([1] and [2], zero otherwise).
    const vk::BufferRange loss_values = buffers.buffer("loss.step").range(0, 12);
    kernels::scale(r, loss_values, 3, 1.0f, &loss_scale);
    kernels::axpby(r, loss_values, buffers.buffer("loss.window").range(0, 12), 3, 1.0f, 1.0f);
    r.fill(loss_values);
  });
  eval_ = std::make_unique<vk::Sequence>(context);
  // Eval mode, as HF's Trainer.evaluate: no LoRA or encoder dropout.
  eval_->record([&transformer](vk::Recorder& r) { transformer.record_forward(r, true, false, false); });
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
    const bool last = i + 1 == accumulation;
    if (buckets_ && last && !profiled)
      buckets_->run();  // the backward, its finished buckets summed as it goes
    else if (buckets_ && last)
      buckets_->run_whole(*micro_profiled_);
    else
      context_.submit({profiled ? micro_profiled_.get() : micro_.get()});
    if (profiled) {
      std::map<std::string, double> by_kernel;
      for (const auto& timing : micro_profiled_->timings()) by_kernel[timing.label] += timing.milliseconds;
      kernel_times_.clear();
      for (const auto& [name, ms] : by_kernel) kernel_times_.push_back({name, ms * double(accumulation)});
      std::sort(kernel_times_.begin(), kernel_times_.end(),
                [](const KernelTime& a, const KernelTime& b) { return a.milliseconds > b.milliseconds; });
    }
  }
  if (buckets_) all_reduce_seconds_ += buckets_->take_exposed_seconds();
  // Skipped (overflowed) fp16 steps do not advance AdamW's step count, as in torch.
  const auto optimizer_step = static_cast<uint32_t>(scaler_ ? scaler_->optimizer_step(step) : step);
  if (settings_.optimizer == spec::Optimizer::adamw || settings_.optimizer == spec::Optimizer::adamw_8bit) {
    kernels::AdamWConfig adamw;
    adamw.beta1 = settings_.beta1;
    adamw.beta2 = settings_.beta2;
    kernels::set_optimizer_step(state_, optimizer_step, lr, adamw);
  } else if (settings_.optimizer == spec::Optimizer::adafactor) {
    kernels::set_adafactor_step(state_, optimizer_step, lr, kernels::AdafactorConfig{});
  } else {
    kernels::set_optimizer_step(state_, optimizer_step, lr);
  }
  state_.spare[0] = loss_weight;                                  // the step's loss, unscaled
  state_.grad_scale = scaler_ ? scaler_->inverse_scale() : 1.0f;  // unscales norm, clipping and update
  write_state();
  context_.submit({optimizer_.get()});
  if (shard_) {  // every rank's updated slice to every rank
    const auto start = std::chrono::steady_clock::now();
    shard_->all_gather_parameters(context_, parameters_);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    all_reduce_seconds_ += seconds;
    all_gather_seconds_ += seconds;
  }
  // The finite check of this step: one word, read back every step (the submission has completed).
  uint32_t flags = 0;
  context_.download(session_.buffers->buffer("step_state"), &flags, kernels::step_state_flags_offset, 4);
  // --fp16 under mpirun: every rank checked the same summed gradients, so the device skipped the
  // update on all ranks or none; the scaler's host state (scale, skips, AdamW's step) follows the
  // global decision too, so no rank's scale can drift from the others'.
  if (scaler_ && scaler_->enabled() && rank_count > 1 && ranks->any((flags & kernels::step_flag_non_finite) != 0))
    flags |= kernels::step_flag_non_finite;
  return flags & kernels::step_flag_non_finite;
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
