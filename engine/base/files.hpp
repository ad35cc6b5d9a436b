#pragma once
// File helpers. Everything vktune writes for the user goes through write_file_atomically or
// AtomicDirectory so that a crash never leaves a half-written checkpoint or export behind.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace vkt {

// Reads a whole file; UserError naming the path when it cannot be read.
std::string read_text_file(const std::filesystem::path& path);

// Writes to "<path>.tmp-<pid>", flushes, then renames over <path>.
void write_file_atomically(const std::filesystem::path& path, std::string_view contents);
// The same, with a writer callback that streams into the temporary file.
void write_file_atomically(const std::filesystem::path& path, const std::function<void(std::FILE*)>& write_contents);

// Appends to <path> (created if absent) and flushes; UserError with the path and the errno text
// when any part fails (a full disk, a read-only folder). A failure may leave a cut last line.
void append_to_file(const std::filesystem::path& path, std::string_view contents);

// A directory built under a temporary name and renamed into place by commit(); removed if
// never committed (an exception on the way leaves nothing behind).
class AtomicDirectory {
 public:
  explicit AtomicDirectory(std::filesystem::path final_path);
  ~AtomicDirectory();
  AtomicDirectory(const AtomicDirectory&) = delete;
  AtomicDirectory& operator=(const AtomicDirectory&) = delete;
  const std::filesystem::path& path() const { return temporary_path_; }
  void commit();

 private:
  std::filesystem::path final_path_;
  std::filesystem::path temporary_path_;
  bool committed_ = false;
};

std::string format_bytes(double bytes);  // "1.50 GiB"
// "24GiB", "24 GB", "8000MiB", "1.5T" -> bytes; UserError otherwise (the inverse of format_bytes).
uint64_t parse_byte_size(const std::string& text);
std::string format_duration(double seconds);  // "1h02m", "3m05s", "12.3s"

}  // namespace vkt
