#include "tests/support.hpp"

#include <sys/wait.h>
#include <cmath>
#include <cstdlib>
#include <memory>

namespace vkt::test {

ScopedEnv::ScopedEnv(const char* name, const char* value) : name_(name) {
  if (const char* old = std::getenv(name)) old_ = old;
  if (value)
    setenv(name, value, 1);
  else
    unsetenv(name);
}

ScopedEnv::~ScopedEnv() {
  if (old_)
    setenv(name_.c_str(), old_->c_str(), 1);
  else
    unsetenv(name_.c_str());
}

namespace {
std::unique_ptr<vk::Context> shared_context;
}
std::string op_filter_value;
// Errors provoked on purpose by the test that proves the validation check can fail.
uint32_t expected_validation_errors = 0;

vk::Context& context() {
  if (!shared_context) {
    vk::ContextOptions options;
    options.log_capabilities = false;
    shared_context = std::make_unique<vk::Context>(options);
  }
  return *shared_context;
}

bool context_created() { return shared_context != nullptr; }
void destroy_context() { shared_context.reset(); }

const std::string& op_filter() { return op_filter_value; }
bool op_selected(const std::string& op) { return op_filter_value.empty() || op_filter_value == op; }

std::vector<float> random_floats(size_t n, uint32_t seed, float low, float high) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> distribution(low, high);
  std::vector<float> values(n);
  for (float& value : values) value = distribution(generator);
  return values;
}

Comparison compare(const std::vector<float>& actual, const std::vector<float>& expected) {
  Comparison result;
  double error_sum = 0, reference_sum = 0;
  size_t n = std::min(actual.size(), expected.size());
  for (size_t i = 0; i < n; i++) {
    if (!std::isfinite(actual[i])) result.has_non_finite = true;
    double difference = static_cast<double>(actual[i]) - expected[i];
    error_sum += difference * difference;
    reference_sum += static_cast<double>(expected[i]) * expected[i];
    if (std::fabs(difference) > result.max_abs || !std::isfinite(difference)) {
      result.max_abs = std::isfinite(difference) ? std::fabs(difference) : INFINITY;
      result.worst_index = i;
    }
  }
  result.nmse = reference_sum > 0 ? error_sum / reference_sum : error_sum;
  if (actual.size() != expected.size()) result.has_non_finite = true;
  return result;
}

vk::Buffer upload(const std::vector<float>& data, const std::string& name, vk::Category category) {
  vk::Buffer buffer = context().allocate(data.size() * 4, category, name);
  context().upload(buffer, data.data());
  return buffer;
}

std::vector<float> download(const vk::Buffer& buffer, size_t count) {
  if (count == 0) count = buffer.size() / 4;
  std::vector<float> data(count);
  context().download(buffer, data.data(), 0, count * 4);
  return data;
}

std::filesystem::path source_dir() { return VKT_SOURCE_DIR; }
std::filesystem::path binary_dir() { return VKT_BINARY_DIR; }

std::filesystem::path temp_dir(const std::string& name) {
  auto path = binary_dir() / "test-output" / name;
  std::filesystem::remove_all(path);
  std::filesystem::create_directories(path);
  return path;
}

std::pair<int, std::string> run_command(const std::string& command) {
  std::string output;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return {-1, output};
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

}  // namespace vkt::test
