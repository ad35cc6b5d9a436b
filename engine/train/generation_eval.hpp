#pragma once
// Evaluation by generation: greedy completions of held-out prompts, scored for FORM (the output
// parses as a JSON object with the required keys) and CONTENT (those fields equal the reference
// completion's; without keys, the whole completion must match exactly).
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "engine/base/progress.hpp"
#include "engine/kernels/types.hpp"
#include "engine/vk/context.hpp"

namespace vkt::train {

struct GenerationEvalOptions {
  std::filesystem::path model;
  std::optional<std::filesystem::path> adapter;
  std::filesystem::path data;  // prompt/completion JSONL
  std::vector<std::string> json_keys;
  size_t limit = 0;  // first N examples (0: all)
  uint32_t max_new_tokens = 64;
  kernels::WeightFormat base_format = kernels::WeightFormat::f32;
  kernels::DType dtype = kernels::DType::f32;
};

struct GeneratedExample {
  std::string prompt, reference, output;
  bool form_ok = false, content_ok = false;
  size_t fields_right = 0;      // keys whose value equals the reference's (JSON answers)
  std::vector<bool> key_right;  // [keys]: key i's value equals the reference's
};

struct GenerationEvalResult {
  std::vector<GeneratedExample> examples;
  double form_rate = 0;           // fraction with the right form (JSON with every key); -1 without keys
  double content_rate = 0;        // fraction whose fields (or text) match the reference
  double field_rate = 0;          // fraction of (example, key) pairs answered right; -1 without keys
  std::vector<double> key_rates;  // [keys]: fraction of examples with that key right (what a model gets wrong)
  size_t distinct_outputs = 0;    // different answers: a model that ignores its prompt writes one
};

// Scores one output against its reference (exposed for tests).
void score_output(const std::string& output, const std::string& reference, const std::vector<std::string>& keys,
                  bool& form_ok, bool& content_ok, size_t* fields_right = nullptr,
                  std::vector<bool>* key_right = nullptr);

GenerationEvalResult evaluate_generation(vk::Context& context, const GenerationEvalOptions& options,
                                         ProgressBar* progress = nullptr);

}  // namespace vkt::train
