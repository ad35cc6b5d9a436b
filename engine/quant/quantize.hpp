#pragma once
// CPU quantization and dequantization of base weights into the layouts of
// engine/kernels/types.hpp (WeightFormat), and the QuantizedWeight host bundle. These functions
// are the oracle of the GPU quantize/dequantize kernels (engine/kernels/quantize.hpp), which
// produce bit-identical codes and statistics.
//
// Blocks are runs of block_size consecutive elements of the flattened (row-major) weight. The
// last block is padded with zeros up to block_size (as bitsandbytes' loads pad with 0): the
// padding is quantized like any element (NF4 code 7 = 0.0, INT8 0, INT4 8, INT4-asym the block's
// zero point), and it enters no statistic except as a 0 (which never raises an absmax).
//
// Rules per format (x: one element, b: its block):
// - nf4 (bitsandbytes quantize_4bit, quant_type="nf4", CUDA kernel semantics):
//   absmax = max |x| over b; code = nf4_code(x * (1 / absmax)) with the reciprocal rounded
//   once to fp32 and the product rounded to fp32; two codes per byte, the FIRST element in the
//   HIGH nibble. absmax below FLT_MIN (a zero block) gives code 0 for every element, as
//   bitsandbytes' 0 * (1/0) = NaN does. Value = NF4[code] * absmax.
//   Double quantization (compress_statistics=True): offset = absmax_mean(absmax) (the fp32
//   mean; torch computes it with its own reduction order and can differ in the last ulp);
//   v = absmax - offset; groups of 256 consecutive blocks get absmax2 = max |v| and codes
//   dynamic_map_code(v * (1 / absmax2)) (bitsandbytes quantize_blockwise, blocksize 256).
//   absmax2 below FLT_MIN -> codes 0. Decoded absmax(b) = map[code] * absmax2[b/256] + offset,
//   the product rounded before the add.
// - int8: scale = absmax / 127; code = clamp(round_half_away(x * (1 / scale)), -127, 127);
//   value = code * scale.
// - int4: scale = absmax / 7; code = clamp(round_half_away(x * (1 / scale)), -8, 7) + 8;
//   value = (code - 8) * scale.
// - int4_asym: the block range is widened to include 0 (lo = min(min x, 0), hi = max(max x, 0),
//   as affine quantizers do, so every element is within scale/2 of a code even when a block has
//   one sign); scale = (hi - lo) / 15; zero = clamp(round_half_away(-lo * (1 / scale)), 0, 15);
//   code = clamp(round_half_away(x * (1 / scale)) + zero, 0, 15); value = (code - zero) * scale.
// - int formats: a scale below FLT_MIN (all-zero block; max == min) stores scale 0, zero 0 and
//   the code of 0 for every element.
// The int formats multiply by the block's reciprocal rather than dividing each x by the scale:
// one division per block instead of one per element on the GPU, where a division is an integer
// long division; the codes differ from round(x / scale) only where x / scale lies within an ulp of
// k + 1/2, and the error bound (scale / 2) is the same.
// All reciprocals are correctly rounded fp32 (1.0f / scale) and multiplied in, so a GPU (which
// computes the reciprocal with integer long division) reproduces every code; bitsandbytes' CUDA
// build uses --use_fast_math, whose approximate reciprocal can move a value that lies within one
// ulp of an NF4 threshold to the neighbouring code.
// Inputs must be finite (quantize throws a UserError naming the element otherwise).
#include <cstdint>
#include <string>
#include <vector>

#include "engine/kernels/types.hpp"
#include "engine/quant/formats.hpp"

namespace vkt::quant {

using kernels::WeightFormat;

constexpr uint32_t double_quant_group = 256;  // blocks per absmax2 (bitsandbytes blocksize=256)

struct QuantOptions {
  uint32_t block_size = 64;  // a power of two in [8, 4096] (bitsandbytes nf4: 32..4096)
  bool double_quant = true;  // nf4 only: bitsandbytes' compress_statistics
};

// A quantized weight on the host, in the exact byte layout the device buffers take.
struct QuantizedWeight {
  WeightFormat format = WeightFormat::nf4;
  uint32_t rows = 0, cols = 0;  // logical shape (out_features, in_features); a vector has rows = 1
  uint32_t block_size = 64;
  bool double_quant = false;          // nf4 only
  std::vector<uint8_t> data;          // nf4/int4/int4_asym: (padded_elements/2) uint8, two codes per byte
                                      //   (element 2j high nibble); int8: (padded_elements) int8 codes
  std::vector<float> scales;          // (blocks) fp32: int scales, or nf4 absmax without double quant
  std::vector<uint8_t> zeros;         // (blocks) uint8 zero points, int4_asym only
  std::vector<uint8_t> absmax_codes;  // (blocks) uint8 dynamic-map codes, nf4 with double quant
  std::vector<float> absmax_scales;   // (ceil(blocks/256)) fp32 absmax2, nf4 with double quant
  float absmax_offset = 0;            // nf4 with double quant: mean of the absmax values

  uint64_t elements() const { return uint64_t{rows} * cols; }
  uint64_t blocks() const { return (elements() + block_size - 1) / block_size; }
  uint64_t padded_elements() const { return blocks() * block_size; }
  uint64_t groups() const { return (blocks() + double_quant_group - 1) / double_quant_group; }
  // Bytes of all arrays together (what the device buffers hold, before alignment).
  uint64_t bytes() const;
  // The absmax of every block (nf4), decoded from the double-quantized codes when present.
  std::vector<float> block_absmax() const;
};

// w: (rows, cols) fp32 row-major. Throws UserError for non-finite values or a bad block size.
QuantizedWeight quantize(const float* w, uint32_t rows, uint32_t cols, WeightFormat format,
                         const QuantOptions& options = {}, const std::string& name = "weight");
// out: (rows, cols) fp32.
void dequantize(const QuantizedWeight& weight, float* out);
std::vector<float> dequantize(const QuantizedWeight& weight);

// ---- The pieces, for tests and for loading bitsandbytes checkpoints ----

// NF4 codes and absmax of x: (n) fp32. codes: (ceil(n/block_size)*block_size/2) uint8,
// absmax: (ceil(n/block_size)) fp32.
void quantize_nf4(const float* x, uint64_t n, uint32_t block_size, uint8_t* codes, float* absmax);

struct DoubleQuantized {
  std::vector<uint8_t> codes;  // (blocks) uint8: dynamic-map codes of absmax - offset
  std::vector<float> scales;   // (ceil(blocks/256)) fp32: absmax2 of each group of 256 blocks
  float offset = 0;            // mean of the absmax values
};
// absmax: (blocks) fp32, non-negative.
DoubleQuantized double_quantize(const float* absmax, uint64_t blocks);
// Decoded absmax: (blocks) fp32. `map` defaults to dynamic_map(); pass a checkpoint's own
// nested_quant_map (256 fp32) to decode it exactly when it differs from ours.
std::vector<float> double_dequantize(const uint8_t* codes, const float* scales, float offset, uint64_t blocks,
                                     const float* map = nullptr);

// Symmetric/asymmetric integer codes of x: (n) fp32 for int8, int4, int4_asym; zeros only for
// int4_asym (else may be null). codes: as QuantizedWeight::data; scales, zeros: (blocks).
void quantize_int(const float* x, uint64_t n, WeightFormat format, uint32_t block_size, uint8_t* codes, float* scales,
                  uint8_t* zeros);

// Validates a block size for a format (UserError naming `name` otherwise).
void check_block_size(WeightFormat format, uint32_t block_size, const std::string& name);

}  // namespace vkt::quant
