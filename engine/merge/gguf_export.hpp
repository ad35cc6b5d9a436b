#pragma once
// GGUF out (`vktune export --format gguf | gguf-lora`), files llama.cpp and Ollama load as they are.
//
// Models: an HF folder or a GGUF file, optionally with a PEFT LoRA adapter merged in (ModelSource,
// engine/merge/source.hpp), written with the metadata and tokenizer of engine/model/gguf_metadata_out.hpp
// and the tensor names of llama.cpp's converter; llama's q_proj/k_proj rows permuted as it permutes
// them. Tensor types per --outtype (what llama-quantize picks from an F32/F16 file, src/llama-quant.cpp):
//   f32 / f16 / bf16   every matrix in that type; vectors (norms, biases) F32 always
//   q8_0               every matrix Q8_0
//   q4_0               matrices Q4_0; output.weight (token_embd.weight when tied) Q6_K
//   q4_k_m             matrices Q4_K; output.weight (token_embd when tied) Q6_K; attn_v and ffn_down
//                      Q6_K in the layers use_more_bits picks (the first and last eighth, and every
//                      third between), Q4_K in the others
// A matrix whose rows are not whole blocks of its type falls back as llama-quantize does: Q4_K ->
// Q5_0, Q6_K -> Q8_0, and to F16 when even that does not fit.
//
// Adapters: a PEFT LoRA adapter folder as convert_lora_to_gguf.py writes it: general.type adapter,
// adapter.type lora, adapter.lora.alpha = scale · r (so llama.cpp's alpha / r is our scale, rsLoRA's
// alpha / sqrt(r) included), per adapted module "<gguf weight name>.lora_a" (r, in) and ".lora_b"
// (out, r), lora_b rows permuted for llama's q/k. Types f32/f16/bf16/q8_0 (a lora_b whose rank is
// no multiple of 32 stays F16 under q8_0, as the converter falls back).
//
// Beside each file an Ollama Modelfile (FROM / ADAPTER, TEMPLATE, PARAMETER stop) is written.
// Every file is written atomically.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/quant/ggml_blocks.hpp"
#include "engine/vk/context.hpp"

namespace vkt::merge {

enum class GgufOutType { f32, f16, bf16, q8_0, q4_0, q4_k_m };
// "f16" -> f16; UserError naming `flag` and listing the names otherwise. `adapter`: only the
// types a LoRA adapter is written in (f32, f16, bf16, q8_0).
GgufOutType gguf_outtype_from_flag(const std::string& value, const std::string& flag, bool adapter = false);
const char* gguf_outtype_name(GgufOutType type);

// The ggml type of one tensor of a model export. `shape` row-major; `layer` is the block index of a
// blk.N tensor (-1 for the others), `layers` the block count, `tied` whether token_embd is also the output.
quant::GgmlType gguf_tensor_type(GgufOutType outtype, const std::string& gguf_name, const std::vector<uint64_t>& shape,
                                 int64_t layer, int64_t layers, bool tied);

struct GgufExportOptions {
  std::filesystem::path model;                   // HF folder or .gguf file
  std::optional<std::filesystem::path> adapter;  // PEFT LoRA adapter merged in
  std::filesystem::path output;                  // FILE.gguf
  GgufOutType outtype = GgufOutType::f16;
  bool show_progress = true;
};

struct GgufLoraExportOptions {
  std::filesystem::path adapter;  // PEFT LoRA adapter folder
  std::filesystem::path model;    // its base (HF folder or .gguf): the architecture and head counts
  std::filesystem::path output;   // FILE.gguf
  GgufOutType outtype = GgufOutType::f16;
};

struct GgufExportSummary {
  int64_t tensors = 0;
  uint64_t adapted = 0;                  // model export: weights with an adapter product added
  std::map<std::string, int64_t> types;  // ggml type name -> tensors written in it
  uint64_t bytes = 0;                    // file size
  std::filesystem::path modelfile;       // the Ollama Modelfile written beside
  double seconds = 0;
};

// `context` does the adapter products (may be null without an adapter).
GgufExportSummary export_gguf_model(vk::Context* context, const GgufExportOptions& options);
GgufExportSummary export_gguf_lora(const GgufLoraExportOptions& options);

}  // namespace vkt::merge
