#pragma once
// A whole file mapped read-only into memory (mmap): model readers hand out views into it without
// copying, and the kernel pages tensors in and out as they are touched, so a large model file is
// never held twice.
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

namespace vkt {

class MappedFile {
 public:
  // UserError naming the path (with `what_to_pass` as the hint) when it cannot be opened, is not a
  // regular file, or cannot be mapped. An empty file maps to an empty span.
  MappedFile(const std::filesystem::path& path, const std::string& what_to_pass);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, static_cast<size_t>(size_)}; }

 private:
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace vkt
