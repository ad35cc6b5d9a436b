#pragma once
// Hugging Face safetensors: a memory-mapped reader that hands out tensors without copying, a
// folder reader for single-file and sharded checkpoints (model.safetensors.index.json), and a
// streaming writer (one tensor at a time, temporary file + rename, sharding as save_pretrained).
//
// File layout (https://github.com/huggingface/safetensors, README "Format"):
//   u64 little-endian N | N bytes of JSON header | byte buffer
// The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end)} (offsets relative
// to the byte buffer) plus an optional "__metadata__" string->string map.
//
// What the reader enforces (the reference implementation's rules, all of them):
//   - the file has at least 8 bytes; N <= 100,000,000 and 8 + N <= file size;
//   - the header is UTF-8 JSON that starts with '{' and is an object without duplicate keys;
//   - "__metadata__", when present, maps strings to strings;
//   - every tensor has a known dtype, a shape of non-negative integers and two integer offsets;
//   - sorted by offsets, the tensors tile the byte buffer exactly: the first starts at 0, each starts
//     where the previous one ends (no overlap, no hole), and the last ends at the end of the file
//     (no trailing bytes) -- the spec requires the buffer to be "entirely indexed, no holes";
//   - end - begin == product(shape) * dtype size (zero-element tensors take zero bytes).
// Every violation is a vkt::UserError naming the file, the tensor, and what to do.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace vkt {
class MappedFile;
}

namespace vkt::model {

// Element type of a tensor stored in a safetensors file (its "dtype" string). The sub-byte and
// complex types of the format (F4, F6_*, C64, ...) are not supported and rejected by name.
enum class FileDtype : uint8_t { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };
const char* file_dtype_name(FileDtype dtype);                          // "BF16"
std::optional<FileDtype> file_dtype_from_name(std::string_view name);  // nullopt when unknown
uint32_t file_dtype_size(FileDtype dtype);                             // bytes per element
std::string supported_file_dtypes();                                   // "BOOL, U8, ..." for messages

// One tensor of a mapped file. `bytes` points into the mapping and lives as long as the
// SafetensorsFile that handed it out.
struct TensorView {
  std::string name;
  FileDtype dtype = FileDtype::F32;
  std::vector<uint64_t> shape;     // row-major; empty for a scalar
  std::span<const uint8_t> bytes;  // (product(shape) * dtype size) bytes, little-endian
  uint64_t element_count() const;  // product(shape); 1 for a scalar
};

// F32/F16/BF16 elements to fp32; `out` must hold element_count() floats. Other dtypes: UserError
// naming the tensor. Conversions are exact (fp16 and bf16 are subsets of fp32).
void convert_to_fp32(const TensorView& tensor, std::span<float> out);
std::vector<float> to_fp32(const TensorView& tensor);
// Tells the kernel this process is done with the tensor's mapped pages: they leave its resident set
// (the page cache keeps them), so a loader walking a large file holds about one tensor at a time.
void release_mapped_pages(const TensorView& tensor);
// The index of the first NaN/Inf element of `bytes` read as `dtype` (F32, F16, BF16, F64);
// nullopt when every element is finite or the dtype has no such values (integers, fp8).
std::optional<uint64_t> first_non_finite(FileDtype dtype, std::span<const uint8_t> bytes);
// UserError naming `file` and `tensor` (and the element) when a value is NaN or Inf: input
// weights are refused at load, so a corrupt model fails loudly instead of generating nothing.
void require_finite(std::span<const float> values, const std::string& file, const std::string& tensor);
// fp32 to F32/F16/BF16 bytes (round to nearest even, as torch's .to() does); `out` holds
// values.size() * file_dtype_size(dtype) bytes.
void convert_from_fp32(std::span<const float> values, FileDtype dtype, std::span<uint8_t> out);

// A read-only memory mapping of one .safetensors file, validated on open.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }  // in file (offset) order
  const TensorView* find(std::string_view name) const;                 // nullptr when absent
  const TensorView& tensor(std::string_view name) const;               // UserError when absent
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  uint64_t file_size() const { return size_; }
  uint64_t header_size() const { return header_size_; }  // N, the JSON header's length in bytes

 private:
  struct HeaderEntry;                                              // one tensor's parsed header entry
  void map_file();                                                 // sets mapping_, size_
  std::string_view read_header();                                  // sets header_size_; the JSON text
  std::vector<HeaderEntry> parse_header(std::string_view header);  // fills metadata_
  void check_tiling(std::vector<HeaderEntry>& entries) const;
  void index_tensors(std::vector<HeaderEntry> entries);  // fills tensors_, index_

  std::filesystem::path path_;
  std::unique_ptr<MappedFile> mapped_;
  const uint8_t* mapping_ = nullptr;  // mapped_'s bytes
  uint64_t size_ = 0;
  uint64_t header_size_ = 0;
  std::vector<TensorView> tensors_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// The weights of a model directory: either model.safetensors.index.json (its "weight_map" names
// the shard file of every tensor) or a single model.safetensors. A path to a .safetensors file
// is accepted as well. When both exist, model.safetensors wins (as transformers decides). Every
// shard is mapped; tensors are looked up by name across shards.
class SafetensorsFolder {
 public:
  explicit SafetensorsFolder(const std::filesystem::path& path);

  const TensorView* find(std::string_view name) const;    // nullptr when absent
  const TensorView& tensor(std::string_view name) const;  // UserError naming the folder when absent
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  std::vector<std::string> names() const;  // sorted
  size_t tensor_count() const { return index_.size(); }
  uint64_t total_bytes() const;  // sum of all tensors' byte sizes
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  const SafetensorsFile& file_of(std::string_view name) const;  // the shard holding a tensor
  bool sharded() const { return sharded_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  bool sharded_ = false;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unordered_map<std::string, std::pair<size_t, const TensorView*>> index_;  // name -> (file, view)
};

// ---- writing ----

// Receives a tensor's bytes while the writer streams it to disk; the producer may call write()
// several times (e.g. one row block at a time) but must deliver exactly the tensor's byte size.
class TensorSink {
 public:
  virtual ~TensorSink() = default;
  virtual void write(const void* data, size_t bytes) = 0;
};

// A tensor to write: its header entry plus a callback that produces its bytes when the writer
// reaches it (called exactly once, in file order), so a large model never sits in memory twice.
struct TensorToWrite {
  std::string name;
  FileDtype dtype = FileDtype::F32;
  std::vector<uint64_t> shape;
  std::function<void(TensorSink& sink)> write_data;

  uint64_t byte_size() const;
  // Wraps bytes that stay valid until the write finishes (e.g. a TensorView of another file).
  static TensorToWrite from_bytes(std::string name, FileDtype dtype, std::vector<uint64_t> shape,
                                  std::span<const uint8_t> bytes);
};

// Writes one .safetensors file through a temporary file and a rename. A floating-point tensor with
// a NaN or Inf is refused (UserError naming the file and the tensor; the old file stays as it
// was): no checkpoint, adapter or export is ever written with a non-finite value. Tensors are laid out as the
// reference writer does: sorted by dtype alignment (largest first), then by name; the header is
// compact JSON ("__metadata__" first), padded with spaces to a multiple of 8 bytes.
void write_safetensors(const std::filesystem::path& path, std::vector<TensorToWrite> tensors,
                       const std::map<std::string, std::string>& metadata = {});

struct ShardedWriteResult {
  std::vector<std::filesystem::path> files;    // the .safetensors files written
  std::optional<std::filesystem::path> index;  // model.safetensors.index.json when sharded
};

// Writes a model's weights into `directory` as save_pretrained does: in the given order, tensors
// fill a shard until the next one would push it past `max_shard_bytes` (a tensor larger than the
// limit gets a shard of its own). One shard -> "<base>.safetensors"; several ->
// "<base>-00001-of-0000N.safetensors" plus "<base>.safetensors.index.json" with
// {"metadata": {"total_size": bytes}, "weight_map": {name: file}}. Shards of an earlier save with
// the same base name that are not part of this one are removed. HF's default limit is 5 GB (5e9).
ShardedWriteResult write_safetensors_sharded(const std::filesystem::path& directory, std::vector<TensorToWrite> tensors,
                                             uint64_t max_shard_bytes,
                                             const std::map<std::string, std::string>& metadata = {{"format", "pt"}},
                                             const std::string& base_name = "model");

}  // namespace vkt::model
