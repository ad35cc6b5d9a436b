// The fp32 <-> fp16/bf16 conversions (engine/kernels/convert.hpp), bit-exact against
// engine/base/half.hpp. Suite kernels_ops.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "engine/base/half.hpp"
#include "engine/kernels/convert.hpp"
#include "tests/kernel_harness.hpp"

using namespace vkt;
using test::context;
using test::Guarded;

namespace {

uint32_t bits_of(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  return bits;
}
float float_of(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

}  // namespace

TEST_SUITE("kernels_ops") {

TEST_CASE("convert_f16_to_f32 and convert_bf16_to_f32: all 65536 bit patterns, bit-exact") {
  std::vector<uint16_t> patterns(65536);
  for (uint32_t i = 0; i < 65536; i++) patterns[i] = static_cast<uint16_t>(i);
  Guarded source = Guarded::of_raw(patterns, "source");
  Guarded from_half(65536 * 4, "from half"), from_bf16(65536 * 4, "from bf16");
  context().run([&](vk::Recorder& r) {
    kernels::convert_f16_to_f32(r, source.range(), from_half.range(), 65536);
    kernels::convert_bf16_to_f32(r, source.range(), from_bf16.range(), 65536);
  });
  std::vector<float> expected_half(65536), expected_bf16(65536);
  ref::convert_f16_to_f32(patterns.data(), expected_half.data(), 65536);
  ref::convert_bf16_to_f32(patterns.data(), expected_bf16.data(), 65536);
  auto half_bits = from_half.read<uint32_t>(), bf16_bits = from_bf16.read<uint32_t>();
  size_t half_mismatches = 0, bf16_mismatches = 0;
  for (uint32_t i = 0; i < 65536; i++) {
    if (half_bits[i] != bits_of(expected_half[i])) half_mismatches++;
    if (bf16_bits[i] != bits_of(expected_bf16[i])) bf16_mismatches++;
  }
  CHECK(half_mismatches == 0);  // subnormals, infinities, NaN payloads included
  CHECK(bf16_mismatches == 0);
  CHECK(from_half.guard_intact());
  CHECK(from_bf16.guard_intact());
}

TEST_CASE("convert_f32_to_f16 and convert_f32_to_bf16: bit-exact on special, halfway and random values") {
  std::vector<uint32_t> inputs = {
      0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001,
      0x7fbfffff,                                                              // zeros, inf, NaN
      0x00000001, 0x807fffff, 0x00400000,                                      // fp32 subnormals
      0x477fe000, 0x477fefff, 0x477ff000, 0x477fffff, 0x47800000, 0xc77ff000,  // fp16 max, overflow boundary (65520)
      0x38800000, 0x387fffff, 0x33000000, 0x33000001, 0x32ffffff, 0x33800000, 0x337fffff,  // fp16 subnormal edges
      0x3f808000, 0x3f818000, 0x3f808001, 0x3f807fff, 0x7f7f8000, 0x7f7fffff, 0xff7fffff,  // bf16 halfway, overflow
  };
  // Every fp16 value, the midpoints between neighbours (ties to even) and one ulp either side.
  for (uint32_t h = 0; h < 0x7c00; h++) {
    float low = half_to_float(static_cast<uint16_t>(h)), high = half_to_float(static_cast<uint16_t>(h + 1));
    float middle = static_cast<float>((double(low) + double(high)) / 2);  // exact in fp32
    for (float value : {low, middle, std::nextafter(middle, 0.0f), std::nextafter(middle, 1e30f)}) {
      inputs.push_back(bits_of(value));
      inputs.push_back(bits_of(value) | 0x80000000u);
    }
  }
  std::mt19937 generator(181);
  for (int i = 0; i < 200000; i++) inputs.push_back(generator());  // any bits: NaNs, denormals, all exponents
  for (int i = 0; i < 50000; i++) inputs.push_back((generator() & 0xffff0000u) | 0x8000u);  // bf16 ties
  uint32_t n = static_cast<uint32_t>(inputs.size());
  Guarded source = Guarded::of_raw(inputs, "source");
  Guarded to_half(size_t(n) * 2, "to half"), to_bf16(size_t(n) * 2, "to bf16");
  context().run([&](vk::Recorder& r) {
    kernels::convert_f32_to_f16(r, source.range(), to_half.range(), n);
    kernels::convert_f32_to_bf16(r, source.range(), to_bf16.range(), n);
  });
  std::vector<float> values(n);
  for (uint32_t i = 0; i < n; i++) values[i] = float_of(inputs[i]);
  std::vector<uint16_t> expected_half(n), expected_bf16(n);
  ref::convert_f32_to_f16(values.data(), expected_half.data(), n);
  ref::convert_f32_to_bf16(values.data(), expected_bf16.data(), n);
  auto half_bits = to_half.read<uint16_t>(), bf16_bits = to_bf16.read<uint16_t>();
  size_t half_mismatches = 0, bf16_mismatches = 0, first_half = 0, first_bf16 = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (half_bits[i] != expected_half[i] && half_mismatches++ == 0) first_half = i;
    if (bf16_bits[i] != expected_bf16[i] && bf16_mismatches++ == 0) first_bf16 = i;
  }
  INFO("first fp16 mismatch: input " << std::hex << inputs[first_half] << " gave " << half_bits[first_half]
                                     << ", expected " << expected_half[first_half]);
  INFO("first bf16 mismatch: input " << std::hex << inputs[first_bf16] << " gave " << bf16_bits[first_bf16]
                                     << ", expected " << expected_bf16[first_bf16]);
  CHECK(half_mismatches == 0);
  CHECK(bf16_mismatches == 0);
  // Odd element counts end mid-word: the guard catches a 32-bit store of the last element.
  CHECK(to_half.guard_intact());
  CHECK(to_bf16.guard_intact());
  Guarded odd(7 * 2, "odd");
  context().run([&](vk::Recorder& r) { kernels::convert_f32_to_f16(r, source.range(), odd.range(), 7); });
  CHECK(odd.guard_intact());
  auto odd_bits = odd.read<uint16_t>();
  for (uint32_t i = 0; i < 7; i++) CHECK(odd_bits[i] == expected_half[i]);
}

}  // TEST_SUITE
