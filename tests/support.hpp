#pragma once
// Shared by all tests: one Vulkan context for the process (validation on when VKT_VALIDATION
// is set, as ctest sets it), random data, and comparison helpers that report NMSE and max-abs.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/vk/context.hpp"
#include "engine/vk/recorder.hpp"

namespace vkt::test {

vk::Context& context();

// Sets an environment variable for one scope and restores what was there (kernels read their
// kill switches and VKT_ROW_THREADS when they record). A null or empty value unsets it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value);
  ScopedEnv(const char* name, const std::string& value) : ScopedEnv(name, value.empty() ? nullptr : value.c_str()) {}
  ~ScopedEnv();
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};
// The `--op NAME` filter of the kernel suite (empty: all ops).
const std::string& op_filter();
bool op_selected(const std::string& op);

std::vector<float> random_floats(size_t n, uint32_t seed, float low = -1.0f, float high = 1.0f);

struct Comparison {
  double nmse = 0;     // sum (a-b)^2 / sum b^2
  double max_abs = 0;  // max |a-b|
  size_t worst_index = 0;
  bool has_non_finite = false;
};
Comparison compare(const std::vector<float>& actual, const std::vector<float>& expected);

// Uploads host data into a new device buffer (category workspace unless given).
vk::Buffer upload(const std::vector<float>& data, const std::string& name = "test",
                  vk::Category category = vk::Category::workspace);
template <class T>
vk::Buffer upload_raw(const std::vector<T>& data, const std::string& name = "test") {
  vk::Buffer buffer = context().allocate(data.size() * sizeof(T), vk::Category::workspace, name);
  context().upload(buffer, data.data());
  return buffer;
}
std::vector<float> download(const vk::Buffer& buffer, size_t count = 0);
template <class T>
std::vector<T> download_raw(const vk::Buffer& buffer, size_t count) {
  std::vector<T> data(count);
  context().download(buffer, data.data(), 0, count * sizeof(T));
  return data;
}

std::filesystem::path source_dir();                       // the repository root
std::filesystem::path binary_dir();                       // the build directory
std::filesystem::path temp_dir(const std::string& name);  // a fresh empty directory
// Runs a command through the shell; returns its exit status and output (stdout and stderr).
std::pair<int, std::string> run_command(const std::string& command);

}  // namespace vkt::test
