#pragma once
// Knowledge distillation (`vktune train --objective distill --teacher DIR`): a frozen teacher model
// opened beside the student on the same device, planned for the student's micro-batch shape, whose
// logits the student's fused loss reads chunk by chunk (kernels::distill_loss through
// model::Transformer::set_distill_teacher). The teacher may differ in size (hidden, layers, heads);
// it must share the student's tokenizer and vocabulary.
#include <filesystem>
#include <memory>

#include "engine/model/session.hpp"
#include "engine/plan/plan.hpp"
#include "engine/spec/run_settings.hpp"

namespace vkt::train {

struct TrainConfig;

struct DistillSettings {
  std::filesystem::path teacher;          // an HF model folder (config.json, safetensors, tokenizer.json)
  std::filesystem::path teacher_adapter;  // a PEFT LoRA adapter on the teacher (empty: none)
  double temperature = 2.0;               // T: both softmaxes of the KL term are taken at logits / T
  double alpha = 0.5;                     // loss = alpha * T^2 * KL + (1 - alpha) * CE
};
DistillSettings distill_settings(const TrainConfig& config);
bool is_distill(const TrainConfig& config);
// UserError on flags that do not go with --objective distill (or distillation flags without it).
void validate_distill(const TrainConfig& config);

// UserError naming both files unless the student's and the teacher's tokenizers are the same:
// tokenizer.json equal byte for byte, or with the same vocabulary, merges and added tokens. Folders
// without tokenizer.json (test fixtures) are compared by their config's vocab_size only.
void check_same_tokenizer(const std::filesystem::path& student_dir, const std::filesystem::path& teacher_dir);

// The teacher's run settings: inference (no gradients, no KV cache) with the student's batch, seq_len,
// logits chunk, weight format and activation storage; with_adapter when a teacher adapter is given.
spec::RunSettings teacher_run_settings(const spec::RunSettings& student, const DistillSettings& settings);
// The teacher's memory plan (its weights and forward activations): what the pre-flight adds to the student's.
plan::MemoryPlan teacher_plan(const spec::RunSettings& student, const DistillSettings& settings);

struct Teacher {
  model::LoraSettings lora;  // the teacher adapter's settings (unused without one)
  std::unique_ptr<model::ModelSession> session;
};
// Opens the teacher (weights, and its adapter) on `context` and attaches it to the student's transformer.
// UserError when its vocabulary differs from the student's.
std::unique_ptr<Teacher> open_teacher(vk::Context& context, model::ModelSession& student,
                                      const DistillSettings& settings);

}  // namespace vkt::train
