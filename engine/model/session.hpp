#pragma once
// A model opened on a device for one memory plan: config, buffers, weights, the recorded
// transformer. What the trainer, `vktune generate`, the exporter and the golden tests share.
#include <filesystem>
#include <memory>

#include "engine/base/progress.hpp"
#include "engine/model/buffers.hpp"
#include "engine/model/config.hpp"
#include "engine/model/transformer.hpp"
#include "engine/model/weights.hpp"

namespace vkt::model {

spec::ModelShape model_shape(const ModelConfig& config);

struct ModelSession {
  ModelConfig config;
  plan::MemoryPlan plan;
  std::unique_ptr<BufferSet> buffers;
  std::unique_ptr<Transformer> transformer;
  LoadedWeights loaded;
};

// The adapter's shape (rank, targets, layers, extras, PEFT type, soft prompt) into the plan's settings.
void apply_adapter_settings(spec::RunSettings& settings, const LoraSettings& lora);

// Reads config.json (unless `config` is given), plans with `settings`, allocates the plan,
// loads the weights of `model_dir` (converted/quantized as the settings say) and builds the
// transformer. LoRA buffers are allocated but not initialised (init_adapter or
// load_adapter_weights next). `config`: used in place of config.json's (the trainer's --rope-scaling).
std::unique_ptr<ModelSession> open_model(vk::Context& context, const std::filesystem::path& model_dir,
                                         const spec::RunSettings& settings, const LoraSettings* lora = nullptr,
                                         ProgressBar* progress = nullptr, const ModelConfig* config = nullptr);

}  // namespace vkt::model
