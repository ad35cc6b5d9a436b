#pragma once
// Quantization on the device: fp32 weights -> NF4 (with bitsandbytes' double quantization),
// INT8, INT4 and INT4-asym codes and statistics in the layouts of types.hpp, and any weight
// format -> fp32. The codes and statistics are bit-identical to the CPU functions of
// engine/quant (quantize.hpp), which are these kernels' references and document the rules.
//
// Also: how a shader receives a WeightRef (QuantWeightPush, the QuantWeight struct of
// shaders/quant.glsl) — what a matmul that dequantizes in its load stage passes in its push
// constants, and the ranges it must name as reads.
//
// Byte arrays (codes, zeros, absmax codes) are accessed as 32-bit words: their addresses must be
// 4-byte aligned, and the word holding the last byte may reach up to 3 bytes past the array
// (vk::Allocator rounds every buffer up to 256 bytes, so a whole buffer always covers it).
#include <vector>

#include "engine/kernels/dispatch.hpp"
#include "engine/kernels/types.hpp"

namespace vkt::kernels {

// The QuantWeight struct of shaders/quant.glsl, 32 bytes, 8-byte aligned in a push-constant
// block: data, stats0, stats1 are device addresses (see quant.glsl for what each format puts
// there), encoding = format | log2(block_size) << 8 | double_quant << 16.
struct QuantWeightPush {
  uint64_t data = 0;
  uint64_t stats0 = 0;
  uint64_t stats1 = 0;
  float absmax_offset = 0;
  uint32_t encoding = 0;
};
static_assert(sizeof(QuantWeightPush) == 32, "QuantWeight is 32 bytes in std430");

QuantWeightPush quant_weight_push(const WeightRef& weight);
// Every range a shader reading `weight` touches (byte arrays widened to whole words): pass them
// as reads to Recorder::dispatch.
std::vector<BufferRange> quant_weight_reads(const WeightRef& weight);
// `range` extended to a multiple of 4 bytes (how shaders access uint8 arrays).
BufferRange word_span(const BufferRange& range);
// The check a wrapper reading `weight` makes: every array holds what a shader reads for
// `elements` elements of the flattened weight; a quantized weight's arrays are word-aligned
// (quant.glsl reads bytes as 32-bit words) and its indices fit 32 bits. Errors name `op`.
void require_weight_bytes(const WeightRef& weight, uint64_t elements, const std::string& op);

// NF4 codes and absmax of x (bitsandbytes quantize_4bit). x: (n) fp32; codes: (blocks*block_size/2)
// uint8; absmax: (blocks) fp32, blocks = ceil(n / block_size); block_size a power of two >= 8.
void quantize_nf4(Recorder& recorder, const BufferRange& x, uint64_t n, uint32_t block_size, const BufferRange& codes,
                  const BufferRange& absmax);

// INT8 / INT4 / INT4-asym codes and scales. x: (n) fp32; codes: int8 (blocks*block_size) or
// uint8 (blocks*block_size/2); scales: (blocks) fp32; zeros: (blocks) uint8 for int4_asym (else
// an empty range).
void quantize_int(Recorder& recorder, const BufferRange& x, uint64_t n, WeightFormat format, uint32_t block_size,
                  const BufferRange& codes, const BufferRange& scales, const BufferRange& zeros);

// mean: (1) fp32 = engine/quant absmax_mean(absmax): the fp32 nearest to the mean of
// absmax: (blocks) fp32 >= 0, from an exact fixed-point sum. One workgroup.
void absmax_mean(Recorder& recorder, const BufferRange& absmax, uint32_t blocks, const BufferRange& mean);

// bitsandbytes' double quantization: absmax: (blocks) fp32; offset: (1) fp32 (absmax_mean);
// absmax_codes: (blocks) uint8; absmax_scales: (ceil(blocks/256)) fp32.
void double_quantize(Recorder& recorder, const BufferRange& absmax, uint32_t blocks, const BufferRange& offset,
                     const BufferRange& absmax_codes, const BufferRange& absmax_scales);

// Bytes of the workspace quantize_weight needs: (blocks) fp32 raw absmax for nf4 with double
// quant, else 0.
uint64_t quantize_workspace_bytes(const WeightRef& out, uint64_t n);

// Records every pass that fills `out` (a quantized format; its ranges sized as types.hpp says)
// from x: (n) fp32. nf4 with double quant: workspace holds the raw absmax and `offset` (1 fp32)
// receives the mean; WeightRef::absmax_offset is a host value, so copy it back from `offset`
// before `out` is used (engine/quant quantize_on_device does).
void quantize_weight(Recorder& recorder, const BufferRange& x, uint64_t n, const WeightRef& out,
                     const BufferRange& workspace = {}, const BufferRange& offset = {});

// out: (n) fp32 = weight dequantized (any WeightFormat), through shaders/quant.glsl:
// quant_weight8() for aligned groups of 8, or quant_weight() for every element with per_element.
void dequantize(Recorder& recorder, const WeightRef& weight, uint64_t n, const BufferRange& out,
                bool per_element = false);

}  // namespace vkt::kernels
