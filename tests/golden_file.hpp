#pragma once
// Reader of the golden files written by tests/reference/make_golden.py (format in
// tests/reference/README.md): "VKTGOLD\0", uint32 version, uint32 count, then named tensors.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace vkt::test {

struct GoldenTensor {
  std::string name;
  uint32_t dtype = 0;  // 0 f32, 1 i32, 2 u8, 3 f16, 4 f64, 5 i64
  std::vector<uint64_t> shape;
  std::vector<uint8_t> data;
  uint64_t elements() const;
  std::vector<float> floats() const;    // f32 / f64 / f16 as fp32
  std::vector<double> doubles() const;  // f32 / f64
  std::vector<int64_t> ints() const;    // i32 / i64 / u8
  double scalar() const { return doubles().at(0); }
};

class GoldenFile {
 public:
  explicit GoldenFile(const std::filesystem::path& path);
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  const GoldenTensor& operator[](const std::string& name) const;
  const std::map<std::string, GoldenTensor>& tensors() const { return tensors_; }

 private:
  std::map<std::string, GoldenTensor> tensors_;
};

}  // namespace vkt::test
