#include "tests/kernel_harness.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "engine/base/half.hpp"

namespace vkt::test {

std::vector<uint8_t> stored_bytes(const std::vector<float>& values, kernels::DType type) {
  std::vector<uint8_t> bytes(values.size() * kernels::dtype_bytes(type));
  for (size_t i = 0; i < values.size(); i++) {
    if (type == kernels::DType::f32) {
      std::memcpy(&bytes[i * 4], &values[i], 4);
      continue;
    }
    uint16_t bits = type == kernels::DType::f16 ? float_to_half(values[i]) : float_to_bf16(values[i]);
    std::memcpy(&bytes[i * 2], &bits, 2);
  }
  return bytes;
}

std::vector<float> stored_floats(const std::vector<uint8_t>& bytes, kernels::DType type) {
  size_t count = bytes.size() / kernels::dtype_bytes(type);
  std::vector<float> values(count);
  for (size_t i = 0; i < count; i++) {
    if (type == kernels::DType::f32) {
      std::memcpy(&values[i], &bytes[i * 4], 4);
      continue;
    }
    uint16_t bits;
    std::memcpy(&bits, &bytes[i * 2], 2);
    values[i] = type == kernels::DType::f16 ? half_to_float(bits) : bf16_to_float(bits);
  }
  return values;
}

Guarded::Guarded(size_t payload_bytes, const std::string& name) : payload_bytes_(payload_bytes) {
  buffer_ = context().allocate(payload_bytes + guard_bytes, vk::Category::workspace, name);
  std::vector<uint32_t> sentinel((payload_bytes + guard_bytes + 3) / 4, guard_word);
  context().upload(buffer_, sentinel.data(), 0, payload_bytes + guard_bytes);
}

Guarded Guarded::of(const std::vector<float>& values, const std::string& name) {
  Guarded guarded(values.size() * 4, name);
  guarded.upload(values.data());
  return guarded;
}

void Guarded::upload(const void* data) { context().upload(buffer_, data, 0, payload_bytes_); }

std::vector<float> Guarded::floats() const { return read<float>(); }

bool Guarded::guard_intact() const {
  std::vector<uint8_t> guard(guard_bytes);
  context().download(buffer_, guard.data(), payload_bytes_, guard_bytes);
  // The sentinel was written as whole words from offset 0, so byte i of the guard holds byte
  // (payload_bytes + i) % 4 of guard_word.
  for (size_t i = 0; i < guard_bytes; i++) {
    uint8_t expected = static_cast<uint8_t>(guard_word >> (8 * ((payload_bytes_ + i) % 4)));
    if (guard[i] != expected) return false;
  }
  return true;
}

void check_close(const std::vector<float>& actual, const std::vector<float>& expected, double max_nmse, double max_abs,
                 const std::string& what) {
  INFO(what);
  REQUIRE(actual.size() == expected.size());
  Comparison result = compare(actual, expected);
  INFO("nmse " << result.nmse << " (max " << max_nmse << "), max-abs " << result.max_abs << " (max " << max_abs
               << ") at " << result.worst_index << ": got " << actual[result.worst_index] << ", expected "
               << expected[result.worst_index]);
  CHECK_FALSE(result.has_non_finite);
  CHECK(result.nmse <= max_nmse);
  CHECK(result.max_abs <= max_abs);
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); i++) sum += static_cast<double>(a[i]) * b[i];
  return sum;
}

void check_gradient(const std::function<double(const std::vector<float>&)>& loss, const std::vector<float>& x,
                    const std::vector<float>& analytic, float step, double max_nmse, int samples,
                    const std::string& what) {
  INFO(what);
  REQUIRE(analytic.size() == x.size());
  std::vector<size_t> positions(x.size());
  std::iota(positions.begin(), positions.end(), 0);
  if (samples < static_cast<int>(x.size())) {
    std::mt19937 generator(12345);
    std::shuffle(positions.begin(), positions.end(), generator);
    positions.resize(static_cast<size_t>(samples));
  }
  double error_sum = 0, reference_sum = 0, worst = 0;
  size_t worst_position = 0;
  double worst_numeric = 0;
  std::vector<float> probe = x;
  for (size_t position : positions) {
    float original = x[position];
    auto at = [&](float offset) {
      probe[position] = original + offset;
      double value = loss(probe);
      probe[position] = original;
      return value;
    };
    // 4-point central difference: error O(h^4).
    double numeric = (-at(2 * step) + 8 * at(step) - 8 * at(-step) + at(-2 * step)) / (12.0 * step);
    double difference = numeric - analytic[position];
    error_sum += difference * difference;
    reference_sum += numeric * numeric;
    if (!std::isfinite(analytic[position])) error_sum = INFINITY;
    if (std::fabs(difference) > worst) {
      worst = std::fabs(difference);
      worst_position = position;
      worst_numeric = numeric;
    }
  }
  double nmse = reference_sum > 0 ? error_sum / reference_sum : error_sum;
  INFO("gradient nmse " << nmse << " (max " << max_nmse << "); worst at " << worst_position << ": analytic "
                        << analytic[worst_position] << ", numeric " << worst_numeric);
  CHECK(nmse <= max_nmse);
}

std::vector<uint8_t> random_ggml_blocks(quant::GgmlType type, uint64_t elements, uint32_t seed, float max_scale,
                                        bool every_half_pattern) {
  const quant::GgmlTypeInfo& info = quant::ggml_type_info(type);
  REQUIRE(elements % info.block_elems == 0);
  std::mt19937 random(seed);
  std::vector<uint8_t> bytes(elements / info.block_elems * info.block_bytes);
  for (uint8_t& byte : bytes) byte = static_cast<uint8_t>(random());
  // Offsets of the fp16 scales inside a block (ggml-common.h).
  std::vector<uint32_t> halves = {0};
  if (type == quant::GgmlType::Q4_1 || type == quant::GgmlType::Q5_1 || type == quant::GgmlType::Q4_K ||
      type == quant::GgmlType::Q5_K)
    halves = {0, 2};
  if (type == quant::GgmlType::Q6_K) halves = {208};
  std::uniform_real_distribution<float> scale(-max_scale, max_scale);
  for (size_t block = 0; block < bytes.size(); block += info.block_bytes)
    for (uint32_t offset : halves) {
      uint16_t bits = float_to_half(scale(random));
      if (every_half_pattern) {
        bits = static_cast<uint16_t>(random());
        if ((bits & 0x7c00u) == 0x7c00u) bits &= 0xbfffu;  // exponent 31 (inf/NaN) -> finite
      }
      std::memcpy(&bytes[block + offset], &bits, 2);
    }
  return bytes;
}

}  // namespace vkt::test
