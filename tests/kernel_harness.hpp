#pragma once
// The kernel suite's harness, after ggml's test-backend-ops:
// - kernel test cases are named "<op>: <what>" and `vktune_tests --op <op>` runs only those;
// - Guarded buffers put a sentinel region after every output to catch out-of-bounds writes;
// - check_close compares with NMSE and max-abs tolerances and rejects NaN/Inf;
// - check_gradient compares an analytic gradient with 4-point central finite differences.
#include <functional>
#include <string>
#include <vector>

#include "engine/kernels/dispatch.hpp"
#include "engine/kernels/types.hpp"
#include "engine/quant/ggml_blocks.hpp"
#include "tests/support.hpp"

namespace vkt::test {

// Values as a tensor of `type` stores them (fp32 as is, fp16/bf16 rounded to nearest even): raw bytes to
// upload, and stored bytes back as fp32.
std::vector<uint8_t> stored_bytes(const std::vector<float>& values, kernels::DType type);
std::vector<float> stored_floats(const std::vector<uint8_t>& bytes, kernels::DType type);
// `values` rounded as `type` stores them.
inline std::vector<float> as_stored(const std::vector<float>& values, kernels::DType type) {
  return stored_floats(stored_bytes(values, type), type);
}

constexpr size_t guard_bytes = 1024;
constexpr uint32_t guard_word = 0x7fc0dead;  // a NaN pattern a kernel would never write by accident

// A device buffer of `payload_bytes` followed by a guard region filled with guard_word.
class Guarded {
 public:
  explicit Guarded(size_t payload_bytes, const std::string& name = "guarded");
  static Guarded of(const std::vector<float>& values, const std::string& name = "guarded");
  template <class T>
  static Guarded of_raw(const std::vector<T>& values, const std::string& name = "guarded") {
    Guarded guarded(values.size() * sizeof(T), name);
    guarded.upload(values.data());
    return guarded;
  }
  kernels::BufferRange range() const { return buffer_.range(0, payload_bytes_); }
  size_t bytes() const { return payload_bytes_; }
  void upload(const void* data);
  std::vector<float> floats() const;  // the payload as fp32
  template <class T>
  std::vector<T> read() const {
    std::vector<T> values(payload_bytes_ / sizeof(T));
    context().download(buffer_, values.data(), 0, payload_bytes_);
    return values;
  }
  // True when no byte after the payload was written.
  bool guard_intact() const;

 private:
  vk::Buffer buffer_;
  size_t payload_bytes_;
};

// CHECKs that `actual` is finite, has the expected size, and is within both tolerances of
// `expected`; on failure prints the worst element.
void check_close(const std::vector<float>& actual, const std::vector<float>& expected, double max_nmse, double max_abs,
                 const std::string& what);

// Checks an analytic gradient against finite differences of a scalar loss at `samples`
// positions (all if samples >= size). `loss(x)` must evaluate the forward pass at x. Passes when
// the NMSE of the sampled analytic values against the numeric ones is <= max_nmse.
void check_gradient(const std::function<double(const std::vector<float>&)>& loss, const std::vector<float>& x,
                    const std::vector<float>& analytic, float step, double max_nmse, int samples,
                    const std::string& what);

// Random raw blocks of ggml type `type` (a block format) for `elements` values: every code byte
// random, every fp16 scale a finite value of magnitude <= max_scale (random sign; dmin too), so
// any decoding error shows. With every_half_pattern the scales instead take random finite fp16 bit
// patterns (subnormals and 65504 included): for bit-exact decoding checks only.
std::vector<uint8_t> random_ggml_blocks(quant::GgmlType type, uint64_t elements, uint32_t seed, float max_scale = 0.05f,
                                        bool every_half_pattern = false);

// sum_i a[i] * b[i] in double: the scalar loss used for gradient checks (b = upstream gradient).
double dot(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace vkt::test
