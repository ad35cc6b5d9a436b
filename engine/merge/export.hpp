#pragma once
// `vktune export`: PEFT's merge_and_unload into a plain HF folder. For every adapted linear
// weight W' = W + s·B·A (s = lora_alpha/r, or lora_alpha/sqrt(r) with use_rslora); a quantized
// base (bitsandbytes NF4, vktune int8/int4) is dequantized first. Tensors are streamed one at a
// time (engine/merge/source.hpp) into model.safetensors (sharded above max_shard_bytes as
// save_pretrained does); config.json gets the output torch_dtype and loses quantization_config;
// the tokenizer files are copied. Every file is written atomically. A base pruned by `vktune prune`
// (pruning.json beside it) keeps its zeros: the dense LoRA product is masked by W == 0.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "engine/kernels/types.hpp"
#include "engine/merge/output.hpp"
#include "engine/vk/context.hpp"

namespace vkt::merge {

struct ExportOptions {
  std::filesystem::path model;
  std::optional<std::filesystem::path> adapter;  // none: only dequantize / convert the dtype
  std::filesystem::path output;
  std::optional<kernels::DType> dtype;  // nullopt: the base's torch_dtype
  uint64_t max_shard_bytes = default_max_shard_bytes;
  bool show_progress = true;
};

struct ExportSummary {
  int64_t tensors = 0;
  uint64_t adapted = 0;  // weights with an adapter product added
  std::string out_dtype;
  std::string base_quantization;  // e.g. "bitsandbytes nf4" when the base was dequantized
  std::vector<std::filesystem::path> files;
  uint64_t bytes_written = 0;
  double seconds = 0;
  uint64_t peak_rss = 0;
};

ExportSummary export_merged(vk::Context& context, const ExportOptions& options);

// The dtype of a --dtype flag, by our name or torch's ("fp16" or "float16"); UserError naming
// `flag` and the valid names otherwise.
kernels::DType dtype_from_flag(const std::string& value, const std::string& flag);

}  // namespace vkt::merge
