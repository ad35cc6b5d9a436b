#include "engine/base/files.hpp"

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "engine/base/error.hpp"

namespace vkt {
namespace fs = std::filesystem;

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError("cannot read " + path.string() + ": " + std::strerror(errno), "check that the path exists");
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// fs::rename, with a UserError naming both paths and the system's reason.
static void rename_checked(const fs::path& from, const fs::path& to) {
  std::error_code error;
  fs::rename(from, to, error);
  if (error)
    throw UserError("cannot move " + from.string() + " to " + to.string() + ": " + error.message(),
                    "is the disk full or the folder read-only?");
}

static fs::path temporary_sibling(const fs::path& path) {
  return path.parent_path() / (path.filename().string() + ".tmp-" + std::to_string(getpid()));
}

void write_file_atomically(const fs::path& path, const std::function<void(std::FILE*)>& write_contents) {
  fs::path temporary = temporary_sibling(path);
  std::FILE* file = std::fopen(temporary.c_str(), "wb");
  if (!file)
    throw UserError("cannot write " + temporary.string() + ": " + std::strerror(errno),
                    "check that the output directory exists and is writable");
  std::error_code ignored;
  try {
    write_contents(file);
  } catch (...) {
    std::fclose(file);
    fs::remove(temporary, ignored);
    throw;
  }
  int error = 0;  // saved before anything else can change errno
  if (std::fflush(file) != 0 || fsync(fileno(file)) != 0) error = errno ? errno : EIO;
  if (std::fclose(file) != 0 && error == 0) error = errno ? errno : EIO;
  if (error) {
    fs::remove(temporary, ignored);
    throw UserError("failed writing " + path.string() + ": " + std::strerror(error), "is the disk full?");
  }
  try {
    rename_checked(temporary, path);
  } catch (...) {
    fs::remove(temporary, ignored);
    throw;
  }
}

void write_file_atomically(const fs::path& path, std::string_view contents) {
  write_file_atomically(path, [&](std::FILE* file) {
    if (std::fwrite(contents.data(), 1, contents.size(), file) != contents.size())
      throw UserError("failed writing " + path.string() + ": " + std::strerror(errno), "is the disk full?");
  });
}

void append_to_file(const fs::path& path, std::string_view contents) {
  std::FILE* file = std::fopen(path.c_str(), "ab");
  if (!file) throw UserError("cannot write " + path.string() + ": " + std::strerror(errno), "is the folder writable?");
  errno = 0;
  int error = 0;
  if (std::fwrite(contents.data(), 1, contents.size(), file) != contents.size() || std::fflush(file) != 0)
    error = errno ? errno : EIO;
  if (std::fclose(file) != 0 && error == 0) error = errno ? errno : EIO;
  if (error) throw UserError("failed writing " + path.string() + ": " + std::strerror(error), "is the disk full?");
}

AtomicDirectory::AtomicDirectory(fs::path final_path)
    : final_path_(std::move(final_path)), temporary_path_(temporary_sibling(final_path_)) {
  fs::remove_all(temporary_path_);
  std::error_code error;
  fs::create_directories(temporary_path_, error);
  if (error)
    throw UserError("cannot create " + temporary_path_.string() + ": " + error.message(),
                    "is the disk full or the folder read-only?");
}

AtomicDirectory::~AtomicDirectory() {
  if (!committed_) {
    std::error_code ignored;
    fs::remove_all(temporary_path_, ignored);
  }
}

void AtomicDirectory::commit() {
  // A directory cannot be renamed over a non-empty one: move the old one aside first.
  fs::path old_aside;
  if (fs::exists(final_path_)) {
    old_aside = final_path_.parent_path() / (final_path_.filename().string() + ".old-" + std::to_string(getpid()));
    fs::remove_all(old_aside);
    rename_checked(final_path_, old_aside);
  }
  try {
    rename_checked(temporary_path_, final_path_);
  } catch (...) {
    std::error_code ignored;  // put the old one back: a failed save must not lose the last good one
    if (!old_aside.empty()) fs::rename(old_aside, final_path_, ignored);
    throw;
  }
  committed_ = true;
  if (!old_aside.empty()) fs::remove_all(old_aside);
}

uint64_t parse_byte_size(const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (...) {
    used = 0;
  }
  std::string unit = text.substr(used);
  unit.erase(0, unit.find_first_not_of(' '));
  for (auto& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double scale = -1;
  if (unit.empty() || unit == "b")
    scale = 1;
  else if (unit == "k" || unit == "kb")
    scale = 1e3;
  else if (unit == "m" || unit == "mb")
    scale = 1e6;
  else if (unit == "g" || unit == "gb")
    scale = 1e9;
  else if (unit == "t" || unit == "tb")
    scale = 1e12;
  else if (unit == "kib")
    scale = 1024.0;
  else if (unit == "mib")
    scale = 1024.0 * 1024;
  else if (unit == "gib")
    scale = 1024.0 * 1024 * 1024;
  else if (unit == "tib")
    scale = 1024.0 * 1024 * 1024 * 1024;
  const char* hint = "write it like 24GiB, 16GB or 8000MiB";
  if (used == 0 || scale < 0 || !(value > 0))  // !(> 0): NaN too
    throw UserError("cannot read the memory size '" + text + "'", hint);
  const double bytes = value * scale;
  if (!(bytes < 18446744073709551616.0))  // 2^64: from there on (inf included) no uint64_t holds it
    throw UserError("the memory size '" + text + "' is too large", hint);
  return static_cast<uint64_t>(bytes);
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  double magnitude = std::fabs(bytes);
  while (magnitude >= 1024.0 && unit < 4) {
    magnitude /= 1024.0;
    bytes /= 1024.0;
    unit++;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.2f %s", bytes, units[unit]);
  return text;
}

std::string format_duration(double seconds) {
  char text[32];
  if (!std::isfinite(seconds) || seconds < 0) return "--";
  long total = static_cast<long>(seconds + 0.5);
  if (seconds < 60)
    std::snprintf(text, sizeof text, "%.1fs", seconds);
  else if (total < 3600)
    std::snprintf(text, sizeof text, "%ldm%02lds", total / 60, total % 60);
  else
    std::snprintf(text, sizeof text, "%ldh%02ldm", total / 3600, (total % 3600) / 60);
  return text;
}

}  // namespace vkt
