#pragma once
// Small helpers shared by the kernel test files.
#include <cstring>
#include <string>
#include <vector>

namespace vkt::test {

// Workgroup sizes the one-workgroup-per-row kernels are tested with: the device's default
// (32 on lavapipe), the GPU default 256, and 8 (fewer invocations than some rows' length
// leaves whole strides to each).
inline std::vector<std::string> row_thread_settings() { return {"", "256", "8"}; }

// Bit-for-bit equality: for results that must not depend on the device, the recording or the
// order of dispatches.
inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

}  // namespace vkt::test
