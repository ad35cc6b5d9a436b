#pragma once
// Loading a Hugging Face checkpoint into the plan's device buffers: dense tensors converted to
// the run's dtype, linear weights quantized to the run's base format on the way (or taken as
// they are from a bitsandbytes 4-bit checkpoint), norms and biases in fp32.
#include <optional>
#include <string>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "engine/base/progress.hpp"
#include "engine/model/buffers.hpp"
#include "engine/model/config.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/model/tensor_source.hpp"
#include "engine/quant/quantize.hpp"

namespace vkt::model {

struct LoadedWeights {
  std::unordered_map<std::string, float> absmax_offsets;  // NF4 double quant: per weight name
  bool bitsandbytes_nf4 = false;                          // the checkpoint was already NF4
};

// True when the folder is a bitsandbytes 4-bit checkpoint (its linear weights carry
// quant_state.bitsandbytes__nf4 entries).
bool is_bitsandbytes_nf4(const SafetensorsFolder& folder, const ModelConfig& config);

// A bitsandbytes NF4 weight of the folder (the tensors transformers saves for a load_in_4bit
// model, tests/data/golden/README.md) as a QuantizedWeight of shape (rows, cols).
quant::QuantizedWeight read_bitsandbytes_nf4(const SafetensorsFolder& folder, const std::string& name, uint32_t rows,
                                             uint32_t cols);

// vktune's own quantized checkpoints (`vktune quantize --format int8|int4|int4-asym`). config.json
// carries "quantization_config": {"quant_method": "vktune", "format": "int8" | "int4" |
// "int4-asym", "block_size": B, "original_dtype": "bfloat16"}; each linear weight <name> of the
// seven modules of every layer is stored as (flattened row-major, n = out * in elements, blocks of
// B consecutive elements, the last block's padding not stored):
//   <name>         int8: I8 [n] codes;  int4, int4-asym: U8 [ceil(n/2)], element 2j in the HIGH nibble
//   <name>.scales  F32 [ceil(n/B)]
//   <name>.zeros   U8 [ceil(n/B)] zero points (int4-asym only)
// value = code * scale (int8), (code - 8) * scale (int4), (code - zero) * scale (int4-asym): the
// layouts of engine/kernels/types.hpp WeightFormat. Everything else (embeddings, norms, lm_head,
// biases) is stored as an ordinary dense tensor.
struct VktuneQuantization {
  kernels::WeightFormat format = kernels::WeightFormat::int8;
  uint32_t block_size = 64;
  std::string original_dtype;  // torch dtype of the weights before quantization
};
// The folder's quantization_config when it is vktune's; UserError naming config.json when it is
// malformed. nullopt for any other checkpoint.
std::optional<VktuneQuantization> vktune_quantization(const ModelConfig& config,
                                                      const std::string& where = "config.json");
// The quantization_config object written for `quantization`.
nlohmann::json vktune_quantization_json(const VktuneQuantization& quantization);
// Reads <name> (+ .scales, .zeros) into a QuantizedWeight of shape (rows, cols), restoring the
// padding codes the quantizer writes (the code of 0.0), so the result equals quant::quantize's.
quant::QuantizedWeight read_vktune_quantized(const SafetensorsFolder& folder, const std::string& name, uint32_t rows,
                                             uint32_t cols, const VktuneQuantization& quantization);
// "int8", "int4", "int4-asym" (the --format names) <-> WeightFormat; nullopt for other names.
std::optional<kernels::WeightFormat> quantized_format_from_name(const std::string& name);
std::string quantized_format_name(kernels::WeightFormat format);

// For a bitsandbytes checkpoint: whether its double-quantized absmax loads exactly in our layout
// (its nested map is ours); if not, the absmax values are decoded to fp32 on load and the run must
// be planned without double quantization.
bool bitsandbytes_keeps_double_quant(const SafetensorsFolder& folder, const ModelConfig& config);

// Reads every tensor through `source` (a safetensors folder or a GGUF file, by HF name).
LoadedWeights load_weights(vk::Context& context, const TensorSource& source, const ModelConfig& config,
                           const plan::MemoryPlan& plan, BufferSet& buffers, ProgressBar* progress = nullptr);

}  // namespace vkt::model
