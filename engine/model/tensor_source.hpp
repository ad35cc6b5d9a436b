#pragma once
// Where load_weights reads a model's tensors from, by their Hugging Face names: a safetensors
// folder (SafetensorsSource) or a GGUF file (GgufTensorSource, engine/model/gguf_model.hpp), each
// tensor converted to fp32 when it is read, so the loader quantizes to the run's format the same way
// for both.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace vkt::model {

class SafetensorsFolder;

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual std::string where() const = 0;  // the folder or file, for messages
  virtual bool contains(const std::string& name) const = 0;
  virtual uint64_t element_count(const std::string& name) const = 0;  // UserError naming the tensor when absent
  virtual std::vector<uint64_t> shape(const std::string& name) const = 0;  // row-major, as Hugging Face's
  // Both reads refuse NaN/Inf with a UserError naming the file and the tensor.
  // Rows [first_row, first_row + out.size() / cols) of the tensor `name` seen as (rows, cols), as fp32.
  virtual void read_rows(const std::string& name, uint64_t first_row, uint64_t cols, std::span<float> out) const = 0;
  // The whole tensor as fp32 (the source's mapped pages of it released afterwards).
  virtual std::vector<float> read(const std::string& name) const = 0;
  // The safetensors folder behind the source (bitsandbytes / vktune-quantized checkpoints need it);
  // nullptr for other formats.
  virtual const SafetensorsFolder* safetensors() const { return nullptr; }
};

class SafetensorsSource final : public TensorSource {
 public:
  explicit SafetensorsSource(const SafetensorsFolder& folder) : folder_(folder) {}
  std::string where() const override;
  bool contains(const std::string& name) const override;
  uint64_t element_count(const std::string& name) const override;
  std::vector<uint64_t> shape(const std::string& name) const override;
  void read_rows(const std::string& name, uint64_t first_row, uint64_t cols, std::span<float> out) const override;
  std::vector<float> read(const std::string& name) const override;
  const SafetensorsFolder* safetensors() const override { return &folder_; }

 private:
  const SafetensorsFolder& folder_;
};

}  // namespace vkt::model
