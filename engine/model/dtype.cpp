#include "engine/model/dtype.hpp"

namespace vkt::model {

FileDtype file_dtype(kernels::DType dtype) {
  switch (dtype) {
    case kernels::DType::f16:
      return FileDtype::F16;
    case kernels::DType::bf16:
      return FileDtype::BF16;
    case kernels::DType::f32:
      break;
  }
  return FileDtype::F32;
}

FileDtype file_dtype_from_torch(std::string_view name) {
  return file_dtype(kernels::dtype_from_torch_name(name).value_or(kernels::DType::f32));
}

const char* torch_dtype_name(FileDtype dtype) {
  if (dtype == FileDtype::F16) return kernels::torch_dtype_name(kernels::DType::f16);
  if (dtype == FileDtype::BF16) return kernels::torch_dtype_name(kernels::DType::bf16);
  return kernels::torch_dtype_name(kernels::DType::f32);
}

}  // namespace vkt::model
