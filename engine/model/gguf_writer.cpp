#include "engine/model/gguf_writer.hpp"

#include <cstdio>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/model/safetensors.hpp"

namespace vkt::model {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kAlignment = 32;  // GGUF_DEFAULT_ALIGNMENT

uint64_t padded(uint64_t offset) { return (offset + kAlignment - 1) / kAlignment * kAlignment; }

// Bytes appended to a buffer in GGUF's little-endian encoding.
class Encoder {
 public:
  template <typename T>
  void put(T value) {
    const auto* bytes = reinterpret_cast<const char*>(&value);
    out.append(bytes, sizeof(T));
  }
  // The first `count` bytes of a little-endian 64-bit value (GGUF and the host are little-endian).
  void put_low_bytes(uint64_t value, size_t count) { out.append(reinterpret_cast<const char*>(&value), count); }
  static size_t integer_bytes(GgufValueType type) {
    switch (type) {
      case GgufValueType::UINT8:
      case GgufValueType::INT8:
        return 1;
      case GgufValueType::UINT16:
      case GgufValueType::INT16:
        return 2;
      case GgufValueType::UINT32:
      case GgufValueType::INT32:
        return 4;
      default:
        return 8;
    }
  }
  void put_string(const std::string& text) {
    put<uint64_t>(text.size());
    out += text;
  }
  void put_value(const GgufValue& value) {
    switch (value.type) {
      case GgufValueType::UINT8:
      case GgufValueType::UINT16:
      case GgufValueType::UINT32:
      case GgufValueType::UINT64:
        return put_low_bytes(std::get<uint64_t>(value.value), integer_bytes(value.type));
      case GgufValueType::INT8:
      case GgufValueType::INT16:
      case GgufValueType::INT32:
      case GgufValueType::INT64:  // two's complement: the low bytes of the 64-bit pattern
        return put_low_bytes(static_cast<uint64_t>(std::get<int64_t>(value.value)), integer_bytes(value.type));
      case GgufValueType::FLOAT32:
        return put<float>(static_cast<float>(std::get<double>(value.value)));
      case GgufValueType::FLOAT64:
        return put<double>(std::get<double>(value.value));
      case GgufValueType::BOOL:
        return put<uint8_t>(std::get<bool>(value.value) ? 1 : 0);
      case GgufValueType::STRING:
        return put_string(std::get<std::string>(value.value));
      case GgufValueType::ARRAY: {
        const auto& elements = std::get<std::vector<GgufValue>>(value.value);
        put<uint32_t>(static_cast<uint32_t>(value.element_type));
        put<uint64_t>(elements.size());
        for (const GgufValue& element : elements) {
          VKT_ASSERT(element.type == value.element_type, "GGUF array element of another type");
          put_value(element);
        }
        return;
      }
    }
    VKT_ASSERT(false, "GGUF value of an unknown type");
  }
  std::string out;
};

GgufValue scalar(GgufValueType type, std::variant<uint64_t, int64_t, double, bool, std::string> value) {
  GgufValue result;
  result.type = type;
  std::visit([&](auto&& v) { result.value = v; }, std::move(value));
  return result;
}

template <typename T>
GgufValue array_of(GgufValueType element_type, const std::vector<T>& values) {
  GgufValue result;
  result.type = GgufValueType::ARRAY;
  result.element_type = element_type;
  std::vector<GgufValue> elements;
  elements.reserve(values.size());
  for (const T& value : values) elements.push_back(scalar(element_type, value));
  result.value = std::move(elements);
  return result;
}

void write_all(std::FILE* file, const void* data, size_t bytes, const fs::path& path) {
  if (bytes != 0 && std::fwrite(data, 1, bytes, file) != bytes)
    throw UserError("failed writing " + path.string() + ": " + std::strerror(errno), "is the disk full?");
}

}  // namespace

void GgufWriter::set(const std::string& key, GgufValue value) {
  for (auto& [existing, old] : metadata_)
    if (existing == key) {
      old = std::move(value);
      return;
    }
  metadata_.emplace_back(key, std::move(value));
}

void GgufWriter::set_string(const std::string& key, std::string value) {
  set(key, scalar(GgufValueType::STRING, std::move(value)));
}
void GgufWriter::set_bool(const std::string& key, bool value) { set(key, scalar(GgufValueType::BOOL, value)); }
void GgufWriter::set_uint32(const std::string& key, uint64_t value) {
  VKT_ASSERT(value <= std::numeric_limits<uint32_t>::max(), "GGUF " + key + " does not fit a u32");
  set(key, scalar(GgufValueType::UINT32, value));
}
void GgufWriter::set_int32(const std::string& key, int64_t value) { set(key, scalar(GgufValueType::INT32, value)); }
void GgufWriter::set_float32(const std::string& key, double value) { set(key, scalar(GgufValueType::FLOAT32, value)); }
void GgufWriter::set_string_array(const std::string& key, const std::vector<std::string>& values) {
  set(key, array_of(GgufValueType::STRING, values));
}
void GgufWriter::set_int32_array(const std::string& key, const std::vector<int64_t>& values) {
  set(key, array_of(GgufValueType::INT32, values));
}
void GgufWriter::set_float32_array(const std::string& key, const std::vector<double>& values) {
  set(key, array_of(GgufValueType::FLOAT32, values));
}

uint64_t GgufWriter::Tensor::bytes() const {
  uint64_t rows = 1;
  for (size_t d = 0; d + 1 < shape.size(); d++) rows *= shape[d];
  return rows * quant::ggml_row_bytes(type, shape.back());
}

void GgufWriter::add_tensor(const std::string& name, quant::GgmlType type, std::vector<uint64_t> shape,
                            std::function<std::vector<float>()> values) {
  VKT_ASSERT(!shape.empty() && shape.size() <= 4, "GGUF tensor " + name + " needs 1 to 4 dimensions");
  VKT_ASSERT(shape.back() % quant::ggml_type_info(type).block_elems == 0,
             "GGUF tensor " + name + ": rows are not whole " + quant::ggml_type_name(type) + " blocks");
  VKT_ASSERT(quant::ggml_can_quantize(type), std::string("no quantizer for ") + quant::ggml_type_name(type));
  for (const Tensor& tensor : tensors_) VKT_ASSERT(tensor.name != name, "GGUF tensor " + name + " added twice");
  tensors_.push_back({name, type, std::move(shape), std::move(values)});
}

uint64_t GgufWriter::data_bytes() const {
  uint64_t total = 0;
  for (const Tensor& tensor : tensors_) total = padded(total) + tensor.bytes();
  return padded(total);
}

void GgufWriter::write(const fs::path& path) const {
  Encoder header;
  header.out = "GGUF";
  header.put<uint32_t>(3);
  header.put<uint64_t>(tensors_.size());
  header.put<uint64_t>(metadata_.size());
  for (const auto& [key, value] : metadata_) {
    header.put_string(key);
    header.put<uint32_t>(static_cast<uint32_t>(value.type));
    header.put_value(value);
  }
  uint64_t offset = 0;
  for (const Tensor& tensor : tensors_) {
    header.put_string(tensor.name);
    header.put<uint32_t>(static_cast<uint32_t>(tensor.shape.size()));
    for (auto d = tensor.shape.rbegin(); d != tensor.shape.rend(); ++d) header.put<uint64_t>(*d);  // ne[0] innermost
    header.put<uint32_t>(static_cast<uint32_t>(tensor.type));
    header.put<uint64_t>(offset);
    offset = padded(offset + tensor.bytes());
  }
  header.out.resize(padded(header.out.size()), '\0');
  write_file_atomically(path, [&](std::FILE* file) {
    write_all(file, header.out.data(), header.out.size(), path);
    const char zeros[kAlignment] = {};
    for (const Tensor& tensor : tensors_) {
      std::vector<float> values = tensor.values();
      uint64_t elements = 1;
      for (uint64_t d : tensor.shape) elements *= d;
      VKT_ASSERT(values.size() == elements, "GGUF tensor " + tensor.name + ": the producer gave another size");
      require_finite(values, path.string(), tensor.name);
      std::vector<uint8_t> bytes(tensor.bytes());
      quant::quantize_ggml(tensor.type, values, bytes);
      write_all(file, bytes.data(), bytes.size(), path);
      write_all(file, zeros, padded(bytes.size()) - bytes.size(), path);
    }
  });
}

}  // namespace vkt::model
