#include "engine/kernels/types.hpp"

namespace vkt::kernels {

uint32_t dtype_bytes(DType type) { return type == DType::f32 ? 4 : 2; }

const char* dtype_name(DType type) {
  switch (type) {
    case DType::f32: return "fp32";
    case DType::f16: return "fp16";
    case DType::bf16: return "bf16";
  }
  return "?";
}

std::optional<WeightFormat> weight_format_from_quant_name(std::string_view name) {
  if (name == "none") return WeightFormat::f32;
  if (name == "nf4") return WeightFormat::nf4;
  if (name == "int8") return WeightFormat::int8;
  if (name == "int4") return WeightFormat::int4;
  if (name == "int4-asym" || name == "int4_asym") return WeightFormat::int4_asym;
  return std::nullopt;
}

const char* weight_format_name(WeightFormat format) {
  switch (format) {
    case WeightFormat::f32: return "fp32";
    case WeightFormat::f16: return "fp16";
    case WeightFormat::bf16: return "bf16";
    case WeightFormat::nf4: return "nf4";
    case WeightFormat::int8: return "int8";
    case WeightFormat::int4: return "int4";
    case WeightFormat::int4_asym: return "int4-asym";
  }
  return "?";
}

bool is_quantized(WeightFormat format) {
  return format == WeightFormat::nf4 || format == WeightFormat::int8 || format == WeightFormat::int4 ||
         format == WeightFormat::int4_asym;
}

}  // namespace vkt::kernels
