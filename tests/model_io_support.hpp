#pragma once
// Helpers shared by the model_io suite (test_model_safetensors, test_model_config,
// test_text_tokenizer): error messages, raw files, JSON documents.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"

namespace vkt::test {

// Runs `action`, which must throw vkt::UserError; returns its message and hint together.
inline std::string user_error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const UserError& error) {
    return std::string(error.what()) + "\n---> HINT: " + error.hint();
  }
  FAIL("expected a vkt::UserError");
  return {};
}

inline void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline nlohmann::json load_json(const std::filesystem::path& path) {
  return nlohmann::json::parse(read_text_file(path));
}

}  // namespace vkt::test
