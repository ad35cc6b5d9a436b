#pragma once
// Small helpers shared by the kernels_ops test files.
#include <cstdlib>
#include <string>
#include <vector>

namespace vkt::test {

// Sets an environment variable for the lifetime of the object (restoring the previous value):
// the row kernels read VKT_ROW_THREADS at record time, so a test can cover every workgroup size.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) had_old_ = true, old_ = old;
    if (value.empty()) unsetenv(name);
    else setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had_old_) setenv(name_, old_.c_str(), 1);
    else unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  bool had_old_ = false;
  std::string old_;
};

// Workgroup sizes the one-workgroup-per-row kernels are tested with: the device's default
// (32 on lavapipe), the GPU default 256, and 8 (fewer invocations than some rows' length
// leaves whole strides to each).
inline std::vector<std::string> row_thread_settings() { return {"", "256", "8"}; }

}  // namespace vkt::test
