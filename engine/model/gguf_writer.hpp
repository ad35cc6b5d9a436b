#pragma once
// GGUF files out (the layout of engine/model/gguf.hpp): version 3, little-endian, the default
// alignment of 32. One writer for models and LoRA adapters (engine/merge/gguf_export.hpp decides
// what goes in). Metadata keys keep the order they were set in; tensors are produced one at a time
// as fp32 and quantized to their ggml type while the file is written (quantize_ggml, bit-exact with
// ggml's reference quantizers), so a model never sits in memory whole. The file is written through
// a temporary sibling and a rename (write_file_atomically).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "engine/model/gguf.hpp"

namespace vkt::model {

class GgufWriter {
 public:
  // ---- metadata (a key set twice keeps its first place and takes the new value) ----
  void set(const std::string& key, GgufValue value);
  void set_string(const std::string& key, std::string value);
  void set_bool(const std::string& key, bool value);
  void set_uint32(const std::string& key, uint64_t value);  // VKT_ASSERT that it fits
  void set_int32(const std::string& key, int64_t value);
  void set_float32(const std::string& key, double value);
  void set_string_array(const std::string& key, const std::vector<std::string>& values);
  void set_int32_array(const std::string& key, const std::vector<int64_t>& values);
  void set_float32_array(const std::string& key, const std::vector<double>& values);
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }

  // ---- tensors ----
  // `shape` is row-major (HF order; the file stores it reversed as ggml's ne); its last dimension
  // must be a whole number of `type`'s blocks (VKT_ASSERT: the caller picks a type that fits).
  // `values` returns the row-major fp32 values when the writer reaches the tensor (called once,
  // in the order added); NaN/Inf are refused naming the tensor.
  void add_tensor(const std::string& name, quant::GgmlType type, std::vector<uint64_t> shape,
                  std::function<std::vector<float>()> values);
  size_t tensor_count() const { return tensors_.size(); }
  uint64_t data_bytes() const;  // the tensor data section, padding included

  void write(const std::filesystem::path& path) const;

 private:
  struct Tensor {
    std::string name;
    quant::GgmlType type;
    std::vector<uint64_t> shape;
    std::function<std::vector<float>()> values;
    uint64_t bytes() const;
  };
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace vkt::model
