#pragma once
// ggml's tensor types (the `type` of a GGUF tensor) and their block layouts: what a type's bytes
// mean, CPU dequantization bit-exact with ggml's reference (ggml-quants.c dequantize_row_*; the
// `gguf` Python package's numpy dequantizers compute the same), and the quantizers of the simple
// types the exporter writes (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, BF16: bit-exact with ggml's
// quantize_row_*_ref). The GPU's load stage decodes the same bytes (see the matmul shaders).
//
// Why bit-exact is possible: each value is a short fixed sequence of fp32 multiplies and adds on
// small integers and fp16 scales, which IEEE rounding makes deterministic as long as no
// multiply-add is fused (this file is compiled with -ffp-contract=off).
//
// Block layouts (ggml-common.h), elements of a row in order, K = 256 (QK_K):
//   Q4_0  32 / 18 B: f16 d | u8 qs[16]           x = d * (nibble - 8); low nibbles are elements 0..15
//   Q4_1  32 / 20 B: f16 d, f16 m | qs[16]       x = d * nibble + m
//   Q5_0  32 / 22 B: f16 d | u32 qh | qs[16]     x = d * ((nibble | bit_i(qh) << 4) - 16)
//   Q5_1  32 / 24 B: f16 d, f16 m | qh | qs[16]  x = d * (nibble | bit_i(qh) << 4) + m
//   Q8_0  32 / 34 B: f16 d | i8 qs[32]           x = d * q
//   Q4_K  K / 144 B: f16 d, f16 dmin | u8 scales[12] (8 x (6-bit scale, 6-bit min)) | qs[128]
//                    x = (d * scale_j) * nibble - (dmin * min_j), sub-block j of 32
//   Q5_K  K / 176 B: as Q4_K plus u8 qh[32] (bit j of qh[l] is the 5th bit of sub-block j)
//   Q6_K  K / 210 B: u8 ql[128] | u8 qh[64] | i8 scales[16] | f16 d   x = (d * scale_16) * (q6 - 32)
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace vkt::quant {

// ggml_type values as stored in GGUF files (ggml.h). Only the types vktune reads are named; the
// others are still recognised by number for error messages (ggml_type_name_of).
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  BF16 = 30,
};

struct GgmlTypeInfo {
  GgmlType type;
  const char* name;      // "Q4_K", as ggml_type_name
  uint32_t block_elems;  // elements per block (1 for plain floats)
  uint32_t block_bytes;  // bytes per block
};

// The type with ggml number `value`, or nullopt when vktune does not read it.
std::optional<GgmlType> ggml_type_from_number(uint32_t value);
// A name for any ggml type number ("IQ2_XS", "type 99" when unknown): for error messages.
std::string ggml_type_name_of(uint32_t value);
const GgmlTypeInfo& ggml_type_info(GgmlType type);
const char* ggml_type_name(GgmlType type);
std::optional<GgmlType> ggml_type_from_name(std::string_view name);  // "q8_0" or "Q8_0"
std::string supported_ggml_types();                                  // "F32, F16, ..." for messages
// Bytes of `elements` values (a whole number of blocks; VKT_ASSERT otherwise).
uint64_t ggml_row_bytes(GgmlType type, uint64_t elements);
// Bits per weight including scales (4.5 for Q4_0, 8.5 for Q8_0, 4.5 for Q4_K): the planner's rate.
double ggml_bits_per_weight(GgmlType type);

// `blocks` holds whole blocks of `type`; `out` receives blocks.size() / block_bytes * block_elems
// floats. Bit-exact with ggml's dequantize_row_* for every input whose fp16 scales are finite.
void dequantize_ggml(GgmlType type, std::span<const uint8_t> blocks, std::span<float> out);

// ggml's reference quantizers (quantize_row_*_ref) for Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K
// (engine/quant/ggml_kquants.hpp) and BF16, F16 and F32: `values` is a whole number of blocks; `out` holds ggml_row_bytes(type, values.size()).
// Other types: VKT_ASSERT (the exporter checks the type first with ggml_can_quantize).
bool ggml_can_quantize(GgmlType type);
void quantize_ggml(GgmlType type, std::span<const float> values, std::span<uint8_t> out);

}  // namespace vkt::quant
