#pragma once
// GGUF files (llama.cpp's model format, https://github.com/ggml-org/ggml/blob/master/docs/gguf.md):
// a memory-mapped reader of versions 2 and 3, little-endian.
//
// Layout:
//   "GGUF" | u32 version | u64 tensor_count | u64 metadata_count
//   metadata_count x (string key | u32 value_type | value)
//   tensor_count x (string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset)
//   padding to general.alignment (default 32) | tensor data
// A string is u64 length + UTF-8 bytes; an array is u32 element type + u64 count + elements (arrays
// may nest). ne[0] is the innermost (fastest) dimension, so a [rows, cols] matrix has ne = {cols, rows}.
//
// What the reader enforces (llama.cpp's gguf.cpp rules): known value types, no duplicate keys or
// tensor names, at most 4 dimensions, ne[0] a whole number of the type's blocks, a power-of-two
// general.alignment of type u32, and tensor data laid out as ggml writes it: each tensor at the
// previous one's end rounded up to the alignment, the first at 0, the last inside the file.
// Every violation is a vkt::UserError naming the file, the byte offset or tensor, and a hint.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "engine/quant/ggml_blocks.hpp"

namespace vkt {
class MappedFile;
}

namespace vkt::model {

enum class GgufValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};
const char* gguf_value_type_name(GgufValueType type);  // "UINT32"

// One metadata value. Integers keep their sign class (uint64_t for unsigned types, int64_t for
// signed ones), floats widen to double, arrays hold their elements (all of `element_type`).
struct GgufValue {
  GgufValueType type = GgufValueType::UINT8;
  GgufValueType element_type = GgufValueType::UINT8;  // arrays only
  std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<GgufValue>> value;

  bool is_integer() const;
  bool is_float() const { return type == GgufValueType::FLOAT32 || type == GgufValueType::FLOAT64; }
};

// One tensor. `bytes` points into the mapping and lives as long as the GgufFile.
struct GgufTensor {
  std::string name;
  quant::GgmlType type = quant::GgmlType::F32;
  std::vector<uint64_t> ne;        // ggml order: ne[0] innermost
  uint64_t offset = 0;             // from the start of the data section
  std::span<const uint8_t> bytes;  // the tensor's blocks
  uint64_t element_count() const;
  std::vector<uint64_t> shape() const;  // row-major (numpy/HF) order: ne reversed
};

class GgufFile {
 public:
  explicit GgufFile(const std::filesystem::path& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // where tensor data starts in the file
  uint64_t file_size() const { return size_; }

  // ---- metadata ----
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;  // nullptr when absent
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  // Typed reads: a UserError naming the file and key when the key is absent or has another type.
  // Integers of any width and sign are accepted where they fit; floats accept FLOAT32/FLOAT64.
  std::string get_string(std::string_view key) const;
  uint64_t get_uint(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  double get_float(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<double> get_float_array(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;
  std::optional<std::string> string_or_none(std::string_view key) const;
  std::optional<uint64_t> uint_or_none(std::string_view key) const;
  std::optional<double> float_or_none(std::string_view key) const;

  // ---- tensors ----
  const std::vector<GgufTensor>& tensors() const { return tensors_; }  // in file order
  const GgufTensor* find_tensor(std::string_view name) const;          // nullptr when absent
  const GgufTensor& tensor(std::string_view name) const;               // UserError when absent
  // A tensor's values as fp32 (dequantized bit-exactly as ggml does).
  std::vector<float> to_fp32(const GgufTensor& tensor) const;

 private:
  class Cursor;
  void map_file();
  void parse();
  [[noreturn]] void fail(uint64_t offset, const std::string& what) const;
  const GgufValue& require(std::string_view key, const char* expected) const;
  [[noreturn]] void wrong_type(std::string_view key, const GgufValue& value, const char* expected) const;

  std::filesystem::path path_;
  std::unique_ptr<MappedFile> mapped_;
  const uint8_t* mapping_ = nullptr;  // mapped_'s bytes
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensor> tensors_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in tensors_
};

}  // namespace vkt::model
