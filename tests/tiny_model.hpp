#pragma once
// Tiny models and datasets for end-to-end tests: a Llama in HF layout with a byte-level tokenizer,
// written by the same code as `vktune new-model`.
#include <filesystem>
#include <string>
#include <vector>

#include "engine/train/config.hpp"

namespace vkt::test {

struct TinyModelOptions {
  uint32_t hidden = 32, layers = 2, heads = 4, kv_heads = 2, intermediate = 64;
  uint64_t seed = 1;
  bool qkv_bias = false;
  bool tied = true;
};
// Writes the model into `directory` (once per process per directory) and returns it.
std::filesystem::path tiny_model(const std::filesystem::path& directory, const TinyModelOptions& options = {});

// A tiny model after a short full finetuning on plain text (so that LoRA has a base whose
// output layer is not random): the same pipeline as the demo's base model. Cached per process.
std::filesystem::path tiny_pretrained_model(const std::filesystem::path& directory);

// The end-to-end tests' LoRA run: the pretrained tiny model and a 64-line dataset under `root`,
// output in a fresh test::temp_dir(output_name); r=4 on all linear layers, batch 4, constant lr
// 1e-2, 50 steps logged every step, no checkpoints, seed 7.
train::TrainConfig tiny_lora_config(const std::filesystem::path& root, const std::string& output_name);
// The same settings on a random tiny_model (ROOT/student, no pretraining) and a 16-line dataset, no
// max_steps: for short runs that only need the pipeline to work.
train::TrainConfig tiny_random_lora_config(const std::filesystem::path& root, const std::string& output_name);

// Overwrites element `element` of the F32 tensor `tensor` of a .safetensors file in place: corrupt
// inputs (NaN/Inf) for tests, which the writer itself refuses to produce.
void poke_f32(const std::filesystem::path& file, const std::string& tensor, uint64_t element, float value);

// The "loss" of every metrics.jsonl line in `output_dir`, in order.
std::vector<double> logged_losses(const std::filesystem::path& output_dir);

// A prompt/completion JSONL of `count` lines with a learnable pattern; returns its path.
std::filesystem::path tiny_dataset(const std::filesystem::path& path, int count, uint32_t seed = 3);

}  // namespace vkt::test
