#include "engine/train/advice.hpp"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/base/files.hpp"
#include "engine/model/adapter.hpp"
#include "engine/train/data_mixture.hpp"

namespace vkt::train {

namespace {

std::string number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

}  // namespace

std::pair<double, double> recommended_epochs(int64_t examples) {
  if (examples >= 1000000) return {1, 2};
  if (examples >= 100000) return {2, 4};
  return {4, 10};
}

std::vector<std::string> hyperparameter_advice(const TrainConfig& c, const AdviceFacts& facts) {
  std::vector<std::string> advice;
  // The rank and alpha of an --adapter to continue come from its adapter_config.json, not the flags.
  if (c.method != spec::Method::full && c.adapter.empty()) {
    if (c.lora_r < 4 || c.lora_r > 64)
      advice.push_back("--lora-r " + std::to_string(c.lora_r) +
                       " is outside the usual 4-64 (rank 8-16 suits most tasks; more rarely helps)");
    const double ratio = c.lora_alpha / double(c.lora_r);
    if (ratio < 1.0 / 8 || ratio > 8)
      advice.push_back("--lora-alpha " + number(c.lora_alpha) + " with --lora-r " + std::to_string(c.lora_r) +
                       " is alpha:r = " + number(ratio) + ", outside 1:8 .. 8:1 (alpha = r or 2r is usual)");
  }
  if (c.learning_rate < 1e-7 || c.learning_rate > 1e-3)
    advice.push_back("--learning-rate " + number(c.learning_rate) +
                     " is outside the usual 1e-7 .. 1e-3 for finetuning (`vktune lr-find` measures a good one)");
  if (facts.pretraining_learning_rate && c.learning_rate > *facts.pretraining_learning_rate)
    advice.push_back("--learning-rate " + number(c.learning_rate) + " is above the base's pretraining rate " +
                     number(*facts.pretraining_learning_rate) + " (start at 0.1-1x of it)");
  if (facts.examples && facts.epochs && *facts.examples > 0) {
    auto [low, high] = recommended_epochs(*facts.examples);
    if (*facts.epochs < low / 2 || *facts.epochs > high * 1.5) {
      char epochs[32];
      std::snprintf(epochs, sizeof epochs, "%.2f", *facts.epochs);
      advice.push_back(std::string(epochs) + " epochs over " + std::to_string(*facts.examples) +
                       " examples is far from the rule of thumb for that size: " + number(low) + "-" + number(high) +
                       " epochs (millions of examples: 1-2, thousands: 4-10; --num-train-epochs or --max-steps)");
    }
  }
  return advice;
}

std::optional<double> pretraining_learning_rate(const std::filesystem::path& model) {
  const std::filesystem::path run = std::filesystem::path(model) / "run.json";
  if (!std::filesystem::is_regular_file(run)) return std::nullopt;
  try {
    nlohmann::json json = nlohmann::json::parse(read_text_file(run));
    const nlohmann::json& rate = json.at("config").at("learning_rate");
    if (rate.is_number() && rate.get<double>() > 0) return rate.get<double>();
  } catch (const std::exception&) {}
  return std::nullopt;  // not a vktune run.json: unknown
}

std::optional<int64_t> count_data_examples(const std::string& data) {
  int64_t lines = 0;
  for (const DataSource& source : parse_data_sources(data)) {
    std::ifstream in(source.path);
    if (!in) return std::nullopt;
    for (std::string line; std::getline(in, line);)
      if (line.find_first_not_of(" \t\r") != std::string::npos) lines++;
  }
  return lines;
}

std::vector<std::string> lighter_method_advice(const plan::MemoryPlan& full, uint32_t lora_r,
                                               const std::string& torch_dtype, uint64_t budget) {
  std::vector<std::string> lines;
  if (full.settings.method != spec::Method::full) return lines;
  spec::RunSettings lora = full.settings;
  lora.method = spec::Method::lora;
  TrainConfig auto_dtype;  // what --dtype auto gives a LoRA run of this model
  resolve_auto_dtype(auto_dtype, torch_dtype);
  lora.dtype = base_dtype(auto_dtype.dtype);
  lora.base_format = lora.dtype == kernels::DType::f16    ? kernels::WeightFormat::f16
                     : lora.dtype == kernels::DType::bf16 ? kernels::WeightFormat::bf16
                                                          : kernels::WeightFormat::f32;
  lora.lora_r = lora_r;
  lora.target_modules = model::parse_target_modules("all-linear", &full.shape);
  spec::RunSettings qlora = lora;
  qlora.method = spec::Method::qlora;
  qlora.base_format = kernels::WeightFormat::nf4;
  qlora.double_quant = true;
  const std::string r = " --lora-r " + std::to_string(lora_r) + " --target-modules all-linear";
  for (const auto& [name, settings] : {std::pair{"--method lora" + r, lora}, std::pair{"--method qlora" + r, qlora}}) {
    const uint64_t bytes = plan::make_plan(full.shape, settings).device_bytes();
    std::string line = name + ": " + format_bytes(double(bytes)) + (bytes <= budget ? " (fits)" : " (does not fit)");
    if (bytes > budget && !settings.gradient_checkpointing) {  // the usual QLoRA recipe checkpoints
      spec::RunSettings checkpointed = settings;
      checkpointed.gradient_checkpointing = true;
      const uint64_t less = plan::make_plan(full.shape, checkpointed).device_bytes();
      line += "; with --gradient-checkpointing " + format_bytes(double(less)) + (less <= budget ? " (fits)" : "");
    }
    lines.push_back(line);
  }
  return lines;
}

}  // namespace vkt::train
