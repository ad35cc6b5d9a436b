#include "engine/train/advice.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/base/files.hpp"
#include "engine/base/log.hpp"
#include "engine/model/adapter.hpp"
#include "engine/train/data_mixture.hpp"

namespace vkt::train {

namespace fs = std::filesystem;
using json = nlohmann::json;

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

std::optional<PretrainingLr> read_pretraining_lr(const std::filesystem::path& model) {
  if (!fs::is_directory(model)) return std::nullopt;
  auto read = [&](const char* name) -> std::optional<json> {
    fs::path file = model / name;
    if (!fs::exists(file)) return std::nullopt;
    try {
      return json::parse(read_text_file(file));
    } catch (const json::exception& error) {
      log::warn(file.string() + " is not JSON (" + error.what() + "): its learning rate is not used");
      return std::nullopt;
    }
  };
  if (auto run = read("run.json"); run && run->is_object()) {
    if (run->contains("schedule") && (*run)["schedule"].is_object() && (*run)["schedule"].value("peak_lr", 0.0) > 0)
      return PretrainingLr{(*run)["schedule"]["peak_lr"].get<double>(), "run.json schedule.peak_lr"};
    if (run->contains("config") && (*run)["config"].is_object() && (*run)["config"].value("learning_rate", 0.0) > 0)
      return PretrainingLr{(*run)["config"]["learning_rate"].get<double>(), "run.json config.learning_rate"};
  }
  if (auto state = read("trainer_state.json")) {
    double peak = 0;
    if (state->contains("log_history") && (*state)["log_history"].is_array())
      for (const auto& entry : (*state)["log_history"])
        if (entry.is_object() && entry.contains("learning_rate") && entry["learning_rate"].is_number())
          peak = std::max(peak, entry["learning_rate"].get<double>());
    if (peak > 0) return PretrainingLr{peak, "trainer_state.json log_history learning_rate (largest)"};
  }
  if (auto args = read("training_args.json"))
    if (args->is_object() && args->contains("learning_rate") && (*args)["learning_rate"].is_number())
      return PretrainingLr{(*args)["learning_rate"].get<double>(), "training_args.json learning_rate"};
  return std::nullopt;
}

std::optional<double> pretraining_rate(const std::filesystem::path& model) {
  if (auto pretraining = read_pretraining_lr(model)) return pretraining->learning_rate;
  return std::nullopt;
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
