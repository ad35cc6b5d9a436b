#include "engine/quant/ggml_device.hpp"

#include <vector>

#include "engine/base/error.hpp"

namespace vkt::quant {

using kernels::WeightFormat;

namespace {
struct Pair {
  GgmlType type;
  WeightFormat format;
};
constexpr Pair pairs[] = {
    {GgmlType::F32, WeightFormat::f32},        {GgmlType::F16, WeightFormat::f16},
    {GgmlType::BF16, WeightFormat::bf16},      {GgmlType::Q8_0, WeightFormat::ggml_q8_0},
    {GgmlType::Q4_0, WeightFormat::ggml_q4_0}, {GgmlType::Q4_1, WeightFormat::ggml_q4_1},
    {GgmlType::Q5_0, WeightFormat::ggml_q5_0}, {GgmlType::Q5_1, WeightFormat::ggml_q5_1},
    {GgmlType::Q4_K, WeightFormat::ggml_q4_k}, {GgmlType::Q5_K, WeightFormat::ggml_q5_k},
    {GgmlType::Q6_K, WeightFormat::ggml_q6_k},
};
}  // namespace

WeightFormat ggml_device_format(GgmlType type) {
  for (const Pair& pair : pairs)
    if (pair.type == type) return pair.format;
  VKT_ASSERT(false, std::string("no device format for ggml type ") + ggml_type_name(type));
  return WeightFormat::f32;
}

std::optional<GgmlType> ggml_type_of_format(WeightFormat format) {
  for (const Pair& pair : pairs)
    if (pair.format == format) return pair.type;
  return std::nullopt;
}

uint64_t ggml_device_bytes(WeightFormat format, uint64_t elements) {
  if (kernels::is_ggml_block(format)) return kernels::ggml_data_bytes(format, elements);
  std::optional<GgmlType> type = ggml_type_of_format(format);
  VKT_ASSERT(type.has_value(), "ggml_device_bytes of a non-ggml format");
  return ggml_row_bytes(*type, elements);
}

DeviceWeight upload_ggml(vk::Context& context, GgmlType type, uint32_t rows, uint32_t cols,
                         std::span<const uint8_t> bytes, const std::string& name) {
  const WeightFormat format = ggml_device_format(type);
  const uint64_t elements = uint64_t{rows} * cols;
  VKT_ASSERT(bytes.size() == ggml_row_bytes(type, elements), name + ": raw ggml bytes of the wrong size");
  DeviceWeight weight;
  weight.rows = rows;
  weight.cols = cols;
  const bool blocks = kernels::is_ggml_block(format);
  std::vector<uint8_t> padded(bytes.begin(), bytes.end());
  padded.resize(ggml_device_bytes(format, elements), 0);
  weight.data =
      context.allocate(padded.size(), blocks ? vk::Category::quantized_weights : vk::Category::base_weights, name);
  context.upload(weight.data, padded.data(), 0, padded.size());
  weight.ref.format = format;
  weight.ref.block_size = blocks ? kernels::ggml_block_elements(format) : 64;
  weight.ref.data = weight.data.range();
  return weight;
}

}  // namespace vkt::quant
