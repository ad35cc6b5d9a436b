#pragma once
// Types shared by kernel wrappers: storage types of activations and the formats a frozen base
// weight can be stored in. The byte layouts below are the contract between engine/quant (CPU
// quantize/dequantize, file loading), shaders/quant.glsl and the matmul's load stage.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "engine/base/names.hpp"
#include "engine/vk/memory.hpp"

namespace vkt::kernels {

using vk::BufferRange;

// Storage type of an activation or dense weight; arithmetic is always fp32.
enum class DType : uint8_t { f32, f16, bf16 };
uint32_t dtype_bytes(DType type);
// A DType has two spellings, one table each: ours ("fp32", "fp16", "bf16": --dtype flags,
// run.json) and torch's ("float32", "float16", "bfloat16": config.json's torch_dtype, mergekit's
// dtype/out_dtype; "torch.float32" parses too).
std::span<const NameEntry<DType>> dtype_names();
std::span<const NameEntry<DType>> torch_dtype_names();
const char* dtype_name(DType type);        // "fp32"
const char* torch_dtype_name(DType type);  // "float32"
std::optional<DType> dtype_from_name(std::string_view name);
std::optional<DType> dtype_from_torch_name(std::string_view name);

// How a base weight W (rows = out_features, cols = in_features, row-major, flattened into
// n = rows*cols elements) is stored. Quantization blocks are runs of `block_size` consecutive
// elements of the flattened weight (as bitsandbytes does); n is padded up to a whole block.
enum class WeightFormat : uint8_t {
  f32,        // data: float[n]
  f16,        // data: fp16[n]
  bf16,       // data: bf16 bit patterns as uint16[n]
  nf4,        // data: uint8[n/2], element 2j in the HIGH nibble of byte j, 2j+1 in the low nibble;
              //   value = NF4_TABLE[code] * absmax(block)
              //   absmax without double quant: scales = float[blocks]
              //   with double quant (bitsandbytes' compress_statistics): absmax_codes = uint8[blocks]
              //   (indices into bitsandbytes' signed dynamic map), absmax_scales = float[ceil(blocks/256)],
              //   absmax(b) = DYNAMIC_MAP[absmax_codes[b]] * absmax_scales[b/256] + absmax_offset
  int8,       // data: int8[n]; value = code * scales[block], scales = absmax/127
  int4,       // data: uint8[n/2] (nibble order as nf4); value = (code - 8) * scales[block], scales = absmax/7
  int4_asym,  // data: uint8[n/2]; value = (code - zeros[block]) * scales[block];
              //   scales = (max-min)/15, zeros = uint8[blocks] (0..15)
  // ggml's block formats, as a GGUF file stores them (engine/quant/ggml_blocks.hpp has the byte
  // layouts): data = the raw blocks, blocks = n / block_size with block_size 32 (Q*_0, Q*_1) or 256
  // (K-quants), no other array. A block's scales live inside it; blocks are not 4-byte aligned
  // (34, 18, 20, 22, 24, 210 bytes), so shaders/ggml_blocks.glsl reads words and shifts, and the
  // data range extends ggml_tail_bytes past the last block.
  ggml_q8_0,
  ggml_q4_0,
  ggml_q4_1,
  ggml_q5_0,
  ggml_q5_1,
  ggml_q4_k,
  ggml_q5_k,
  ggml_q6_k,
  // Not a storage format: `--quant gguf`, each linear weight of a GGUF base in its own type
  // (spec::RunSettings::gguf_formats lists them); never reaches a kernel.
  gguf,
};
const char* weight_format_name(WeightFormat format);
// The --quant names: "none" (f32), "nf4", "int8", "int4", "int4-asym" ("int4_asym" parses too).
std::span<const NameEntry<WeightFormat>> quant_names();
const char* quant_name(WeightFormat format);  // "none" for f32
// nullopt for a name not in quant_names().
std::optional<WeightFormat> weight_format_from_quant_name(std::string_view name);
bool is_quantized(WeightFormat format);   // nf4, int8, int4, int4_asym and the ggml block formats
bool is_ggml_block(WeightFormat format);  // ggml_q8_0 .. ggml_q6_k
// ggml block formats: elements and bytes per block (Q8_0: 32 and 34, Q4_K: 256 and 144, ...).
uint32_t ggml_block_elements(WeightFormat format);
uint32_t ggml_block_bytes(WeightFormat format);
// Bytes a ggml data range holds beyond its blocks: shaders read 4 bytes at any 2-byte offset as
// two words, the second of which may lie past the last block.
constexpr uint64_t ggml_tail_bytes = 4;
// Bytes of the data range of an n-element ggml weight (whole blocks + ggml_tail_bytes).
uint64_t ggml_data_bytes(WeightFormat format, uint64_t n);

// A base weight as the matmul's B operand: its storage and, when quantized, its statistics.
struct WeightRef {
  WeightFormat format = WeightFormat::f32;
  BufferRange data;           // see WeightFormat
  BufferRange scales;         // fp32 per block: int8/int4/int4_asym scales, nf4 absmax without double quant
  BufferRange zeros;          // int4_asym: uint8 per block
  BufferRange absmax_codes;   // nf4 with double quant: uint8 per block
  BufferRange absmax_scales;  // nf4 with double quant: fp32 per 256 blocks
  float absmax_offset = 0;    // nf4 with double quant: mean of the absmax values, added back
  uint32_t block_size = 64;   // elements per quantization block
  bool double_quant = false;  // nf4 only
};

}  // namespace vkt::kernels
