#include "engine/model/gguf.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>

#include "engine/base/error.hpp"
#include "engine/base/mapped_file.hpp"
#include "engine/base/sizes.hpp"

namespace vkt::model {
namespace fs = std::filesystem;
using quant::GgmlType;

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS
constexpr int kMaxArrayNesting = 8;      // far beyond any real file; bounds the recursion
const char* kCorruptHint =
    "the file is damaged or was not written by a GGUF writer: download or convert it again "
    "(llama.cpp's convert_hf_to_gguf.py, or `vktune export --format gguf`)";

struct ValueTypeInfo {
  GgufValueType type;
  const char* name;
  uint32_t size;  // bytes of a scalar; 0 for STRING and ARRAY
};
constexpr ValueTypeInfo kValueTypes[] = {
    {GgufValueType::UINT8, "UINT8", 1},     {GgufValueType::INT8, "INT8", 1},     {GgufValueType::UINT16, "UINT16", 2},
    {GgufValueType::INT16, "INT16", 2},     {GgufValueType::UINT32, "UINT32", 4}, {GgufValueType::INT32, "INT32", 4},
    {GgufValueType::FLOAT32, "FLOAT32", 4}, {GgufValueType::BOOL, "BOOL", 1},     {GgufValueType::STRING, "STRING", 0},
    {GgufValueType::ARRAY, "ARRAY", 0},     {GgufValueType::UINT64, "UINT64", 8}, {GgufValueType::INT64, "INT64", 8},
    {GgufValueType::FLOAT64, "FLOAT64", 8},
};

const ValueTypeInfo* value_type_info(uint32_t number) {
  for (const auto& info : kValueTypes)
    if (static_cast<uint32_t>(info.type) == number) return &info;
  return nullptr;
}

// The fewest bytes one element of `type` takes in the file (a string is at least its length).
uint64_t min_element_bytes(GgufValueType type) {
  if (type == GgufValueType::STRING) return 8;
  if (type == GgufValueType::ARRAY) return 12;
  return value_type_info(static_cast<uint32_t>(type))->size;
}

}  // namespace

const char* gguf_value_type_name(GgufValueType type) {
  const auto* info = value_type_info(static_cast<uint32_t>(type));
  return info ? info->name : "?";
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufValueType::UINT8:
    case GgufValueType::INT8:
    case GgufValueType::UINT16:
    case GgufValueType::INT16:
    case GgufValueType::UINT32:
    case GgufValueType::INT32:
    case GgufValueType::UINT64:
    case GgufValueType::INT64:
      return true;
    default:
      return false;
  }
}

uint64_t GgufTensor::element_count() const {
  uint64_t count = 1;
  for (uint64_t n : ne) count *= n;  // checked when the file was opened
  return count;
}

std::vector<uint64_t> GgufTensor::shape() const { return {ne.rbegin(), ne.rend()}; }

// Reads little-endian values from the mapping; every read is bounds-checked and an error names
// the byte offset where the value should have been.
class GgufFile::Cursor {
 public:
  Cursor(const GgufFile& file) : file_(file) {}
  uint64_t position() const { return position_; }
  uint64_t remaining() const { return file_.size_ - position_; }

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T value;
    std::memcpy(&value, file_.mapping_ + position_, sizeof(T));
    position_ += sizeof(T);
    return value;
  }

  std::string read_string(const char* what) {
    const uint64_t start = position_;
    const uint64_t length = read<uint64_t>(what);
    if (length > remaining())
      file_.fail(start, std::string(what) + " claims " + std::to_string(length) + " bytes, but only " +
                            std::to_string(remaining()) + " remain in the file");
    std::string text(reinterpret_cast<const char*>(file_.mapping_ + position_), length);
    position_ += length;
    return text;
  }

  GgufValue read_value(uint32_t type_number, const std::string& key, int depth) {
    const auto* info = value_type_info(type_number);
    if (!info)
      file_.fail(position_, "metadata key \"" + key + "\" has value type " + std::to_string(type_number) +
                                ", which is not a GGUF type (0..12)");
    GgufValue value;
    value.type = info->type;
    switch (info->type) {
      case GgufValueType::UINT8:
        value.value = uint64_t{read<uint8_t>("a UINT8")};
        break;
      case GgufValueType::INT8:
        value.value = int64_t{read<int8_t>("an INT8")};
        break;
      case GgufValueType::UINT16:
        value.value = uint64_t{read<uint16_t>("a UINT16")};
        break;
      case GgufValueType::INT16:
        value.value = int64_t{read<int16_t>("an INT16")};
        break;
      case GgufValueType::UINT32:
        value.value = uint64_t{read<uint32_t>("a UINT32")};
        break;
      case GgufValueType::INT32:
        value.value = int64_t{read<int32_t>("an INT32")};
        break;
      case GgufValueType::UINT64:
        value.value = read<uint64_t>("a UINT64");
        break;
      case GgufValueType::INT64:
        value.value = read<int64_t>("an INT64");
        break;
      case GgufValueType::FLOAT32:
        value.value = double{read<float>("a FLOAT32")};
        break;
      case GgufValueType::FLOAT64:
        value.value = read<double>("a FLOAT64");
        break;
      case GgufValueType::BOOL: {
        const uint64_t at = position_;
        const uint8_t byte = read<uint8_t>("a BOOL");
        if (byte > 1)
          file_.fail(at,
                     "metadata key \"" + key + "\" holds a BOOL of value " + std::to_string(byte) + " (not 0 or 1)");
        value.value = byte == 1;
        break;
      }
      case GgufValueType::STRING:
        value.value = read_string("a string");
        break;
      case GgufValueType::ARRAY: {
        if (depth >= kMaxArrayNesting)
          file_.fail(position_, "metadata key \"" + key + "\" nests arrays more than " +
                                    std::to_string(kMaxArrayNesting) + " deep");
        const uint64_t at = position_;
        const uint32_t element_number = read<uint32_t>("an array's element type");
        const auto* element = value_type_info(element_number);
        if (!element)
          file_.fail(at, "metadata key \"" + key + "\" is an array of type " + std::to_string(element_number) +
                             ", which is not a GGUF type (0..12)");
        const uint64_t count = read<uint64_t>("an array's length");
        auto bytes = checked_multiply(count, min_element_bytes(element->type));
        if (!bytes || *bytes > remaining())
          file_.fail(at, "metadata key \"" + key + "\" claims " + std::to_string(count) + " " + element->name +
                             " elements, more than the " + std::to_string(remaining()) + " bytes left can hold");
        value.element_type = element->type;
        std::vector<GgufValue> elements;
        elements.reserve(std::min<uint64_t>(count, 1 << 16));  // a lying count fails on read, not here
        for (uint64_t i = 0; i < count; i++) elements.push_back(read_value(element_number, key, depth + 1));
        value.value = std::move(elements);
        break;
      }
    }
    return value;
  }

 private:
  void need(uint64_t bytes, const char* what) {
    if (bytes > remaining())
      file_.fail(position_, std::string("the file ends where ") + what + " should be (" + std::to_string(remaining()) +
                                " of " + std::to_string(bytes) + " bytes left): it is truncated");
  }

  const GgufFile& file_;
  uint64_t position_ = 0;
};

GgufFile::GgufFile(const fs::path& path) : path_(path) {
  map_file();
  parse();
}

GgufFile::~GgufFile() = default;

void GgufFile::map_file() {
  mapped_ = std::make_unique<MappedFile>(path_, "pass the path of a .gguf file");
  mapping_ = mapped_->data();
  size_ = mapped_->size();
}

void GgufFile::fail(uint64_t offset, const std::string& what) const {
  throw UserError(path_.string() + " at byte " + std::to_string(offset) + ": " + what, kCorruptHint);
}

void GgufFile::parse() {
  Cursor cursor(*this);
  const uint32_t magic = cursor.read<uint32_t>("the magic \"GGUF\"");
  if (magic != kMagic)
    throw UserError(path_.string() + " is not a GGUF file (it does not start with \"GGUF\")",
                    "pass a .gguf file; for Hugging Face folders pass the folder itself");
  version_ = cursor.read<uint32_t>("the version");
  if (version_ != 2 && version_ != 3) {
    const uint32_t swapped = __builtin_bswap32(version_);
    if (swapped == 2 || swapped == 3)
      throw UserError(path_.string() + " is a big-endian GGUF file, which vktune does not read",
                      "convert it again without --bigendian");
    throw UserError(path_.string() + " is GGUF version " + std::to_string(version_) + "; vktune reads versions 2 and 3",
                    version_ == 1 ? "version 1 files predate llama.cpp's August 2023 format: convert the model again"
                                  : kCorruptHint);
  }
  const uint64_t tensor_count = cursor.read<uint64_t>("the tensor count");
  const uint64_t metadata_count = cursor.read<uint64_t>("the metadata count");
  // Each key/value takes at least 13 bytes (empty key, type, one byte); each tensor info 32.
  if (metadata_count > cursor.remaining() / 13)
    fail(16, "the metadata count " + std::to_string(metadata_count) + " cannot fit in the file");
  if (tensor_count > cursor.remaining() / 32)
    fail(8, "the tensor count " + std::to_string(tensor_count) + " cannot fit in the file");

  for (uint64_t i = 0; i < metadata_count; i++) {
    const uint64_t at = cursor.position();
    std::string key = cursor.read_string("a metadata key");
    const uint32_t type = cursor.read<uint32_t>("a metadata value type");
    GgufValue value = cursor.read_value(type, key, 0);
    if (!metadata_.emplace(key, std::move(value)).second) fail(at, "metadata key \"" + key + "\" appears twice");
  }
  if (const GgufValue* alignment = find("general.alignment")) {
    if (alignment->type != GgufValueType::UINT32)
      throw UserError(path_.string() + ": general.alignment is a " + gguf_value_type_name(alignment->type) +
                          ", the format requires a UINT32",
                      kCorruptHint);
    const uint64_t value = std::get<uint64_t>(alignment->value);
    if (value == 0 || !std::has_single_bit(value))
      throw UserError(
          path_.string() + ": general.alignment is " + std::to_string(value) + ", which is not a power of two",
          kCorruptHint);
    alignment_ = static_cast<uint32_t>(value);
  }

  struct Info {
    uint64_t at;  // where its tensor info starts, for messages
    uint32_t type_number;
  };
  std::vector<Info> infos;
  for (uint64_t i = 0; i < tensor_count; i++) {
    GgufTensor tensor;
    const uint64_t at = cursor.position();
    tensor.name = cursor.read_string("a tensor name");
    const uint32_t dims = cursor.read<uint32_t>("a tensor's dimension count");
    if (dims == 0 || dims > kMaxDims)
      fail(at, "tensor \"" + tensor.name + "\" has " + std::to_string(dims) + " dimensions (GGUF allows 1 to 4)");
    for (uint32_t d = 0; d < dims; d++) tensor.ne.push_back(cursor.read<uint64_t>("a tensor dimension"));
    const uint32_t type_number = cursor.read<uint32_t>("a tensor type");
    tensor.offset = cursor.read<uint64_t>("a tensor offset");
    auto type = quant::ggml_type_from_number(type_number);
    if (!type)
      throw UserError(path_.string() + ": tensor \"" + tensor.name + "\" is of ggml type " +
                          quant::ggml_type_name_of(type_number) + ", which vktune does not read",
                      "vktune reads " + quant::supported_ggml_types() +
                          " (the mixes of Q4_K_M, Q5_K_M, Q8_0 files); requantize with llama-quantize");
    tensor.type = *type;
    if (!index_.emplace(tensor.name, tensors_.size()).second) fail(at, "tensor \"" + tensor.name + "\" appears twice");
    tensors_.push_back(std::move(tensor));
    infos.push_back({at, type_number});
  }

  data_offset_ = (cursor.position() + alignment_ - 1) / alignment_ * alignment_;
  if (data_offset_ > size_ && !tensors_.empty())
    fail(cursor.position(),
         "the file ends before its tensor data starts (at byte " + std::to_string(data_offset_) + ")");
  // ggml's layout: tensors follow each other in info order, each padded to the alignment.
  uint64_t expected_offset = 0;
  for (size_t i = 0; i < tensors_.size(); i++) {
    GgufTensor& tensor = tensors_[i];
    const auto& info = quant::ggml_type_info(tensor.type);
    const std::string where = "tensor \"" + tensor.name + "\"";
    if (tensor.ne[0] % info.block_elems != 0)
      fail(infos[i].at, where + " has rows of " + std::to_string(tensor.ne[0]) + " values, not a whole number of " +
                            info.name + " blocks of " + std::to_string(info.block_elems));
    std::optional<uint64_t> bytes = checked_multiply(tensor.ne[0] / info.block_elems, info.block_bytes);
    std::optional<uint64_t> elements = tensor.ne[0];
    for (size_t d = 1; d < tensor.ne.size() && bytes && elements; d++) {
      bytes = checked_multiply(*bytes, tensor.ne[d]);
      elements = checked_multiply(*elements, tensor.ne[d]);
    }
    if (!bytes || !elements) fail(infos[i].at, where + " has dimensions whose product overflows 64 bits");
    if (tensor.offset != expected_offset)
      fail(infos[i].at, where + " starts at data offset " + std::to_string(tensor.offset) +
                            ", but ggml's layout puts it at " + std::to_string(expected_offset) +
                            " (tensors follow each other, each aligned to " + std::to_string(alignment_) + " bytes)");
    // Bytes of the file from the tensor's start (0 when it starts past the end: no wrap-around).
    const uint64_t available = tensor.offset <= size_ - data_offset_ ? size_ - data_offset_ - tensor.offset : 0;
    if (*bytes > available)
      fail(data_offset_ + tensor.offset, where + " needs " + std::to_string(*bytes) + " bytes of " + info.name +
                                             " data, but only " + std::to_string(available) +
                                             " bytes of the file remain from its start: it is truncated");
    tensor.bytes = {mapping_ + data_offset_ + tensor.offset, static_cast<size_t>(*bytes)};
    expected_offset = tensor.offset + (*bytes + alignment_ - 1) / alignment_ * alignment_;
  }
}

// ---- metadata ----

const GgufValue* GgufFile::find(std::string_view key) const {
  auto found = metadata_.find(std::string(key));
  return found == metadata_.end() ? nullptr : &found->second;
}

const GgufValue& GgufFile::require(std::string_view key, const char* expected) const {
  const GgufValue* value = find(key);
  if (!value)
    throw UserError(path_.string() + " has no metadata key \"" + std::string(key) + "\" (" + expected + ")",
                    "the file may come from an older or partial conversion: convert the model again");
  return *value;
}

void GgufFile::wrong_type(std::string_view key, const GgufValue& value, const char* expected) const {
  std::string found = gguf_value_type_name(value.type);
  if (value.type == GgufValueType::ARRAY) found += " of " + std::string(gguf_value_type_name(value.element_type));
  throw UserError(path_.string() + ": metadata key \"" + std::string(key) + "\" is " + found + ", expected " + expected,
                  kCorruptHint);
}

namespace {

// An integer value as int128-free pair: fits(unsigned) / fits(signed).
bool as_uint(const GgufValue& value, uint64_t& out) {
  if (!value.is_integer()) return false;
  if (auto* u = std::get_if<uint64_t>(&value.value)) return out = *u, true;
  int64_t s = std::get<int64_t>(value.value);
  if (s < 0) return false;
  out = static_cast<uint64_t>(s);
  return true;
}

bool as_int(const GgufValue& value, int64_t& out) {
  if (!value.is_integer()) return false;
  if (auto* s = std::get_if<int64_t>(&value.value)) return out = *s, true;
  uint64_t u = std::get<uint64_t>(value.value);
  if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
  out = static_cast<int64_t>(u);
  return true;
}

bool as_float(const GgufValue& value, double& out) {
  if (!value.is_float()) return false;
  out = std::get<double>(value.value);
  return true;
}

}  // namespace

std::string GgufFile::get_string(std::string_view key) const {
  const GgufValue& value = require(key, "a string");
  if (value.type != GgufValueType::STRING) wrong_type(key, value, "a STRING");
  return std::get<std::string>(value.value);
}

uint64_t GgufFile::get_uint(std::string_view key) const {
  const GgufValue& value = require(key, "an unsigned integer");
  uint64_t out;
  if (!as_uint(value, out)) wrong_type(key, value, "a non-negative integer");
  return out;
}

int64_t GgufFile::get_int(std::string_view key) const {
  const GgufValue& value = require(key, "an integer");
  int64_t out;
  if (!as_int(value, out)) wrong_type(key, value, "an integer that fits INT64");
  return out;
}

double GgufFile::get_float(std::string_view key) const {
  const GgufValue& value = require(key, "a float");
  double out;
  if (!as_float(value, out)) wrong_type(key, value, "a FLOAT32 or FLOAT64");
  return out;
}

bool GgufFile::get_bool(std::string_view key) const {
  const GgufValue& value = require(key, "a bool");
  if (value.type != GgufValueType::BOOL) wrong_type(key, value, "a BOOL");
  return std::get<bool>(value.value);
}

std::vector<std::string> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue& value = require(key, "an array of strings");
  if (value.type != GgufValueType::ARRAY || value.element_type != GgufValueType::STRING)
    wrong_type(key, value, "an ARRAY of STRING");
  std::vector<std::string> out;
  for (const auto& element : std::get<std::vector<GgufValue>>(value.value))
    out.push_back(std::get<std::string>(element.value));
  return out;
}

std::vector<double> GgufFile::get_float_array(std::string_view key) const {
  const GgufValue& value = require(key, "an array of floats");
  std::vector<double> out;
  if (value.type == GgufValueType::ARRAY)
    for (const auto& element : std::get<std::vector<GgufValue>>(value.value)) {
      double number;
      if (!as_float(element, number)) wrong_type(key, value, "an ARRAY of FLOAT32 or FLOAT64");
      out.push_back(number);
    }
  else
    wrong_type(key, value, "an ARRAY of FLOAT32 or FLOAT64");
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue& value = require(key, "an array of integers");
  std::vector<int64_t> out;
  if (value.type == GgufValueType::ARRAY)
    for (const auto& element : std::get<std::vector<GgufValue>>(value.value)) {
      int64_t number;
      if (!as_int(element, number)) wrong_type(key, value, "an ARRAY of integers");
      out.push_back(number);
    }
  else
    wrong_type(key, value, "an ARRAY of integers");
  return out;
}

std::optional<std::string> GgufFile::string_or_none(std::string_view key) const {
  if (!contains(key)) return std::nullopt;
  return get_string(key);
}

std::optional<uint64_t> GgufFile::uint_or_none(std::string_view key) const {
  if (!contains(key)) return std::nullopt;
  return get_uint(key);
}

std::optional<double> GgufFile::float_or_none(std::string_view key) const {
  if (!contains(key)) return std::nullopt;
  return get_float(key);
}

// ---- tensors ----

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
  auto found = index_.find(std::string(name));
  return found == index_.end() ? nullptr : &tensors_[found->second];
}

const GgufTensor& GgufFile::tensor(std::string_view name) const {
  const GgufTensor* found = find_tensor(name);
  if (!found)
    throw UserError(path_.string() + " has no tensor \"" + std::string(name) + "\"",
                    "the file may hold another architecture, or a partial conversion");
  return *found;
}

std::vector<float> GgufFile::to_fp32(const GgufTensor& tensor) const {
  std::vector<float> values(tensor.element_count());
  quant::dequantize_ggml(tensor.type, tensor.bytes, values);
  return values;
}

}  // namespace vkt::model
