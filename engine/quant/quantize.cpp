#include "engine/quant/quantize.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <sstream>

#include "engine/base/error.hpp"
#include "engine/base/half.hpp"

namespace vkt::quant {

namespace {

uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

// Element i of x, or the zero padding past n.
float element(const float* x, uint64_t n, uint64_t i) { return i < n ? x[i] : 0.0f; }

// Packs two 4-bit codes, the first element in the high nibble (bitsandbytes' order).
uint8_t pack_nibbles(uint32_t first, uint32_t second) { return static_cast<uint8_t>((first << 4) | second); }

}  // namespace

void check_block_size(WeightFormat format, uint32_t block_size, const std::string& name) {
  if (!kernels::is_quantized(format)) return;
  bool power_of_two = block_size != 0 && (block_size & (block_size - 1)) == 0;
  if (!power_of_two || block_size < 8 || block_size > 4096) {
    throw UserError(name + ": quantization block size " + std::to_string(block_size) + " is not supported for " +
                        kernels::weight_format_name(format),
                    "use a power of two from 8 to 4096 (bitsandbytes NF4 uses 64)");
  }
}

uint64_t QuantizedWeight::bytes() const {
  return data.size() + scales.size() * 4 + zeros.size() + absmax_codes.size() + absmax_scales.size() * 4;
}

std::vector<float> QuantizedWeight::block_absmax() const {
  VKT_ASSERT(format == WeightFormat::nf4, "block_absmax is for nf4 weights");
  if (!double_quant) return scales;
  return double_dequantize(absmax_codes.data(), absmax_scales.data(), absmax_offset, blocks());
}

void quantize_nf4(const float* x, uint64_t n, uint32_t block_size, uint8_t* codes, float* absmax) {
  uint64_t blocks = ceil_div(n, block_size);
  for (uint64_t b = 0; b < blocks; b++) {
    uint64_t start = b * block_size;
    float block_max = 0.0f;
    for (uint64_t i = start; i < std::min<uint64_t>(start + block_size, n); i++)
      block_max = std::max(block_max, std::fabs(x[i]));
    absmax[b] = block_max;
    // bitsandbytes multiplies by the fp32 reciprocal; a zero block gives 0 * inf = NaN -> code 0.
    bool zero_block = block_max < FLT_MIN;
    float reciprocal = zero_block ? 0.0f : 1.0f / block_max;
    for (uint64_t i = start; i < start + block_size; i += 2) {
      uint32_t first = zero_block ? 0 : nf4_code(element(x, n, i) * reciprocal);
      uint32_t second = zero_block ? 0 : nf4_code(element(x, n, i + 1) * reciprocal);
      codes[i / 2] = pack_nibbles(first, second);
    }
  }
}

DoubleQuantized double_quantize(const float* absmax, uint64_t blocks) {
  DoubleQuantized result;
  result.offset = absmax_mean(absmax, blocks);
  result.codes.resize(blocks);
  result.scales.resize(ceil_div(blocks, double_quant_group));
  for (uint64_t g = 0; g < result.scales.size(); g++) {
    uint64_t start = g * double_quant_group, end = std::min<uint64_t>(start + double_quant_group, blocks);
    float group_max = 0.0f;
    for (uint64_t b = start; b < end; b++) group_max = std::max(group_max, std::fabs(absmax[b] - result.offset));
    result.scales[g] = group_max;
    bool zero_group = group_max < FLT_MIN;  // bitsandbytes: NaN -> code 0
    float reciprocal = zero_group ? 0.0f : 1.0f / group_max;
    for (uint64_t b = start; b < end; b++)
      result.codes[b] = zero_group ? 0 : dynamic_map_code((absmax[b] - result.offset) * reciprocal);
  }
  return result;
}

std::vector<float> double_dequantize(const uint8_t* codes, const float* scales, float offset, uint64_t blocks,
                                     const float* map) {
  if (!map) map = dynamic_map().data();
  std::vector<float> absmax(blocks);
  for (uint64_t b = 0; b < blocks; b++) absmax[b] = rounded(map[codes[b]] * scales[b / double_quant_group]) + offset;
  return absmax;
}

void quantize_int(const float* x, uint64_t n, WeightFormat format, uint32_t block_size, uint8_t* codes, float* scales,
                  uint8_t* zeros) {
  VKT_ASSERT(format == WeightFormat::int8 || format == WeightFormat::int4 || format == WeightFormat::int4_asym,
             "quantize_int formats are int8, int4, int4_asym");
  uint64_t blocks = ceil_div(n, block_size);
  for (uint64_t b = 0; b < blocks; b++) {
    uint64_t start = b * block_size, end = std::min<uint64_t>(start + block_size, n);
    float low = 0.0f, high = 0.0f, block_max = 0.0f;  // low/high include 0 (see the header)
    for (uint64_t i = start; i < end; i++) {
      low = std::min(low, x[i]);
      high = std::max(high, x[i]);
      block_max = std::max(block_max, std::fabs(x[i]));
    }
    float scale = format == WeightFormat::int8   ? block_max / 127.0f
                  : format == WeightFormat::int4 ? block_max / 7.0f
                                                 : (high - low) / 15.0f;
    bool zero_block = scale < FLT_MIN;
    if (zero_block) scale = 0.0f;
    float reciprocal = zero_block ? 0.0f : 1.0f / scale;
    int zero = 0;
    if (format == WeightFormat::int4_asym) {
      zero = zero_block ? 0 : std::clamp(round_half_away(-low * reciprocal), 0, 15);
      zeros[b] = static_cast<uint8_t>(zero);
    }
    scales[b] = scale;
    auto code_of = [&](float value) -> int {
      int q = zero_block ? 0 : round_half_away(value * reciprocal);
      switch (format) {
        case WeightFormat::int8:
          return std::clamp(q, -127, 127);
        case WeightFormat::int4:
          return std::clamp(q, -8, 7) + 8;
        default:
          return std::clamp(q + zero, 0, 15);
      }
    };
    if (format == WeightFormat::int8) {
      for (uint64_t i = start; i < start + block_size; i++)
        codes[i] = static_cast<uint8_t>(static_cast<int8_t>(code_of(element(x, n, i))));
    } else {
      for (uint64_t i = start; i < start + block_size; i += 2)
        codes[i / 2] = pack_nibbles(static_cast<uint32_t>(code_of(element(x, n, i))),
                                    static_cast<uint32_t>(code_of(element(x, n, i + 1))));
    }
  }
}

QuantizedWeight quantize(const float* w, uint32_t rows, uint32_t cols, WeightFormat format, const QuantOptions& options,
                         const std::string& name) {
  QuantizedWeight q;
  q.format = format;
  q.rows = rows;
  q.cols = cols;
  q.block_size = options.block_size;
  q.double_quant = format == WeightFormat::nf4 && options.double_quant;
  check_block_size(format, options.block_size, name);
  uint64_t n = q.elements();
  for (uint64_t i = 0; i < n; i++) {
    if (!std::isfinite(w[i])) {
      std::ostringstream what;
      what << name << ": element [" << i / cols << ", " << i % cols << "] is " << w[i] << ", which cannot be quantized";
      throw UserError(what.str(), "check the checkpoint for NaN/Inf weights (a broken conversion or overflowed fp16)");
    }
  }
  switch (format) {
    case WeightFormat::f32:
      q.data.resize(n * 4);
      std::memcpy(q.data.data(), w, n * 4);
      break;
    case WeightFormat::f16:
    case WeightFormat::bf16: {
      q.data.resize(n * 2);
      for (uint64_t i = 0; i < n; i++) {
        uint16_t bits = format == WeightFormat::f16 ? float_to_half(w[i]) : float_to_bf16(w[i]);
        std::memcpy(q.data.data() + i * 2, &bits, 2);
      }
      break;
    }
    case WeightFormat::nf4: {
      q.data.resize(q.padded_elements() / 2);
      std::vector<float> absmax(q.blocks());
      quantize_nf4(w, n, q.block_size, q.data.data(), absmax.data());
      if (q.double_quant) {
        DoubleQuantized dq = double_quantize(absmax.data(), absmax.size());
        q.absmax_codes = std::move(dq.codes);
        q.absmax_scales = std::move(dq.scales);
        q.absmax_offset = dq.offset;
      } else {
        q.scales = std::move(absmax);
      }
      break;
    }
    case WeightFormat::int8:
    case WeightFormat::int4:
    case WeightFormat::int4_asym:
      q.data.resize(format == WeightFormat::int8 ? q.padded_elements() : q.padded_elements() / 2);
      q.scales.resize(q.blocks());
      if (format == WeightFormat::int4_asym) q.zeros.resize(q.blocks());
      quantize_int(w, n, format, q.block_size, q.data.data(), q.scales.data(), q.zeros.data());
      break;
    default:  // ggml blocks come from GGUF files as they are (ggml_device.hpp), gguf is not a storage format
      VKT_ASSERT(false, std::string("quantize() to ") + kernels::weight_format_name(format));
  }
  return q;
}

void dequantize(const QuantizedWeight& q, float* out) {
  uint64_t n = q.elements();
  auto nibble = [&](uint64_t i) -> int { return (i & 1) ? q.data[i / 2] & 15 : q.data[i / 2] >> 4; };
  switch (q.format) {
    case WeightFormat::f32:
      std::memcpy(out, q.data.data(), n * 4);
      return;
    case WeightFormat::f16:
    case WeightFormat::bf16:
      for (uint64_t i = 0; i < n; i++) {
        uint16_t bits;
        std::memcpy(&bits, q.data.data() + i * 2, 2);
        out[i] = q.format == WeightFormat::f16 ? half_to_float(bits) : bf16_to_float(bits);
      }
      return;
    case WeightFormat::nf4: {
      std::vector<float> absmax = q.block_absmax();
      for (uint64_t i = 0; i < n; i++) out[i] = nf4_table()[static_cast<size_t>(nibble(i))] * absmax[i / q.block_size];
      return;
    }
    case WeightFormat::int8:
      for (uint64_t i = 0; i < n; i++)
        out[i] = static_cast<float>(static_cast<int8_t>(q.data[i])) * q.scales[i / q.block_size];
      return;
    case WeightFormat::int4:
      for (uint64_t i = 0; i < n; i++) out[i] = static_cast<float>(nibble(i) - 8) * q.scales[i / q.block_size];
      return;
    case WeightFormat::int4_asym:
      for (uint64_t i = 0; i < n; i++) {
        uint64_t b = i / q.block_size;
        out[i] = static_cast<float>(nibble(i) - static_cast<int>(q.zeros[b])) * q.scales[b];
      }
      return;
    default:
      VKT_ASSERT(false, std::string("dequantize() of ") + kernels::weight_format_name(q.format) +
                            ": ggml blocks dequantize with dequantize_ggml");
  }
}

std::vector<float> dequantize(const QuantizedWeight& weight) {
  std::vector<float> out(weight.elements());
  dequantize(weight, out.data());
  return out;
}

}  // namespace vkt::quant
