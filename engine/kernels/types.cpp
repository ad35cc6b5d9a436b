#include "engine/kernels/types.hpp"

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
                                                   {WeightFormat::int4_asym, "int4_asym"}};
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
  }
  return "?";
}

bool is_quantized(WeightFormat format) {
  return format == WeightFormat::nf4 || format == WeightFormat::int8 || format == WeightFormat::int4 ||
         format == WeightFormat::int4_asym;
}

}  // namespace vkt::kernels
