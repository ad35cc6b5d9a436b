#pragma once
// Full finetuning with 16-bit weights (--method full --bf16 / --fp16, issue 15 item 3): which
// buffer the optimizer updates for each trained tensor, and what follows the update.
//   with master weights (the standard): the optimizer updates the fp32 master.<name> (category
//     master_weights, planned by engine/plan/plan.cpp), then each master's round-to-nearest-even
//     16-bit copy is written into <name>, the weight the forward and backward read;
//   --pure-bf16: no master; adamw_bf16_sr updates the bf16 <name> in place with stochastic
//     rounding (engine/kernels/optimizer_bf16.hpp), the fp32 tensors (norms) with plain AdamW.
//   --shard-optimizer (ZeRO-1): the masters of this rank's slice only ("master.shard", see
//     OptimizerShard::set_masters), started from the model file's values; each rank writes the
//     16-bit copies of its slice, and the 16-bit weights are all-gathered.
// Tensors without a 16-bit weight (fp32 runs, LoRA, norms) are updated in place as before.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/kernels/optimizer_bf16.hpp"
#include "engine/model/session.hpp"
#include "engine/model/tensor_source.hpp"

namespace vkt::train {

class OptimizerShard;

class SixteenBitWeights {
 public:
  explicit SixteenBitWeights(const model::ModelSession& session);
  // Points tensor.param (and count, param_bf16) at what the optimizer updates for `name`.
  void route(kernels::OptimizerTensor& tensor, const std::string& name);
  // --pure-bf16: builds the two lists adamw needs (call once every tensor is routed).
  void finish(vk::Context& context, const std::vector<kernels::OptimizerTensor>& tensors);
  // true: record_adamw replaces the plain adamw over the whole list.
  bool pure() const { return rounded_ != nullptr; }
  // --pure-bf16's AdamW: stochastic rounding on the bf16 weights, plain on the fp32 ones.
  void record_adamw(vk::Recorder& r, const vk::BufferRange& step_state, const kernels::AdamWConfig& config) const;
  // After the optimizer: master -> 16-bit weight (nothing without masters).
  void record_copies(vk::Recorder& r) const;
  // The trained values of `name` in fp32 (the master when there is one, else the weight widened).
  std::vector<float> download(vk::Context& context, const std::string& name) const;
  // Sets `name` (and its master) from fp32 values, as a checkpoint resume does.
  void upload(vk::Context& context, const std::string& name, const std::vector<float>& values) const;

  // --shard-optimizer with 16-bit weights (call before shard.tensors()): the slice's masters live in
  // "master.shard"; `tensors` are the routed tensors (optimizer order).
  bool sharded_masters() const { return session_.buffers->has("master.shard"); }
  void shard_masters(OptimizerShard& shard, const std::vector<kernels::OptimizerTensor>& tensors);
  // Fills the slice's masters from the model's fp32 values (what the loader gives unsharded masters).
  void load_sharded_masters(vk::Context& context, const model::TensorSource& source) const;
  // Checkpoints (collective): ("master.<name>", fp32 masters) of every 16-bit weight.
  std::vector<std::pair<std::string, std::vector<float>>> gather_sharded_masters(vk::Context& context) const;

 private:
  const model::ModelSession& session_;
  kernels::DType weight_type_;  // bf16 / f16 for 16-bit runs, f32 otherwise
  std::vector<kernels::MasterCopy> copies_;
  std::vector<std::string> names_;        // (tensors) routed names, optimizer order
  std::vector<bool> sixteen_bit_weight_;  // (tensors) whether the weight is 16-bit
  OptimizerShard* shard_ = nullptr;       // --shard-optimizer with sharded masters
  std::unique_ptr<kernels::TensorList> rounded_, plain_;
};

}  // namespace vkt::train
