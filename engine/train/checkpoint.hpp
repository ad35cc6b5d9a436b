#pragma once
// Checkpoints of a training run, as HF Trainer lays them out: OUTPUT/checkpoint-N/ holds the
// trainable weights (a PEFT adapter, or model.safetensors + config.json for full finetuning),
// optimizer.safetensors (the optimizer states, fp32) and trainer_state.json (where in the data the
// run was and its progress counters). Each folder is written under a temporary name and renamed
// into place, so an interrupted save leaves no half checkpoint. Also the run's final save.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "engine/model/config.hpp"
#include "engine/model/session.hpp"
#include "engine/plan/plan.hpp"
#include "engine/train/batcher.hpp"
#include "engine/train/early_stopping.hpp"
#include "engine/train/loss_scaler.hpp"
#include "engine/train/optimizer_shard.hpp"
#include "engine/train/sixteen_bit_weights.hpp"
#include "engine/vk/context.hpp"

namespace vkt::train {

// The device buffers a checkpoint saves and restores, and what is needed to name and shape them.
struct TrainableState {
  vk::Context* context = nullptr;
  model::BufferSet* buffers = nullptr;
  const plan::MemoryPlan* plan = nullptr;      // method, shape and the optimizer_state buffers
  const model::LoraSettings* lora = nullptr;   // LoRA runs
  std::vector<std::string> trainable_names;    // full finetuning: the weight buffers trained
  const SixteenBitWeights* weights = nullptr;  // full finetuning: reads and writes them in fp32
  const model::ModelConfig* model_config = nullptr;
  std::string base_model;  // --model folder (adapter_config.json, tokenizer files)
  // --shard-optimizer: this rank's slice of the states (the plan's "<state>.shard" buffers;
  // trainable_names then lists every trainable tensor in optimizer order). Checkpoints hold the
  // states gathered to full per-tensor tensors, named and laid out as an unsharded run writes them,
  // so a sharded run's checkpoint resumes with or without sharding, on any number of ranks.
  OptimizerShard* optimizer_shard = nullptr;
  // Sharded saves: gather_sharded_states' result (rank 0 writes these instead of its buffers).
  const std::vector<std::pair<std::string, std::vector<float>>>* gathered_states = nullptr;
};

// --shard-optimizer, collective (every rank, before rank 0 saves): the states as full fp32
// per-tensor values named "<state>.<tensor>" ("adam_m.model.layers.0.self_attn.q_proj.lora_A"),
// and in 16-bit full finetuning the fp32 masters as "master.<tensor>" (the checkpoint's weights).
std::vector<std::pair<std::string, std::vector<float>>> gather_sharded_states(const TrainableState& trainable);

// trainer_state.json (version 1).
struct TrainerState {
  int64_t step = 0, max_steps = 0;
  BatcherPosition position;
  int64_t tokens = 0;
  double elapsed_s = 0;   // training time before this point, over all resumed runs
  float window_loss = 0;  // the device's loss sum since the last logged step ("loss.window")
  int64_t window_steps = 0, window_tokens = 0;
  double window_seconds = 0;
  int64_t seed = 0;
  std::string data;     // --data
  std::string method;   // --method name: a resume with another method is refused
  BestModelState best;  // best metric, best kept checkpoint, early-stopping patience

  std::optional<LossScalerState> loss_scaler;  // --fp16 runs: scale, growth tracker, skipped steps
};

// Writes OUTPUT/checkpoint-STEP.
void save_checkpoint(const TrainableState& trainable, const TrainerState& state,
                     const std::filesystem::path& output_dir);
// --save-total-limit: removes the oldest checkpoint-N folders until `keep` remain. checkpoint-
// `best_step` (--load-best-model-at-end) is never removed: as HF, it counts as the newest, and
// with keep 1 the latest stays beside it.
void prune_checkpoints(const std::filesystem::path& output_dir, int64_t keep, int64_t best_step = -1);
// The folder --resume-from-checkpoint names: itself, or for "latest" the newest checkpoint-N in
// `output_dir` (nullopt when there is none).
std::optional<std::filesystem::path> checkpoint_to_resume(const std::string& resume_from,
                                                          const std::filesystem::path& output_dir);
// Uploads the checkpoint's weights and optimizer states into `trainable`'s buffers and returns its
// trainer state; UserError when `path` is no checkpoint, was written by another --method, or its
// step is not within [0, max_steps] of this run.
TrainerState load_checkpoint(const TrainableState& trainable, const std::filesystem::path& path,
                             const std::string& method, int64_t max_steps);
// Drops the lines of metrics.jsonl logged after `step` (a resumed run logs them again).
void truncate_metrics(const std::filesystem::path& metrics, int64_t step);
// The run's result in `output_dir`: the adapter, or for full finetuning the model in the base's
// torch_dtype with its config.json and the base's tokenizer files.
void save_final_weights(const TrainableState& trainable, const std::filesystem::path& output_dir);

}  // namespace vkt::train
