#include "tests/golden_file.hpp"

#include <cstring>
#include <stdexcept>

#include "engine/base/files.hpp"
#include "engine/base/half.hpp"

namespace vkt::test {

uint64_t GoldenTensor::elements() const {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n;
}

std::vector<double> GoldenTensor::doubles() const {
  std::vector<double> out(elements());
  for (size_t i = 0; i < out.size(); i++) {
    if (dtype == 0) {
      float v;
      std::memcpy(&v, data.data() + 4 * i, 4);
      out[i] = v;
    } else if (dtype == 4) {
      std::memcpy(&out[i], data.data() + 8 * i, 8);
    } else if (dtype == 3) {
      uint16_t h;
      std::memcpy(&h, data.data() + 2 * i, 2);
      out[i] = half_to_float(h);
    } else
      throw std::runtime_error("golden tensor " + name + " is not floating point");
  }
  return out;
}

std::vector<float> GoldenTensor::floats() const {
  std::vector<double> values = doubles();
  return std::vector<float>(values.begin(), values.end());
}

std::vector<int64_t> GoldenTensor::ints() const {
  std::vector<int64_t> out(elements());
  for (size_t i = 0; i < out.size(); i++) {
    if (dtype == 1) {
      int32_t v;
      std::memcpy(&v, data.data() + 4 * i, 4);
      out[i] = v;
    } else if (dtype == 5) {
      std::memcpy(&out[i], data.data() + 8 * i, 8);
    } else if (dtype == 2) {
      out[i] = data[i];
    } else
      throw std::runtime_error("golden tensor " + name + " is not an integer tensor");
  }
  return out;
}

GoldenFile::GoldenFile(const std::filesystem::path& path) {
  std::string bytes = read_text_file(path);
  size_t at = 0;
  auto take = [&](void* out, size_t n) {
    if (at + n > bytes.size()) throw std::runtime_error(path.string() + ": truncated at byte " + std::to_string(at));
    std::memcpy(out, bytes.data() + at, n);
    at += n;
  };
  char magic[8];
  take(magic, 8);
  if (std::memcmp(magic, "VKTGOLD\0", 8) != 0) throw std::runtime_error(path.string() + ": not a golden file");
  uint32_t version = 0, count = 0;
  take(&version, 4);
  take(&count, 4);
  if (version != 1) throw std::runtime_error(path.string() + ": golden version " + std::to_string(version));
  for (uint32_t i = 0; i < count; i++) {
    GoldenTensor tensor;
    uint32_t name_length = 0, ndim = 0;
    take(&name_length, 4);
    tensor.name.resize(name_length);
    take(tensor.name.data(), name_length);
    take(&tensor.dtype, 4);
    take(&ndim, 4);
    tensor.shape.resize(ndim);
    for (auto& d : tensor.shape) take(&d, 8);
    uint64_t nbytes = 0;
    take(&nbytes, 8);
    tensor.data.resize(nbytes);
    take(tensor.data.data(), nbytes);
    tensors_[tensor.name] = std::move(tensor);
  }
  if (at != bytes.size()) throw std::runtime_error(path.string() + ": trailing bytes");
}

const GoldenTensor& GoldenFile::operator[](const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw std::runtime_error("golden file has no tensor " + name);
  return it->second;
}

}  // namespace vkt::test
