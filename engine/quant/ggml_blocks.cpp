#include "engine/quant/ggml_blocks.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>

#include "engine/base/error.hpp"
#include "engine/base/half.hpp"
#include "engine/quant/ggml_kquants.hpp"

namespace vkt::quant {
namespace {

constexpr uint32_t kSuperBlock = 256;  // QK_K

constexpr GgmlTypeInfo kTypes[] = {
    {GgmlType::F32, "F32", 1, 4},       {GgmlType::F16, "F16", 1, 2},       {GgmlType::BF16, "BF16", 1, 2},
    {GgmlType::Q8_0, "Q8_0", 32, 34},   {GgmlType::Q4_0, "Q4_0", 32, 18},   {GgmlType::Q4_1, "Q4_1", 32, 20},
    {GgmlType::Q5_0, "Q5_0", 32, 22},   {GgmlType::Q5_1, "Q5_1", 32, 24},   {GgmlType::Q4_K, "Q4_K", 256, 144},
    {GgmlType::Q5_K, "Q5_K", 256, 176}, {GgmlType::Q6_K, "Q6_K", 256, 210},
};

// ggml.h's other type numbers, named so an error can say what the file holds.
struct OtherType {
  uint32_t number;
  const char* name;
};
constexpr OtherType kOtherTypes[] = {
    {9, "Q8_1"},     {10, "Q2_K"},  {11, "Q3_K"},   {15, "Q8_K"},  {16, "IQ2_XXS"}, {17, "IQ2_XS"},
    {18, "IQ3_XXS"}, {19, "IQ1_S"}, {20, "IQ4_NL"}, {21, "IQ3_S"}, {22, "IQ2_S"},   {23, "IQ4_XS"},
    {24, "I8"},      {25, "I16"},   {26, "I32"},    {27, "I64"},   {28, "F64"},     {29, "IQ1_M"},
    {34, "TQ1_0"},   {35, "TQ2_0"}, {39, "MXFP4"},  {40, "NVFP4"},
};

uint16_t load_u16(const uint8_t* bytes) {
  uint16_t value;
  std::memcpy(&value, bytes, 2);
  return value;
}
float load_half(const uint8_t* bytes) { return half_to_float(load_u16(bytes)); }
void store_half(uint8_t* bytes, float value) {
  uint16_t bits = float_to_half(value);
  std::memcpy(bytes, &bits, 2);
}

// Q4_K/Q5_K: the 6-bit scale and min of sub-block j (ggml's get_scale_min_k4).
void scale_min_k4(int j, const uint8_t* scales, uint8_t& scale, uint8_t& min) {
  if (j < 4) {
    scale = scales[j] & 63;
    min = scales[j + 4] & 63;
  } else {
    scale = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
    min = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

// One block of 32 with 4- or 5-bit codes: element i's code, before the offset.
uint32_t code_of(const uint8_t* qs, uint32_t high_bits, int i, bool five_bit) {
  uint32_t nibble = i < 16 ? (qs[i] & 0xF) : (qs[i - 16] >> 4);
  return five_bit ? nibble | (((high_bits >> i) & 1u) << 4) : nibble;
}

void dequantize_block(GgmlType type, const uint8_t* block, float* out) {
  switch (type) {
    case GgmlType::F32:
      std::memcpy(out, block, 4);
      return;
    case GgmlType::F16:
      out[0] = load_half(block);
      return;
    case GgmlType::BF16:
      out[0] = bf16_to_float(load_u16(block));
      return;
    case GgmlType::Q8_0: {
      const float d = load_half(block);
      for (int i = 0; i < 32; i++) out[i] = static_cast<float>(static_cast<int8_t>(block[2 + i])) * d;
      return;
    }
    case GgmlType::Q4_0:
    case GgmlType::Q5_0: {
      const bool five = type == GgmlType::Q5_0;
      const float d = load_half(block);
      uint32_t high_bits = 0;
      if (five) std::memcpy(&high_bits, block + 2, 4);
      const uint8_t* qs = block + (five ? 6 : 2);
      const int offset = five ? 16 : 8;
      for (int i = 0; i < 32; i++)
        out[i] = d * static_cast<float>(static_cast<int>(code_of(qs, high_bits, i, five)) - offset);
      return;
    }
    case GgmlType::Q4_1:
    case GgmlType::Q5_1: {
      const bool five = type == GgmlType::Q5_1;
      const float d = load_half(block), m = load_half(block + 2);
      uint32_t high_bits = 0;
      if (five) std::memcpy(&high_bits, block + 4, 4);
      const uint8_t* qs = block + (five ? 8 : 4);
      for (int i = 0; i < 32; i++) out[i] = d * static_cast<float>(code_of(qs, high_bits, i, five)) + m;
      return;
    }
    case GgmlType::Q4_K:
    case GgmlType::Q5_K: {
      const bool five = type == GgmlType::Q5_K;
      const float d = load_half(block), dmin = load_half(block + 2);
      const uint8_t* scales = block + 4;
      const uint8_t* qh = block + 16;                // Q5_K only
      const uint8_t* qs = block + (five ? 48 : 16);  // 128 bytes: 4 chunks of 32, two sub-blocks each
      for (int sub = 0; sub < 8; sub++) {
        uint8_t scale, min;
        scale_min_k4(sub, scales, scale, min);
        const float sub_scale = d * static_cast<float>(scale), sub_min = dmin * static_cast<float>(min);
        const uint8_t* chunk = qs + 32 * (sub / 2);
        for (int l = 0; l < 32; l++) {
          uint32_t code = sub % 2 == 0 ? (chunk[l] & 0xF) : (chunk[l] >> 4);
          if (five) code |= ((qh[l] >> sub) & 1u) << 4;
          out[32 * sub + l] = sub_scale * static_cast<float>(code) - sub_min;
        }
      }
      return;
    }
    case GgmlType::Q6_K: {
      const uint8_t* ql = block;                                          // 128: low 4 bits
      const uint8_t* qh = block + 128;                                    // 64: high 2 bits
      const auto* scales = reinterpret_cast<const int8_t*>(block + 192);  // 16, one per 16 values
      const float d = load_half(block + 208);
      for (int half = 0; half < 2; half++) {
        for (int group = 0; group < 4; group++) {  // 4 x 32 values in this half of 128
          for (int l = 0; l < 32; l++) {
            const uint8_t low_byte = ql[64 * half + 32 * (group % 2) + l];
            const uint32_t low = group < 2 ? (low_byte & 0xF) : (low_byte >> 4);
            const uint32_t high = (qh[32 * half + l] >> (2 * group)) & 3u;
            const int element = 128 * half + 32 * group + l;
            const float scale = d * static_cast<float>(scales[element / 16]);
            out[element] = scale * static_cast<float>(static_cast<int>(low | (high << 4)) - 32);
          }
        }
      }
      return;
    }
  }
  VKT_ASSERT(false, "dequantize_block: unhandled ggml type");
}

// ---- quantizers (ggml-quants.c quantize_row_*_ref) ----

// The element of largest magnitude, keeping its sign; the first one on ties (numpy's argmax and
// ggml's `if (amax < fabsf(v))` loop agree).
float signed_absmax(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int i = 0; i < n; i++)
    if (amax < std::fabs(x[i])) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  return max;
}

// Packs 32 codes of 4 or 5 bits as ggml does: element i's low nibble in qs[i % 16] (the high half of
// the byte for i >= 16); returns the 5th bits, bit i for element i (Q5_0/Q5_1's qh).
uint32_t pack_codes(const uint8_t* codes, uint8_t* qs) {
  uint32_t high_bits = 0;
  for (int i = 0; i < 16; i++) {
    qs[i] = static_cast<uint8_t>((codes[i] & 0xF) | ((codes[i + 16] & 0xF) << 4));
    high_bits |= static_cast<uint32_t>((codes[i] >> 4) & 1) << i;
    high_bits |= static_cast<uint32_t>((codes[i + 16] >> 4) & 1) << (i + 16);
  }
  return high_bits;
}

void quantize_block(GgmlType type, const float* x, uint8_t* block) {
  switch (type) {
    case GgmlType::F32:
      std::memcpy(block, x, 4);
      return;
    case GgmlType::F16:
      store_half(block, x[0]);
      return;
    case GgmlType::BF16: {
      const uint16_t bits = float_to_bf16(x[0]);
      std::memcpy(block, &bits, 2);
      return;
    }
    case GgmlType::Q8_0: {
      float amax = 0.0f;
      for (int i = 0; i < 32; i++) amax = std::max(amax, std::fabs(x[i]));
      const float d = amax / 127.0f;
      const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
      store_half(block, d);
      for (int i = 0; i < 32; i++) block[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::round(x[i] * inverse)));
      return;
    }
    case GgmlType::Q4_0:
    case GgmlType::Q5_0: {
      const bool five = type == GgmlType::Q5_0;
      const float levels = five ? 16.0f : 8.0f;
      const float d = signed_absmax(x, 32) / -levels;
      const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
      store_half(block, d);
      uint8_t codes[32];
      for (int i = 0; i < 32; i++)
        codes[i] =
            static_cast<uint8_t>(std::min<int>(five ? 31 : 15, static_cast<int8_t>(x[i] * inverse + (levels + 0.5f))));
      uint8_t* qs = block + (five ? 6 : 2);
      const uint32_t high_bits = pack_codes(codes, qs);
      if (five) std::memcpy(block + 2, &high_bits, 4);
      return;
    }
    case GgmlType::Q4_1:
    case GgmlType::Q5_1: {
      const bool five = type == GgmlType::Q5_1;
      float min = x[0], max = x[0];
      for (int i = 1; i < 32; i++) {
        min = std::min(min, x[i]);
        max = std::max(max, x[i]);
      }
      const float d = (max - min) / (five ? 31.0f : 15.0f);
      const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
      store_half(block, d);
      store_half(block + 2, min);
      uint8_t codes[32];
      for (int i = 0; i < 32; i++)
        codes[i] =
            static_cast<uint8_t>(std::min<int>(five ? 31 : 15, static_cast<int8_t>((x[i] - min) * inverse + 0.5f)));
      uint8_t* qs = block + (five ? 8 : 4);
      const uint32_t high_bits = pack_codes(codes, qs);
      if (five) std::memcpy(block + 4, &high_bits, 4);
      return;
    }
    case GgmlType::Q4_K:
      quantize_q4_k_block(x, block);
      return;
    case GgmlType::Q6_K:
      quantize_q6_k_block(x, block);
      return;
    default:
      break;
  }
  VKT_ASSERT(false, std::string("quantize_ggml: no quantizer for ") + ggml_type_name(type));
}

}  // namespace

const GgmlTypeInfo& ggml_type_info(GgmlType type) {
  for (const auto& info : kTypes)
    if (info.type == type) return info;
  VKT_ASSERT(false, "ggml_type_info: unknown type");
  return kTypes[0];
}
const char* ggml_type_name(GgmlType type) { return ggml_type_info(type).name; }

std::optional<GgmlType> ggml_type_from_number(uint32_t value) {
  for (const auto& info : kTypes)
    if (static_cast<uint32_t>(info.type) == value) return info.type;
  return std::nullopt;
}

std::string ggml_type_name_of(uint32_t value) {
  if (auto type = ggml_type_from_number(value)) return ggml_type_name(*type);
  for (const auto& other : kOtherTypes)
    if (other.number == value) return other.name;
  return "type " + std::to_string(value);
}

std::optional<GgmlType> ggml_type_from_name(std::string_view name) {
  std::string upper(name);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const auto& info : kTypes)
    if (upper == info.name) return info.type;
  return std::nullopt;
}

std::string supported_ggml_types() {
  std::string list;
  for (const auto& info : kTypes) list += (list.empty() ? "" : ", ") + std::string(info.name);
  return list;
}

uint64_t ggml_row_bytes(GgmlType type, uint64_t elements) {
  const auto& info = ggml_type_info(type);
  VKT_ASSERT(elements % info.block_elems == 0, "ggml_row_bytes: not a whole number of blocks");
  return elements / info.block_elems * info.block_bytes;
}

double ggml_bits_per_weight(GgmlType type) {
  const auto& info = ggml_type_info(type);
  return 8.0 * info.block_bytes / info.block_elems;
}

void dequantize_ggml(GgmlType type, std::span<const uint8_t> blocks, std::span<float> out) {
  const auto& info = ggml_type_info(type);
  VKT_ASSERT(blocks.size() % info.block_bytes == 0, "dequantize_ggml: not a whole number of blocks");
  const size_t count = blocks.size() / info.block_bytes;
  VKT_ASSERT(out.size() == count * info.block_elems, "dequantize_ggml: output size");
  for (size_t b = 0; b < count; b++)
    dequantize_block(type, blocks.data() + b * info.block_bytes, out.data() + b * info.block_elems);
}

bool ggml_can_quantize(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::Q8_0:
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q4_K:
    case GgmlType::Q6_K:
      return true;
    default:
      return false;
  }
}

void quantize_ggml(GgmlType type, std::span<const float> values, std::span<uint8_t> out) {
  const auto& info = ggml_type_info(type);
  VKT_ASSERT(values.size() % info.block_elems == 0, "quantize_ggml: not a whole number of blocks");
  const size_t count = values.size() / info.block_elems;
  VKT_ASSERT(out.size() == count * info.block_bytes, "quantize_ggml: output size");
  for (size_t b = 0; b < count; b++)
    quantize_block(type, values.data() + b * info.block_elems, out.data() + b * info.block_bytes);
}

}  // namespace vkt::quant
