#pragma once
// One optimizer step on the device: k micro-batches (forward + backward, recorded once and
// replayed), then the optimizer submission (global norm, clipping, AdamW/SGD, zeroing, loss
// bookkeeping), also recorded once. Per-step values go through the StepState buffer:
// learning rate, step, RNG step and 1/Σw (the loss normaliser over the step's micro-batches).
#include <memory>
#include <string>
#include <vector>

#include "engine/kernels/adafactor.hpp"
#include "engine/kernels/optimizer.hpp"
#include "engine/model/session.hpp"
#include "engine/train/batcher.hpp"
#include "engine/train/gradient_buckets.hpp"
#include "engine/train/loss_scaler.hpp"
#include "engine/train/monitor.hpp"
#include "engine/train/optimizer_shard.hpp"
#include "engine/train/sixteen_bit_weights.hpp"

namespace vkt::train {

class Communicator;

// Whether weight decay skips the parameter `name` (an HF name): transformers' Trainer skips every
// name matching bias, layernorm, rmsnorm, (^|.)norm($|.) or _norm($|.) (lowercased), so biases and
// all norms (input_layernorm, Gemma's feed-forward norms, q_norm/k_norm, model.norm) go undecayed.
bool excluded_from_weight_decay(const std::string& name);

// LoRA+'s learning-rate multiplier of the parameter `name` (a vktune buffer name), as PEFT 0.21's
// create_loraplus_optimizer groups them: lora_B (and any 1-D parameter; vktune's LoRA has none)
// at `ratio`, everything else at 1: lora_A and the modules_to_save / trainable-token tensors too
// (PEFT's loraplus_lr_embedding only reaches LoRA on an embedding layer, which vktune has not).
float loraplus_lr_scale(const std::string& name, double ratio);

struct OptimizerSettings {
  spec::Optimizer optimizer = spec::Optimizer::adamw;
  double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8, weight_decay = 0, momentum = 0.9;
  double max_grad_norm = 1.0;
  double loraplus_lr_ratio = 1;  // LoRA+: lora_B tensors step at lr * this
  uint32_t seed = 42;            // dropout RNG
  // Data parallelism (distributed.hpp): the ranks whose gradients, Σw and loss each step sums
  // (null: one process); deterministic sums them in rank order.
  Communicator* communicator = nullptr;
  bool deterministic = false;
  // --ddp-bucket-cap-mb: gradient bytes per bucket summed while the backward goes on (<= 0: one
  // bucket after the whole backward).
  double bucket_cap_bytes = 25.0 * 1024 * 1024;
};

class StepRunner {
 public:
  StepRunner(vk::Context& context, model::ModelSession& session, const OptimizerSettings& settings);

  // Zeroes gradients, optimizer states and loss accumulators (a fresh run).
  void reset();
  // Runs optimizer step `step` (1-based) over `micro_batches` at learning rate `lr`. With
  // `profile`, the first micro-batch records GPU time per kernel (kernel_times()). Returns the
  // step's kernels::step_flag_non_finite bits (0: finite); a flagged step left the weights and
  // optimizer states untouched (the optimizers skip it on the device), only the loss window
  // holds the non-finite loss.
  uint32_t step(int64_t step, double lr, const std::vector<MicroBatch>& micro_batches, bool profile = false);
  // Σ over steps since the last call of each step's loss (Σ w·CE / Σ w); resets the sum.
  double take_loss_sum();
  // The global gradient norm of the last step (before clipping) and its clip coefficient.
  kernels::StepState device_state();
  // Weighted loss over `micro_batches` without training (Σ w·CE / Σ w).
  double evaluate(const std::vector<MicroBatch>& micro_batches);
  // Every kernel kind of the last profiled micro-batch (times x accumulation), largest first.
  const std::vector<KernelTime>& kernel_times() const { return kernel_times_; }
  // The last step's non-padding tokens over all ranks, and the seconds of the gradient all-reduces
  // that the backward did not hide (plus --shard-optimizer's weight all-gather; 0 for one process).
  int64_t step_tokens() const { return step_tokens_; }
  double all_reduce_seconds() const { return all_reduce_seconds_; }  // summed since the last take
  double take_all_reduce_seconds() {
    double seconds = all_reduce_seconds_;
    all_reduce_seconds_ = 0;
    return seconds;
  }
  // The seconds the gradient sums took in all, hidden or not (plus the weight all-gather, never
  // hidden), since the last take.
  double take_all_reduce_busy_seconds() {
    double seconds = (buckets_ ? buckets_->take_busy_seconds() : 0.0) + all_gather_seconds_;
    all_gather_seconds_ = 0;
    return seconds;
  }

  // --shard-optimizer: this rank's slice (null when every rank holds every state).
  OptimizerShard* optimizer_shard() const { return shard_.get(); }
  // Trainable tensors (parameter buffer names) in optimizer order.
  const std::vector<std::string>& trainable_names() const { return trainable_names_; }
  uint64_t trainable_elements() const { return tensor_list_->element_count(); }
  // Adds the micro-batch's tokens to the inputs (ids, targets, weights, positions, segments).
  void upload(const MicroBatch& batch);
  // fp16 loss scaling (nullptr: none): step() multiplies the loss gradient by scaler->scale(),
  // unscales in the optimizer pass (StepState.grad_scale) and gives AdamW scaler->optimizer_step().
  // The caller updates the scaler with step()'s flags. Scale 1 leaves every bit as without.
  void set_loss_scaler(const LossScaler* scaler) { scaler_ = scaler; }
  // The trained weights in and out in fp32 (checkpoints, export): masters or 16-bit weights.
  const SixteenBitWeights& sixteen_bit_weights() const { return sixteen_bit_; }

 private:
  void write_state();
  vk::Context& context_;
  model::ModelSession& session_;
  OptimizerSettings settings_;
  std::vector<std::string> trainable_names_;
  std::unique_ptr<kernels::TensorList> tensor_list_;  // every trainable tensor: norm, zeroing, unsharded update
  std::unique_ptr<OptimizerShard> shard_;             // --shard-optimizer: this rank's slice
  std::unique_ptr<kernels::TensorList> update_list_;  // the slice's pieces, states in the shard buffers
  std::vector<vk::BufferRange> parameters_;           // sharded: the trainable tensors' ranges, optimizer order
  std::unique_ptr<kernels::AdafactorTable> adafactor_states_;  // --optim adafactor
  SixteenBitWeights sixteen_bit_;  // master weights or --pure-bf16's rounding (16-bit full finetuning)
  std::unique_ptr<vk::Sequence> micro_, micro_profiled_, optimizer_, eval_;
  kernels::StepState state_;
  std::vector<KernelTime> kernel_times_;
  const LossScaler* scaler_ = nullptr;
  std::vector<vk::BufferRange> gradients_;    // the trainable tensors' grad.* ranges, optimizer order
  std::unique_ptr<GradientBuckets> buckets_;  // several ranks: the gradient sum, overlapped with the backward
  int64_t step_tokens_ = 0;
  double all_reduce_seconds_ = 0;
  double all_gather_seconds_ = 0;  // --shard-optimizer's weight all-gather, since the last busy take
};

}  // namespace vkt::train
