#include "engine/model/tensor_source.hpp"

#include "engine/model/safetensors.hpp"

namespace vkt::model {

std::string SafetensorsSource::where() const { return folder_.path().string(); }

bool SafetensorsSource::contains(const std::string& name) const { return folder_.contains(name); }

uint64_t SafetensorsSource::element_count(const std::string& name) const {
  return folder_.tensor(name).element_count();
}

std::vector<uint64_t> SafetensorsSource::shape(const std::string& name) const { return folder_.tensor(name).shape; }

void SafetensorsSource::read_rows(const std::string& name, uint64_t first_row, uint64_t cols,
                                  std::span<float> out) const {
  const TensorView& tensor = folder_.tensor(name);
  const uint64_t element_bytes = file_dtype_size(tensor.dtype);
  TensorView part{name,
                  tensor.dtype,
                  {out.size()},
                  tensor.bytes.subspan(first_row * cols * element_bytes, out.size() * element_bytes)};
  convert_to_fp32(part, out);
  release_mapped_pages(part);
  require_finite(out, folder_.file_of(name).path().string(), name);
}

std::vector<float> SafetensorsSource::read(const std::string& name) const {
  const TensorView& tensor = folder_.tensor(name);
  std::vector<float> values = to_fp32(tensor);
  release_mapped_pages(tensor);
  require_finite(values, folder_.file_of(name).path().string(), name);
  return values;
}

}  // namespace vkt::model
