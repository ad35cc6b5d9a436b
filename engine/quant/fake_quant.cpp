#include "engine/quant/fake_quant.hpp"

#include "engine/base/error.hpp"
#include "engine/quant/quantize.hpp"

namespace vkt::quant {

using kernels::WeightFormat;

uint64_t fake_quant_codes_bytes(WeightFormat format, uint64_t n, uint32_t block_size) {
  const uint64_t padded = (n + block_size - 1) / block_size * block_size;
  const uint64_t bytes = format == WeightFormat::int8 ? padded : padded / 2;
  return (bytes + 3) / 4 * 4;  // shaders write whole words
}

uint64_t fake_quant_scales_bytes(uint64_t n, uint32_t block_size) { return (n + block_size - 1) / block_size * 4; }

void fake_quantize(kernels::Recorder& recorder, const kernels::BufferRange& w, uint64_t n, WeightFormat format,
                   uint32_t block_size, const kernels::BufferRange& codes, const kernels::BufferRange& scales,
                   const kernels::BufferRange& zeros, const kernels::BufferRange& out) {
  VKT_ASSERT(kernels::is_quantized(format) && !kernels::is_ggml_block(format),
             "fake_quantize: nf4, int8, int4 or int4_asym");
  kernels::WeightRef weight;
  weight.format = format;
  weight.block_size = block_size;
  weight.data = codes;
  weight.scales = scales;
  weight.zeros = format == WeightFormat::int4_asym ? zeros : kernels::BufferRange{};
  kernels::quantize_weight(recorder, w, n, weight);
  kernels::dequantize(recorder, weight, n, out, n % 8 != 0);
}

}  // namespace vkt::quant

namespace vkt::ref {
std::vector<float> fake_quantize(const float* w, uint32_t rows, uint32_t cols, kernels::WeightFormat format,
                                 uint32_t block_size) {
  quant::QuantOptions options;
  options.block_size = block_size;
  options.double_quant = false;
  return quant::dequantize(quant::quantize(w, rows, cols, format, options));
}
}  // namespace vkt::ref
