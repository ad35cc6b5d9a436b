#include "engine/kernels/types.hpp"

#include "engine/base/error.hpp"

namespace vkt::kernels {

uint32_t dtype_bytes(DType type) { return type == DType::f32 ? 4 : 2; }

namespace {
constexpr NameEntry<DType> dtype_table[] = {{DType::f32, "fp32"}, {DType::f16, "fp16"}, {DType::bf16, "bf16"}};
constexpr NameEntry<DType> torch_dtype_table[] = {
    {DType::f32, "float32"}, {DType::f16, "float16"}, {DType::bf16, "bfloat16"}};
constexpr NameEntry<WeightFormat> quant_table[] = {{WeightFormat::f32, "none"},
                                                   {WeightFormat::nf4, "nf4"},
                                                   {WeightFormat::int8, "int8"},
                                                   {WeightFormat::int4, "int4"},
                                                   {WeightFormat::int4_asym, "int4-asym"},
                                                   {WeightFormat::int4_asym, "int4_asym"},
                                                   {WeightFormat::gguf, "gguf"}};

struct GgmlBlock {
  WeightFormat format;
  const char* name;
  uint32_t elements, bytes;
};
constexpr GgmlBlock ggml_block_table[] = {
    {WeightFormat::ggml_q8_0, "q8_0", 32, 34},   {WeightFormat::ggml_q4_0, "q4_0", 32, 18},
    {WeightFormat::ggml_q4_1, "q4_1", 32, 20},   {WeightFormat::ggml_q5_0, "q5_0", 32, 22},
    {WeightFormat::ggml_q5_1, "q5_1", 32, 24},   {WeightFormat::ggml_q4_k, "q4_k", 256, 144},
    {WeightFormat::ggml_q5_k, "q5_k", 256, 176}, {WeightFormat::ggml_q6_k, "q6_k", 256, 210},
};
const GgmlBlock& ggml_block(WeightFormat format) {
  for (const GgmlBlock& block : ggml_block_table)
    if (block.format == format) return block;
  VKT_ASSERT(false, "not a ggml block format");
  return ggml_block_table[0];
}
}  // namespace

std::span<const NameEntry<DType>> dtype_names() { return dtype_table; }
std::span<const NameEntry<DType>> torch_dtype_names() { return torch_dtype_table; }
const char* dtype_name(DType type) { return enum_name(dtype_names(), type); }
const char* torch_dtype_name(DType type) { return enum_name(torch_dtype_names(), type); }
std::optional<DType> dtype_from_name(std::string_view name) { return enum_from_name(dtype_names(), name); }

std::optional<DType> dtype_from_torch_name(std::string_view name) {
  if (name.starts_with("torch.")) name.remove_prefix(6);  // how torch prints a dtype
  return enum_from_name(torch_dtype_names(), name);
}

std::span<const NameEntry<WeightFormat>> quant_names() { return quant_table; }
const char* quant_name(WeightFormat format) { return enum_name(quant_names(), format); }

std::optional<WeightFormat> weight_format_from_quant_name(std::string_view name) {
  return enum_from_name(quant_names(), name);
}

const char* weight_format_name(WeightFormat format) {
  switch (format) {
    case WeightFormat::f32:
      return "fp32";
    case WeightFormat::f16:
      return "fp16";
    case WeightFormat::bf16:
      return "bf16";
    case WeightFormat::nf4:
      return "nf4";
    case WeightFormat::int8:
      return "int8";
    case WeightFormat::int4:
      return "int4";
    case WeightFormat::int4_asym:
      return "int4-asym";
    case WeightFormat::gguf:
      return "gguf";
    default:
      return ggml_block(format).name;
  }
  return "?";
}

bool is_quantized(WeightFormat format) {
  return format == WeightFormat::nf4 || format == WeightFormat::int8 || format == WeightFormat::int4 ||
         format == WeightFormat::int4_asym || is_ggml_block(format);
}

bool is_ggml_block(WeightFormat format) {
  return format >= WeightFormat::ggml_q8_0 && format <= WeightFormat::ggml_q6_k;
}
uint32_t ggml_block_elements(WeightFormat format) { return ggml_block(format).elements; }
uint32_t ggml_block_bytes(WeightFormat format) { return ggml_block(format).bytes; }
uint64_t ggml_data_bytes(WeightFormat format, uint64_t n) {
  const GgmlBlock& block = ggml_block(format);
  return (n + block.elements - 1) / block.elements * block.bytes + ggml_tail_bytes;
}

}  // namespace vkt::kernels
