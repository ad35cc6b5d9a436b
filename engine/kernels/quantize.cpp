#include "engine/kernels/quantize.hpp"

#include <bit>

#include "engine/base/error.hpp"
#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {

namespace {

uint32_t log2_block(uint32_t block_size) {
  VKT_ASSERT(block_size >= 8 && block_size <= 4096 && std::has_single_bit(block_size),
             "block size is a power of two in [8, 4096]");
  return static_cast<uint32_t>(std::countr_zero(block_size));
}

void check_word_aligned(const BufferRange& range, const char* what) {
  VKT_ASSERT(range.bytes == 0 || range.address % 4 == 0, std::string(what) + " must be 4-byte aligned");
}

uint64_t block_count(uint64_t n, uint32_t block_size) { return (n + block_size - 1) / block_size; }

}  // namespace

BufferRange word_span(const BufferRange& range) {
  BufferRange widened = range;
  widened.bytes = (range.bytes + 3) / 4 * 4;
  return widened;
}

QuantWeightPush quant_weight_push(const WeightRef& weight) {
  QuantWeightPush push;
  push.data = weight.data.address;
  push.encoding = static_cast<uint32_t>(weight.format);
  if (!is_quantized(weight.format)) return push;
  push.encoding |= log2_block(weight.block_size) << 8;
  if (is_ggml_block(weight.format)) return push;  // the scales are inside the blocks
  switch (weight.format) {
    case WeightFormat::nf4:
      if (weight.double_quant) {
        push.stats0 = weight.absmax_codes.address;
        push.stats1 = weight.absmax_scales.address;
        push.absmax_offset = weight.absmax_offset;
        push.encoding |= 1u << 16;
      } else {
        push.stats0 = weight.scales.address;
      }
      break;
    case WeightFormat::int4_asym:
      push.stats0 = weight.scales.address;
      push.stats1 = weight.zeros.address;
      break;
    default:
      push.stats0 = weight.scales.address;
      break;
  }
  return push;
}

void require_weight_bytes(const WeightRef& w, uint64_t elements, const std::string& op) {
  if (!is_quantized(w.format)) {
    uint64_t element_bytes = w.format == WeightFormat::f32 ? 4 : 2;
    require_bytes(w.data, elements * element_bytes, op, "W");
    return;
  }
  VKT_ASSERT(w.block_size >= 8 && (w.block_size & (w.block_size - 1)) == 0,
             op + ": block size " + std::to_string(w.block_size) + " is not a power of two >= 8");
  VKT_ASSERT(elements <= (uint64_t(1) << 32), op + ": quantized weight above 2^32 elements");
  uint64_t blocks = (elements + w.block_size - 1) / w.block_size;
  if (is_ggml_block(w.format)) {
    VKT_ASSERT(w.block_size == ggml_block_elements(w.format),
               op + ": " + weight_format_name(w.format) + " blocks hold " +
                   std::to_string(ggml_block_elements(w.format)) + " elements");
    require_bytes(w.data, ggml_data_bytes(w.format, elements), op, "ggml W blocks (+4 tail bytes)");
    VKT_ASSERT(w.data.address % 4 == 0, op + ": ggml W blocks are not 4-byte aligned");
    return;
  }
  uint64_t code_bytes = w.format == WeightFormat::int8 ? elements : (elements + 1) / 2;
  auto need = [&](const BufferRange& range, uint64_t bytes, const char* what) {
    require_bytes(range, bytes, op, std::string("quantized W ") + what);
    VKT_ASSERT(range.address % 4 == 0, op + ": quantized W " + what + " is not 4-byte aligned");
  };
  need(w.data, code_bytes, "codes");
  if (w.format == WeightFormat::nf4 && w.double_quant) {
    need(w.absmax_codes, blocks, "absmax codes");
    need(w.absmax_scales, (blocks + 255) / 256 * 4, "absmax scales");
  } else {
    need(w.scales, blocks * 4, w.format == WeightFormat::nf4 ? "absmax" : "scales");
  }
  if (w.format == WeightFormat::int4_asym) need(w.zeros, blocks, "zeros");
}

std::vector<BufferRange> quant_weight_reads(const WeightRef& weight) {
  std::vector<BufferRange> reads{word_span(weight.data)};
  if (!is_quantized(weight.format) || is_ggml_block(weight.format)) return reads;
  if (weight.format == WeightFormat::nf4 && weight.double_quant) {
    reads.push_back(word_span(weight.absmax_codes));
    reads.push_back(weight.absmax_scales);
  } else {
    reads.push_back(weight.scales);
  }
  if (weight.format == WeightFormat::int4_asym) reads.push_back(word_span(weight.zeros));
  return reads;
}

void quantize_nf4(Recorder& recorder, const BufferRange& x, uint64_t n, uint32_t block_size, const BufferRange& codes,
                  const BufferRange& absmax) {
  uint64_t blocks = block_count(n, block_size);
  log2_block(block_size);
  check_word_aligned(codes, "nf4 codes");
  require_bytes(x, n * 4, "quantize_nf4", "x");
  require_bytes(codes, blocks * block_size / 2, "quantize_nf4", "codes");
  require_bytes(absmax, blocks * 4, "quantize_nf4", "absmax");
  struct {
    uint64_t x, codes, absmax, n;
    uint32_t block_size, blocks;
  } push{x.address, codes.address, absmax.address, n, block_size, static_cast<uint32_t>(blocks)};
  record_dispatch(
      recorder,
      {.shader = "quantize_nf4", .push = push, .grid = grid_1d(blocks, 64), .reads = {x}, .writes = {codes, absmax}});
}

void quantize_int(Recorder& recorder, const BufferRange& x, uint64_t n, WeightFormat format, uint32_t block_size,
                  const BufferRange& codes, const BufferRange& scales, const BufferRange& zeros) {
  VKT_ASSERT(format == WeightFormat::int8 || format == WeightFormat::int4 || format == WeightFormat::int4_asym,
             "quantize_int formats are int8, int4, int4_asym");
  uint64_t blocks = block_count(n, block_size);
  log2_block(block_size);
  check_word_aligned(codes, "int codes");
  check_word_aligned(zeros, "int4_asym zeros");
  uint64_t code_bytes = format == WeightFormat::int8 ? blocks * block_size : blocks * block_size / 2;
  require_bytes(x, n * 4, "quantize_int", "x");
  require_bytes(codes, code_bytes, "quantize_int", "codes");
  require_bytes(scales, blocks * 4, "quantize_int", "scales");
  if (format == WeightFormat::int4_asym) require_bytes(zeros, blocks, "quantize_int", "zeros");
  struct {
    uint64_t x, codes, scales, zeros, n;
    uint32_t block_size, blocks, format;
  } push{x.address,
         codes.address,
         scales.address,
         zeros.address,
         n,
         block_size,
         static_cast<uint32_t>(blocks),
         static_cast<uint32_t>(format)};
  std::vector<BufferRange> writes{codes, scales};
  if (format == WeightFormat::int4_asym) writes.push_back(word_span(zeros));
  record_dispatch(
      recorder, {.shader = "quantize_int", .push = push, .grid = grid_1d(blocks, 64), .reads = {x}, .writes = writes});
}

void absmax_mean(Recorder& recorder, const BufferRange& absmax, uint32_t blocks, const BufferRange& mean) {
  require_bytes(absmax, uint64_t{blocks} * 4, "absmax_mean", "absmax");
  require_bytes(mean, 4, "absmax_mean", "mean");
  struct {
    uint64_t absmax, mean;
    uint32_t blocks;
  } push{absmax.address, mean.address, blocks};
  record_dispatch(recorder,
                  {.shader = "absmax_mean", .push = push, .grid = {1, 1, 1}, .reads = {absmax}, .writes = {mean}});
}

void double_quantize(Recorder& recorder, const BufferRange& absmax, uint32_t blocks, const BufferRange& offset,
                     const BufferRange& absmax_codes, const BufferRange& absmax_scales) {
  uint64_t groups = block_count(blocks, 256);
  check_word_aligned(absmax_codes, "absmax codes");
  require_bytes(absmax, uint64_t{blocks} * 4, "double_quantize", "absmax");
  require_bytes(offset, 4, "double_quantize", "offset");
  require_bytes(absmax_codes, blocks, "double_quantize", "absmax_codes");
  require_bytes(absmax_scales, groups * 4, "double_quantize", "absmax_scales");
  struct {
    uint64_t absmax, offset, absmax_codes, absmax_scales;
    uint32_t blocks;
  } push{absmax.address, offset.address, absmax_codes.address, absmax_scales.address, blocks};
  record_dispatch(recorder, {.shader = "double_quantize",
                             .push = push,
                             .grid = grid_1d(groups, 1),  // one workgroup per 256 blocks
                             .reads = {absmax, offset},
                             .writes = {word_span(absmax_codes), absmax_scales}});
}

uint64_t quantize_workspace_bytes(const WeightRef& out, uint64_t n) {
  if (out.format != WeightFormat::nf4 || !out.double_quant) return 0;
  return block_count(n, out.block_size) * 4;
}

void quantize_weight(Recorder& recorder, const BufferRange& x, uint64_t n, const WeightRef& out,
                     const BufferRange& workspace, const BufferRange& offset) {
  VKT_ASSERT(is_quantized(out.format), "quantize_weight needs a quantized format");
  if (out.format != WeightFormat::nf4) {
    quantize_int(recorder, x, n, out.format, out.block_size, out.data, out.scales, out.zeros);
    return;
  }
  if (!out.double_quant) {
    quantize_nf4(recorder, x, n, out.block_size, out.data, out.scales);
    return;
  }
  uint64_t blocks = block_count(n, out.block_size);
  require_bytes(workspace, blocks * 4, "quantize_weight", "workspace");
  require_bytes(offset, 4, "quantize_weight", "offset");
  BufferRange raw_absmax = workspace;
  raw_absmax.bytes = blocks * 4;
  quantize_nf4(recorder, x, n, out.block_size, out.data, raw_absmax);
  absmax_mean(recorder, raw_absmax, static_cast<uint32_t>(blocks), offset);
  double_quantize(recorder, raw_absmax, static_cast<uint32_t>(blocks), offset, out.absmax_codes, out.absmax_scales);
}

void dequantize(Recorder& recorder, const WeightRef& weight, uint64_t n, const BufferRange& out, bool per_element) {
  for (const BufferRange& range : quant_weight_reads(weight)) check_word_aligned(range, "weight arrays");
  require_weight_bytes(weight, n, "dequantize");
  require_bytes(out, n * 4, "dequantize", "out");
  struct {
    QuantWeightPush weight;
    uint64_t out, n;
    uint32_t per_element;
  } push{quant_weight_push(weight), out.address, n, per_element ? 1u : 0u};
  record_dispatch(recorder, {.shader = "dequantize",
                             .push = push,
                             .grid = grid_1d((n + 7) / 8, 64),
                             .reads = quant_weight_reads(weight),
                             .writes = {out}});
}

}  // namespace vkt::kernels
