#pragma once
// Shared pieces of the end-to-end objective tests (implemented in tests/tiny_model.cpp).
#include <cstdint>
#include <filesystem>
#include <string>

#include "engine/train/config.hpp"

namespace vkt::test {

// A tiny_model-shaped Llama whose byte-level tokenizer has the three FIM tokens (<fim_prefix>,
// <fim_suffix>, <fim_middle>) added (once per process per directory).
std::filesystem::path fim_tiny_model(const std::filesystem::path& directory);

// A run of `full`, then the same run crashed after step `crash_at` (checkpoints every `save_steps`)
// and resumed from the latest checkpoint: every logged loss must be bit-identical (doctest checks).
void check_resume(const train::TrainConfig& full, int64_t crash_at, int64_t save_steps);

// The RMS difference over the RMS of the tensors of two output folders' adapter_model.safetensors
// (model.safetensors for full finetuning): how far two runs' trained weights are apart.
double relative_weight_difference(const std::string& a_dir, const std::string& b_dir);

}  // namespace vkt::test
