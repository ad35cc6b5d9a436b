#pragma once
// A float tensor's dtype in its three spellings: kernels::DType (what the device computes with,
// named "fp32" by our flags), the safetensors FileDtype ("F32") and torch's name ("float32", in
// config.json's torch_dtype). The names come from the tables in engine/kernels/types.hpp and
// engine/model/safetensors.cpp; this joins them.
#include <string_view>

#include "engine/kernels/types.hpp"
#include "engine/model/safetensors.hpp"

namespace vkt::model {

FileDtype file_dtype(kernels::DType dtype);  // F32, F16, BF16
// The file dtype of a torch name ("bfloat16", "torch.float16"); F32 when empty or unknown, as
// transformers then loads the model in fp32.
FileDtype file_dtype_from_torch(std::string_view name);
// torch's name of a float file dtype; "float32" for any other.
const char* torch_dtype_name(FileDtype dtype);

}  // namespace vkt::model
