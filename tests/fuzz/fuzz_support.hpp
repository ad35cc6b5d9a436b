#pragma once
// Shared by the libFuzzer targets: a parser may reject any input with vkt::UserError (the clean
// error a user sees); every other exception, a crash or a sanitizer report is a finding.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include "engine/base/error.hpp"

namespace vkt::fuzz {

// The readers that take a path get the input through one scratch file per process.
inline std::filesystem::path write_scratch_file(const uint8_t* data, size_t size, const char* name) {
  static const std::filesystem::path directory = [] {
    auto dir = std::filesystem::temp_directory_path() / ("vkt-fuzz-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    return dir;
  }();
  std::filesystem::path path = directory / name;
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) std::abort();
  if (size && std::fwrite(data, 1, size, file) != size) std::abort();
  std::fclose(file);
  return path;
}

template <typename Body>
int accept_user_errors(Body&& body) {
  try {
    body();
  } catch (const vkt::UserError&) {}
  return 0;
}

}  // namespace vkt::fuzz
