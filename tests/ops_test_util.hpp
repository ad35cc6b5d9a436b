#pragma once
// Small helpers shared by the kernels_ops test files.
#include <string>
#include <vector>

namespace vkt::test {

// Workgroup sizes the one-workgroup-per-row kernels are tested with: the device's default
// (32 on lavapipe), the GPU default 256, and 8 (fewer invocations than some rows' length
// leaves whole strides to each).
inline std::vector<std::string> row_thread_settings() { return {"", "256", "8"}; }

}  // namespace vkt::test
