#pragma once
// Loading a Hugging Face checkpoint into the plan's device buffers: dense tensors converted to
// the run's dtype, linear weights quantized to the run's base format on the way (or taken as
// they are from a bitsandbytes 4-bit checkpoint), norms and biases in fp32.
#include <string>
#include <unordered_map>

#include "engine/base/progress.hpp"
#include "engine/model/buffers.hpp"
#include "engine/model/config.hpp"
#include "engine/model/safetensors.hpp"

namespace vkt::model {

struct LoadedWeights {
  std::unordered_map<std::string, float> absmax_offsets;  // NF4 double quant: per weight name
  bool bitsandbytes_nf4 = false;                          // the checkpoint was already NF4
};

// True when the folder is a bitsandbytes 4-bit checkpoint (its linear weights carry
// quant_state.bitsandbytes__nf4 entries).
bool is_bitsandbytes_nf4(const SafetensorsFolder& folder, const ModelConfig& config);

// For a bitsandbytes checkpoint: whether its double-quantized absmax loads exactly in our layout
// (its nested map is ours); if not, the absmax values are decoded to fp32 on load and the run must
// be planned without double quantization.
bool bitsandbytes_keeps_double_quant(const SafetensorsFolder& folder, const ModelConfig& config);

LoadedWeights load_weights(vk::Context& context, const SafetensorsFolder& folder, const ModelConfig& config,
                           const plan::MemoryPlan& plan, BufferSet& buffers, ProgressBar* progress = nullptr);

}  // namespace vkt::model
