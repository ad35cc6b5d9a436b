#include "engine/model/safetensors.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/half.hpp"
#include "engine/base/mapped_file.hpp"
#include "engine/base/sizes.hpp"

namespace vkt::model {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The format's limit on the JSON header (the reference's MAX_HEADER_SIZE): guards against a
// corrupt length making us parse gigabytes.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DtypeInfo {
  FileDtype dtype;
  const char* name;
  uint32_t size;
};
// In the reference implementation's enum order, which is also increasing alignment: the writer
// sorts by it (largest first) as the reference does.
constexpr DtypeInfo kDtypes[] = {
    {FileDtype::BOOL, "BOOL", 1},       {FileDtype::U8, "U8", 1},           {FileDtype::I8, "I8", 1},
    {FileDtype::F8_E5M2, "F8_E5M2", 1}, {FileDtype::F8_E4M3, "F8_E4M3", 1}, {FileDtype::I16, "I16", 2},
    {FileDtype::U16, "U16", 2},         {FileDtype::F16, "F16", 2},         {FileDtype::BF16, "BF16", 2},
    {FileDtype::I32, "I32", 4},         {FileDtype::U32, "U32", 4},         {FileDtype::F32, "F32", 4},
    {FileDtype::F64, "F64", 8},         {FileDtype::I64, "I64", 8},         {FileDtype::U64, "U64", 8},
};

const DtypeInfo& info(FileDtype dtype) {
  for (const auto& entry : kDtypes)
    if (entry.dtype == dtype) return entry;
  VKT_ASSERT(false, "unknown FileDtype");
  return kDtypes[0];
}

// Position in the reference's Dtype enum, for the writer's ordering.
int alignment_rank(FileDtype dtype) { return static_cast<int>(&info(dtype) - kDtypes); }

const char* kCorruptHint =
    "the file is damaged or was not written by a safetensors writer: download or export it again";

std::string in_quotes(std::string_view text) {
  std::string out = "\"";
  out.append(text);
  out += '"';
  return out;
}

// product(shape) * element size, or nullopt when it overflows 64 bits.
std::optional<uint64_t> checked_byte_size(const std::vector<uint64_t>& shape, uint32_t element_size) {
  std::optional<uint64_t> total = element_size;
  for (uint64_t extent : shape)
    if (!(total = checked_multiply(*total, extent))) break;
  return total;
}

}  // namespace

const char* file_dtype_name(FileDtype dtype) { return info(dtype).name; }
uint32_t file_dtype_size(FileDtype dtype) { return info(dtype).size; }

std::optional<FileDtype> file_dtype_from_name(std::string_view name) {
  for (const auto& entry : kDtypes)
    if (name == entry.name) return entry.dtype;
  return std::nullopt;
}

std::string supported_file_dtypes() {
  std::string text;
  for (const auto& entry : kDtypes) text += (text.empty() ? "" : ", ") + std::string(entry.name);
  return text;
}

uint64_t TensorView::element_count() const {
  uint64_t count = 1;
  for (uint64_t extent : shape) count *= extent;
  return count;
}

void convert_to_fp32(const TensorView& tensor, std::span<float> out) {
  uint64_t count = tensor.element_count();
  VKT_ASSERT(out.size() == count, "convert_to_fp32: output size differs from the tensor's element count");
  const uint8_t* bytes = tensor.bytes.data();
  switch (tensor.dtype) {
    case FileDtype::F32:
      std::memcpy(out.data(), bytes, count * 4);
      return;
    case FileDtype::F16:
      for (uint64_t i = 0; i < count; i++) {
        uint16_t bits;
        std::memcpy(&bits, bytes + 2 * i, 2);  // the mapping need not be 2-byte aligned
        out[i] = half_to_float(bits);
      }
      return;
    case FileDtype::BF16:
      for (uint64_t i = 0; i < count; i++) {
        uint16_t bits;
        std::memcpy(&bits, bytes + 2 * i, 2);
        out[i] = bf16_to_float(bits);
      }
      return;
    default:
      throw UserError("tensor " + in_quotes(tensor.name) + " has dtype " + file_dtype_name(tensor.dtype) +
                          ", which cannot be read as floating point weights",
                      "only F32, F16 and BF16 tensors convert to fp32");
  }
}

std::vector<float> to_fp32(const TensorView& tensor) {
  std::vector<float> values(tensor.element_count());
  convert_to_fp32(tensor, values);
  return values;
}

std::optional<uint64_t> first_non_finite(FileDtype dtype, std::span<const uint8_t> bytes) {
  // An all-ones exponent is Inf or NaN; bits are compared so fast-math cannot fold the test away.
  auto scan = [&]<class Bits>(Bits exponent_mask) -> std::optional<uint64_t> {
    const uint64_t count = bytes.size() / sizeof(Bits);
    for (uint64_t i = 0; i < count; i++) {
      Bits bits;
      std::memcpy(&bits, bytes.data() + i * sizeof(Bits), sizeof(Bits));  // the mapping need not be aligned
      if ((bits & exponent_mask) == exponent_mask) return i;
    }
    return std::nullopt;
  };
  switch (dtype) {
    case FileDtype::F32:
      return scan(uint32_t{0x7f800000u});
    case FileDtype::F16:
      return scan(uint16_t{0x7c00u});
    case FileDtype::BF16:
      return scan(uint16_t{0x7f80u});
    case FileDtype::F64:
      return scan(uint64_t{0x7ff0000000000000ull});
    default:
      return std::nullopt;
  }
}

void require_finite(std::span<const float> values, const std::string& file, const std::string& tensor) {
  std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(values.data()), values.size() * 4);
  if (auto index = first_non_finite(FileDtype::F32, bytes))
    throw UserError(file + ": tensor " + in_quotes(tensor) + " holds " + (std::isnan(values[*index]) ? "NaN" : "Inf") +
                        " at element " + std::to_string(*index),
                    "the weights are corrupt or come from a diverged run: use an intact copy (of an adapter: an "
                    "earlier checkpoint)");
}

void release_mapped_pages(const TensorView& tensor) {
  // Whole pages inside the tensor only: a page shared with a neighbour stays mapped.
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(tensor.bytes.data());
  const uintptr_t first = (begin + page - 1) / page * page, last = (begin + tensor.bytes.size()) / page * page;
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

void convert_from_fp32(std::span<const float> values, FileDtype dtype, std::span<uint8_t> out) {
  VKT_ASSERT(out.size() == values.size() * file_dtype_size(dtype), "convert_from_fp32: output size mismatch");
  switch (dtype) {
    case FileDtype::F32:
      std::memcpy(out.data(), values.data(), values.size() * 4);
      return;
    case FileDtype::F16:
      for (size_t i = 0; i < values.size(); i++) {
        uint16_t bits = float_to_half(values[i]);
        std::memcpy(out.data() + 2 * i, &bits, 2);
      }
      return;
    case FileDtype::BF16:
      for (size_t i = 0; i < values.size(); i++) {
        uint16_t bits = float_to_bf16(values[i]);
        std::memcpy(out.data() + 2 * i, &bits, 2);
      }
      return;
    default:
      VKT_ASSERT(false, std::string("convert_from_fp32: unsupported dtype ") + file_dtype_name(dtype));
  }
}

// ---- reading ----

struct SafetensorsFile::HeaderEntry {
  TensorView view;              // bytes are set by index_tensors()
  uint64_t begin = 0, end = 0;  // data_offsets, relative to the byte buffer
};

// The file's stages: map it, read the header length, parse the JSON header (each tensor entry
// checked on its own), check that the entries tile the byte buffer, then index the views.
SafetensorsFile::SafetensorsFile(const fs::path& path) : path_(path) {
  map_file();
  std::vector<HeaderEntry> entries = parse_header(read_header());
  check_tiling(entries);
  index_tensors(std::move(entries));
}

void SafetensorsFile::map_file() {
  mapped_ = std::make_unique<MappedFile>(path_, "pass the path of a .safetensors file or of a model folder");
  mapping_ = mapped_->data();
  size_ = mapped_->size();
  if (size_ < 8)
    throw UserError(path_.string() + ": truncated safetensors file: " + std::to_string(size_) +
                        " bytes, less than the 8-byte header length",
                    kCorruptHint);
}

std::string_view SafetensorsFile::read_header() {
  const std::string where = path_.string();
  std::memcpy(&header_size_, mapping_, 8);  // little-endian, as is every platform we build for
  if (header_size_ > kMaxHeaderBytes)
    throw UserError(where + ": header length " + std::to_string(header_size_) +
                        " is larger than the format's limit of " + std::to_string(kMaxHeaderBytes) + " bytes",
                    kCorruptHint);
  if (8 + header_size_ > size_)
    throw UserError(where + ": header length " + std::to_string(header_size_) +
                        " reaches beyond the end of the file (" + std::to_string(size_) +
                        " bytes): the file is truncated",
                    kCorruptHint);
  std::string_view header(reinterpret_cast<const char*>(mapping_ + 8), header_size_);
  if (header.empty() || header[0] != '{')
    throw UserError(where + ": the JSON header does not start with '{'", kCorruptHint);
  return header;
}

namespace {

// One tensor's header entry {"dtype", "shape", "data_offsets"}, checked: a known dtype, a shape of
// non-negative integers, two ordered offsets that hold exactly shape × dtype size bytes.
void parse_tensor_entry(const std::string& tensor_where, const json& value, TensorView& view, uint64_t& begin,
                        uint64_t& end) {
  if (!value.is_object()) throw UserError(tensor_where + ": its header entry is not an object", kCorruptHint);
  auto dtype_field = value.find("dtype");
  auto shape_field = value.find("shape");
  auto offsets_field = value.find("data_offsets");
  if (dtype_field == value.end() || shape_field == value.end() || offsets_field == value.end())
    throw UserError(tensor_where + ": its header entry needs \"dtype\", \"shape\" and \"data_offsets\"", kCorruptHint);
  if (!dtype_field->is_string()) throw UserError(tensor_where + ": \"dtype\" is not a string", kCorruptHint);
  std::string dtype_text = dtype_field->get<std::string>();
  auto dtype = file_dtype_from_name(dtype_text);
  if (!dtype)
    throw UserError(tensor_where + ": unknown or unsupported dtype \"" + dtype_text + "\"",
                    "supported dtypes: " + supported_file_dtypes() + "; convert the checkpoint (e.g. to BF16) first");
  view.dtype = *dtype;
  if (!shape_field->is_array()) throw UserError(tensor_where + ": \"shape\" is not an array", kCorruptHint);
  for (const auto& extent : *shape_field) {
    if (!extent.is_number_unsigned())
      throw UserError(tensor_where + ": \"shape\" holds " + extent.dump() + ", not a non-negative integer",
                      kCorruptHint);
    view.shape.push_back(extent.get<uint64_t>());
  }
  if (!offsets_field->is_array() || offsets_field->size() != 2 || !(*offsets_field)[0].is_number_unsigned() ||
      !(*offsets_field)[1].is_number_unsigned())
    throw UserError(tensor_where + ": \"data_offsets\" is " + offsets_field->dump() + ", not two non-negative integers",
                    kCorruptHint);
  begin = (*offsets_field)[0].get<uint64_t>();
  end = (*offsets_field)[1].get<uint64_t>();
  if (end < begin)
    throw UserError(tensor_where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                        "] end before they begin",
                    kCorruptHint);
  auto expected = checked_byte_size(view.shape, file_dtype_size(*dtype));
  if (!expected)
    throw UserError(tensor_where + ": shape " + shape_text(view.shape) + " is too large to address", kCorruptHint);
  if (*expected != end - begin)
    throw UserError(tensor_where + ": shape " + shape_text(view.shape) + " of " + dtype_text + " needs " +
                        std::to_string(*expected) + " bytes but data_offsets [" + std::to_string(begin) + ", " +
                        std::to_string(end) + "] hold " + std::to_string(end - begin),
                    kCorruptHint);
}

}  // namespace

std::vector<SafetensorsFile::HeaderEntry> SafetensorsFile::parse_header(std::string_view header) {
  const std::string where = path_.string();
  // Parse, refusing duplicate tensor names (the spec disallows them; a JSON parser would keep
  // only one of the two silently).
  std::set<std::string> top_keys;
  std::string duplicate;
  json parsed;
  try {
    parsed = json::parse(header, [&](int depth, json::parse_event_t event, json& value) {
      if (depth == 1 && event == json::parse_event_t::key && value.is_string() &&
          !top_keys.insert(value.get<std::string>()).second && duplicate.empty())
        duplicate = value.get<std::string>();
      return true;
    });
  } catch (const json::exception& error) {
    throw UserError(where + ": the header is not valid JSON: " + error.what(), kCorruptHint);
  }
  if (!parsed.is_object()) throw UserError(where + ": the JSON header is not an object", kCorruptHint);
  if (!duplicate.empty())
    throw UserError(where + ": tensor " + in_quotes(duplicate) + " appears twice in the header", kCorruptHint);

  std::vector<HeaderEntry> entries;
  for (auto& [name, value] : parsed.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) throw UserError(where + ": \"__metadata__\" is not an object of strings", kCorruptHint);
      for (auto& [key, text] : value.items()) {
        if (!text.is_string())
          throw UserError(
              where + ": \"__metadata__\"." + key + " is not a string (the format allows only strings there)",
              kCorruptHint);
        metadata_[key] = text.get<std::string>();
      }
      continue;
    }
    HeaderEntry entry;
    entry.view.name = name;
    parse_tensor_entry(where + ": tensor " + in_quotes(name), value, entry.view, entry.begin, entry.end);
    entries.push_back(std::move(entry));
  }
  return entries;
}

// The tensors must tile the byte buffer exactly; sorts `entries` by offset.
void SafetensorsFile::check_tiling(std::vector<HeaderEntry>& entries) const {
  const std::string where = path_.string();
  std::stable_sort(entries.begin(), entries.end(), [](const HeaderEntry& a, const HeaderEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const uint64_t buffer_size = size_ - 8 - header_size_;
  uint64_t covered = 0;
  for (size_t i = 0; i < entries.size(); i++) {
    const HeaderEntry& entry = entries[i];
    const std::string tensor_where = where + ": tensor " + in_quotes(entry.view.name);
    const std::string range = "[" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) + "]";
    if (entry.begin < covered)
      throw UserError(tensor_where + ": data_offsets " + range + " overlap tensor " +
                          in_quotes(entries[i - 1].view.name) + " [" + std::to_string(entries[i - 1].begin) + ", " +
                          std::to_string(entries[i - 1].end) + "]",
                      kCorruptHint);
    if (entry.begin > covered)
      throw UserError(tensor_where + ": data_offsets " + range + " leave a hole of " +
                          std::to_string(entry.begin - covered) +
                          " bytes before it (the format requires the byte buffer to be fully indexed)",
                      kCorruptHint);
    if (entry.end > buffer_size)
      throw UserError(tensor_where + ": data_offsets " + range + " reach beyond the byte buffer (" +
                          std::to_string(buffer_size) + " bytes): the file is truncated",
                      kCorruptHint);
    covered = entry.end;
  }
  if (covered != buffer_size)
    throw UserError(where + ": " + std::to_string(buffer_size - covered) +
                        " bytes after the last tensor belong to no tensor (the format requires the byte buffer to be "
                        "fully indexed)",
                    kCorruptHint);
}

void SafetensorsFile::index_tensors(std::vector<HeaderEntry> entries) {
  const uint8_t* buffer = mapping_ + 8 + header_size_;
  tensors_.reserve(entries.size());
  for (auto& entry : entries) {
    entry.view.bytes = std::span<const uint8_t>(buffer + entry.begin, entry.end - entry.begin);
    index_.emplace(entry.view.name, tensors_.size());
    tensors_.push_back(std::move(entry.view));
  }
}

SafetensorsFile::~SafetensorsFile() = default;

const TensorView* SafetensorsFile::find(std::string_view name) const {
  auto found = index_.find(std::string(name));
  return found == index_.end() ? nullptr : &tensors_[found->second];
}

const TensorView& SafetensorsFile::tensor(std::string_view name) const {
  if (const TensorView* view = find(name)) return *view;
  throw UserError(
      path_.string() + ": no tensor " + in_quotes(name),
      "the file has " + std::to_string(tensors_.size()) + " tensors; is it a checkpoint of the expected model?");
}

// ---- folders ----

SafetensorsFolder::SafetensorsFolder(const fs::path& path) : path_(path) {
  std::error_code ignored;
  if (fs::is_regular_file(path, ignored)) {
    files_.push_back(std::make_unique<SafetensorsFile>(path));
  } else if (fs::is_directory(path, ignored)) {
    fs::path index_path = path / "model.safetensors.index.json";
    fs::path single_path = path / "model.safetensors";
    // As transformers' from_pretrained: a single model.safetensors wins over an index.
    if (fs::exists(single_path)) {
      files_.push_back(std::make_unique<SafetensorsFile>(single_path));
    } else if (fs::exists(index_path)) {
      sharded_ = true;
      const std::string where = index_path.string();
      json index;
      try {
        index = json::parse(read_text_file(index_path));
      } catch (const json::exception& error) {
        throw UserError(where + ": not valid JSON: " + error.what(), "download or export the model again");
      }
      if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
        throw UserError(where + ": no \"weight_map\" object",
                        "a sharded checkpoint's index maps every tensor name to its shard file");
      std::map<std::string, size_t> shard_positions;
      std::vector<std::pair<std::string, std::string>> wanted;  // (tensor, shard)
      for (auto& [name, shard] : index["weight_map"].items()) {
        if (!shard.is_string())
          throw UserError(where + ": weight_map." + name + " is not a file name", "download or export the model again");
        std::string shard_name = shard.get<std::string>();
        if (shard_name.empty() || shard_name.find('/') != std::string::npos || shard_name == "." || shard_name == "..")
          throw UserError(
              where + ": weight_map." + name + " names \"" + shard_name + "\", not a file in the model folder",
              "shards must sit next to the index file");
        if (!shard_positions.count(shard_name)) {
          fs::path shard_path = path / shard_name;
          if (!fs::exists(shard_path))
            throw UserError(where + ": shard " + shard_name + " (holding tensor " + in_quotes(name) + ") is missing",
                            "the download is incomplete: fetch every model-*-of-*.safetensors file");
          shard_positions[shard_name] = files_.size();
          files_.push_back(std::make_unique<SafetensorsFile>(shard_path));
        }
        wanted.emplace_back(name, shard_name);
      }
      for (const auto& [name, shard_name] : wanted) {
        size_t position = shard_positions[shard_name];
        const TensorView* view = files_[position]->find(name);
        if (!view)
          throw UserError(
              where + ": weight_map puts tensor " + in_quotes(name) + " in " + shard_name + ", which does not hold it",
              "the index and the shards come from different saves: download or export the model again");
        index_[name] = {position, view};
      }
    } else {
      throw UserError(
          path.string() + " holds neither model.safetensors nor model.safetensors.index.json",
          "vktune reads Hugging Face checkpoints in safetensors format; a pytorch_model.bin checkpoint must "
          "be converted first (e.g. save_pretrained(..., safe_serialization=True))");
    }
  } else {
    throw UserError("model weights not found: " + path.string(), "pass a model folder or a .safetensors file");
  }
  if (!sharded_) {
    for (const TensorView& view : files_[0]->tensors()) index_[view.name] = {0, &view};
  }
}

const TensorView* SafetensorsFolder::find(std::string_view name) const {
  auto found = index_.find(std::string(name));
  return found == index_.end() ? nullptr : found->second.second;
}

const TensorView& SafetensorsFolder::tensor(std::string_view name) const {
  if (const TensorView* view = find(name)) return *view;
  throw UserError(path_.string() + ": the checkpoint has no tensor " + in_quotes(name),
                  "is this a checkpoint of the architecture named in config.json?");
}

std::vector<std::string> SafetensorsFolder::names() const {
  std::vector<std::string> result;
  result.reserve(index_.size());
  for (const auto& entry : index_) result.push_back(entry.first);
  std::sort(result.begin(), result.end());
  return result;
}

uint64_t SafetensorsFolder::total_bytes() const {
  uint64_t total = 0;
  for (const auto& entry : index_) total += entry.second.second->bytes.size();
  return total;
}

const SafetensorsFile& SafetensorsFolder::file_of(std::string_view name) const {
  auto found = index_.find(std::string(name));
  if (found == index_.end()) tensor(name);  // throws the UserError
  return *files_[found->second.first];
}

// ---- writing ----

uint64_t TensorToWrite::byte_size() const {
  auto size = checked_byte_size(shape, file_dtype_size(dtype));
  VKT_ASSERT(size.has_value(), "tensor " + name + ": shape too large");
  return *size;
}

TensorToWrite TensorToWrite::from_bytes(std::string name, FileDtype dtype, std::vector<uint64_t> shape,
                                        std::span<const uint8_t> bytes) {
  TensorToWrite tensor{std::move(name), dtype, std::move(shape), {}};
  VKT_ASSERT(tensor.byte_size() == bytes.size(), "tensor " + tensor.name + ": bytes do not match shape and dtype");
  tensor.write_data = [bytes](TensorSink& sink) { sink.write(bytes.data(), bytes.size()); };
  return tensor;
}

namespace {

class FileSink : public TensorSink {
 public:
  FileSink(std::FILE* file, const fs::path& path) : file_(file), path_(path) {}
  // The tensor whose bytes follow (null: the header); its float values are checked as they pass.
  void begin_tensor(const TensorToWrite* tensor) {
    tensor_ = tensor;
    tensor_written_ = 0;
  }
  void write(const void* data, size_t bytes) override {
    if (bytes == 0) return;
    if (tensor_) check_finite(static_cast<const uint8_t*>(data), bytes);
    if (std::fwrite(data, 1, bytes, file_) != bytes)
      throw UserError("failed writing " + path_.string() + ": " + std::strerror(errno), "is the disk full?");
    written_ += bytes;
  }
  uint64_t written() const { return written_; }

 private:
  void check_finite(const uint8_t* data, size_t bytes) {
    const uint64_t element_size = file_dtype_size(tensor_->dtype);
    VKT_ASSERT(tensor_written_ % element_size == 0 && bytes % element_size == 0,
               "tensor " + tensor_->name + ": written in pieces that split elements");
    if (auto index = first_non_finite(tensor_->dtype, {data, bytes}))
      throw UserError("refusing to write " + path_.string() + ": tensor " + in_quotes(tensor_->name) +
                          " holds NaN or Inf (element " + std::to_string(tensor_written_ / element_size + *index) + ")",
                      "the weights diverged (a learning rate too high, bad data, fp16 overflow) or the inputs "
                      "already held NaN/Inf; nothing was written");
    tensor_written_ += bytes;
  }

  std::FILE* file_;
  const fs::path& path_;
  uint64_t written_ = 0;
  const TensorToWrite* tensor_ = nullptr;
  uint64_t tensor_written_ = 0;
};

}  // namespace

void write_safetensors(const fs::path& path, std::vector<TensorToWrite> tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  for (const auto& tensor : tensors) {
    VKT_ASSERT(!tensor.name.empty() && tensor.name != "__metadata__", "invalid tensor name \"" + tensor.name + "\"");
    VKT_ASSERT(names.insert(tensor.name).second, "tensor " + tensor.name + " is written twice");
    VKT_ASSERT(static_cast<bool>(tensor.write_data), "tensor " + tensor.name + " has no data callback");
  }
  // The reference writer's order: larger dtypes first (keeps every tensor aligned to its element
  // size when the header is 8-byte aligned), then by name.
  std::stable_sort(tensors.begin(), tensors.end(), [](const TensorToWrite& a, const TensorToWrite& b) {
    int rank_a = alignment_rank(a.dtype), rank_b = alignment_rank(b.dtype);
    return rank_a != rank_b ? rank_a > rank_b : a.name < b.name;
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json entries = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) entries[key] = value;
    header["__metadata__"] = std::move(entries);
  }
  uint64_t offset = 0;
  for (const auto& tensor : tensors) {
    uint64_t size = tensor.byte_size();
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = file_dtype_name(tensor.dtype);
    entry["shape"] = tensor.shape;
    entry["data_offsets"] = {offset, offset + size};
    header[tensor.name] = std::move(entry);
    offset += size;
  }
  std::string header_text = header.dump();
  header_text.resize((header_text.size() + 7) / 8 * 8, ' ');  // pad with spaces to 8 bytes, as the reference does
  if (header_text.size() > kMaxHeaderBytes)
    throw UserError(path.string() + ": the header would be " + std::to_string(header_text.size()) +
                        " bytes, above the format's limit",
                    "write fewer tensors per file (use write_safetensors_sharded)");

  write_file_atomically(path, [&](std::FILE* file) {
    FileSink sink(file, path);
    uint64_t header_length = header_text.size();
    sink.write(&header_length, 8);
    sink.write(header_text.data(), header_text.size());
    for (const auto& tensor : tensors) {
      uint64_t before = sink.written();
      sink.begin_tensor(&tensor);
      tensor.write_data(sink);
      VKT_ASSERT(sink.written() - before == tensor.byte_size(),
                 "tensor " + tensor.name + ": the data callback wrote " + std::to_string(sink.written() - before) +
                     " bytes instead of " + std::to_string(tensor.byte_size()));
    }
  });
}

ShardedWriteResult write_safetensors_sharded(const fs::path& directory, std::vector<TensorToWrite> tensors,
                                             uint64_t max_shard_bytes,
                                             const std::map<std::string, std::string>& metadata,
                                             const std::string& base_name) {
  VKT_ASSERT(max_shard_bytes > 0, "max_shard_bytes must be positive");
  fs::create_directories(directory);
  // Assign tensors to shards in the given order, as huggingface_hub's split_torch_state_dict_into_shards
  // does: a tensor above the limit becomes a shard of its own right away (ahead of the shard being
  // filled); a tensor that would tip the current shard over the limit closes it.
  std::vector<std::vector<TensorToWrite>> shards;
  std::vector<TensorToWrite> current;
  uint64_t current_bytes = 0, total_bytes = 0;
  for (auto& tensor : tensors) {
    uint64_t size = tensor.byte_size();
    total_bytes += size;
    if (size > max_shard_bytes) {
      shards.emplace_back().push_back(std::move(tensor));
      continue;
    }
    if (current_bytes + size > max_shard_bytes) {
      shards.push_back(std::move(current));
      current.clear();
      current_bytes = 0;
    }
    current.push_back(std::move(tensor));
    current_bytes += size;
  }
  if (!current.empty() || shards.empty()) shards.push_back(std::move(current));

  ShardedWriteResult result;
  const fs::path single_path = directory / (base_name + ".safetensors");
  const fs::path index_path = directory / (base_name + ".safetensors.index.json");
  std::set<fs::path> written;
  if (shards.size() == 1) {
    write_safetensors(single_path, std::move(shards[0]), metadata);
    result.files.push_back(single_path);
    written.insert(single_path);
  } else {
    json weight_map = json::object();  // std::map underneath: keys sorted, as HF's json.dumps(sort_keys=True)
    char suffix[64];
    for (size_t i = 0; i < shards.size(); i++) {
      std::snprintf(suffix, sizeof suffix, "-%05zu-of-%05zu.safetensors", i + 1, shards.size());
      fs::path shard_path = directory / (base_name + suffix);
      for (const auto& tensor : shards[i]) weight_map[tensor.name] = shard_path.filename().string();
      write_safetensors(shard_path, std::move(shards[i]), metadata);
      result.files.push_back(shard_path);
      written.insert(shard_path);
    }
    json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", std::move(weight_map)}};
    write_file_atomically(index_path, index.dump(2) + "\n");
    result.index = index_path;
  }

  // Remove what an earlier save left behind that this one does not replace, so that a reader
  // never mixes the two.
  auto is_shard_name = [&](const std::string& file_name) {  // "<base>-DDDDD-of-DDDDD.safetensors"
    const std::string tail = "-00000-of-00000.safetensors";
    if (file_name.size() != base_name.size() + tail.size() || file_name.compare(0, base_name.size(), base_name) != 0)
      return false;
    for (size_t i = 0; i < tail.size(); i++) {
      char c = file_name[base_name.size() + i];
      if (tail[i] == '0' ? !std::isdigit(static_cast<unsigned char>(c)) : c != tail[i]) return false;
    }
    return true;
  };
  for (const auto& entry : fs::directory_iterator(directory)) {
    const std::string file_name = entry.path().filename().string();
    bool stale_shard = is_shard_name(file_name) && !written.count(entry.path());
    bool stale_single = result.index && entry.path() == single_path;
    bool stale_index = !result.index && entry.path() == index_path;
    if (stale_shard || stale_single || stale_index) fs::remove(entry.path());
  }
  return result;
}

}  // namespace vkt::model
