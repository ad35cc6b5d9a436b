#pragma once
// Advice from the hyperparameter rules of thumb (issue 23: the finetuning book's chapter):
// `vktune train` and `vktune plan` print these as warnings and never refuse a run for them.
//  - LoRA rank in [4, 64]; alpha:r between 1:8 and 8:1;
//  - learning rate in [1e-7, 1e-3], and not above the base's pretraining rate when it is known;
//  - epochs by data size: millions of examples 1-2, hundreds of thousands 2-4, fewer 4-10; a run
//    is "far" from the rule below half the range's low end or above 1.5 x its high end.
// A full finetune that does not fit gets LoRA and QLoRA proposed with their planned bytes.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "engine/plan/plan.hpp"
#include "engine/train/config.hpp"

namespace vkt::train {

struct AdviceFacts {
  std::optional<double> pretraining_learning_rate;  // the base's peak learning rate (read_pretraining_lr)
  std::optional<int64_t> examples;                  // training examples
  std::optional<double> epochs;                     // epochs the run makes over them
};

// One line per rule the configuration breaks (empty for a sane configuration).
std::vector<std::string> hyperparameter_advice(const TrainConfig& config, const AdviceFacts& facts);

// The epochs the rule of thumb gives for `examples`: {low, high}.
std::pair<double, double> recommended_epochs(int64_t examples);

struct PretrainingLr {
  double learning_rate = 0;
  std::string source;  // which file and field it came from
};
// The base's pretraining learning rate when its folder records it, in this order: vktune's
// run.json (schedule.peak_lr, else config.learning_rate), HF Trainer's trainer_state.json (the
// largest log_history learning_rate), training_args.json (learning_rate). nullopt when none
// exists (a .gguf file too).
std::optional<PretrainingLr> read_pretraining_lr(const std::filesystem::path& model);
// Its rate alone.
std::optional<double> pretraining_rate(const std::filesystem::path& model);

// Non-empty lines of the --data files (`vktune plan`'s count of examples: a mixture's epoch holds
// as many as all its files); nullopt when one is unreadable.
std::optional<int64_t> count_data_examples(const std::string& data);

// For a full finetune beyond `budget`: LoRA and QLoRA (all linear layers, rank `lora_r`) with the
// device bytes each plans and whether it fits, e.g. "--method qlora ...: 1.2 GiB (fits)" (and
// with --gradient-checkpointing when it does not).
// The base stays in the model's torch_dtype (what --dtype auto gives a LoRA run).
std::vector<std::string> lighter_method_advice(const plan::MemoryPlan& full, uint32_t lora_r,
                                               const std::string& torch_dtype, uint64_t budget);

}  // namespace vkt::train
