#include "engine/quant/formats.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/base/error.hpp"
#include "engine/base/half.hpp"

namespace vkt::quant {

const std::array<float, 16>& nf4_table() {
  // bitsandbytes functional.py get_4bit_type("nf4") (= create_normal_map(0.9677083, True)),
  // divided by its largest magnitude, which is 1.0, so unchanged.
  static const std::array<float, 16> table = {
      -1.0f,
      -0.6961928009986877f,
      -0.5250730514526367f,
      -0.39491748809814453f,
      -0.28444138169288635f,
      -0.18477343022823334f,
      -0.09105003625154495f,
      0.0f,
      0.07958029955625534f,
      0.16093020141124725f,
      0.24611230194568634f,
      0.33791524171829224f,
      0.44070982933044434f,
      0.5626170039176941f,
      0.7229568362236023f,
      1.0f,
  };
  return table;
}

const std::array<float, 15>& nf4_thresholds() {
  // The literals of bitsandbytes' dQuantizeNF4 (csrc/kernels.cu), sorted: threshold k separates
  // code k from code k+1. They are fp32 literals there too.
  static const std::array<float, 15> thresholds = {
      -0.8480964004993439f,  -0.6106329262256622f,   -0.4599952697753906f, -0.33967943489551544f, -0.23460740596055984f,
      -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f, 0.1202552504837513f,   0.2035212516784668f,
      0.2920137718319893f,   0.3893125355243683f,    0.5016634166240692f,  0.6427869200706482f,   0.8614784181118011f,
  };
  return thresholds;
}

uint8_t nf4_code(float normalized) {
  // The comparison tree is a binary search over the sorted thresholds with strict `>`: its
  // leaf is the count of thresholds below x (0 for NaN, where every comparison is false).
  uint8_t code = 0;
  for (float threshold : nf4_thresholds()) code += normalized > threshold ? 1 : 0;
  return code;
}

namespace {

// torch.linspace(start, end, steps, dtype=torch.float32) as PyTorch's CPU kernel computes it:
// step = (end - start) / (steps - 1) in fp32; the first steps/2 values count up from start
// (start + step*i), the others count down from end (end - step*(steps-1-i)), each product
// rounded to fp32 before the add.
std::vector<float> linspace_f32(float start, float end, int steps) {
  float step = (end - start) / static_cast<float>(steps - 1);
  int halfway = steps / 2;
  std::vector<float> values(static_cast<size_t>(steps));
  for (int i = 0; i < steps; i++) {
    values[static_cast<size_t>(i)] = i < halfway ? start + rounded(step * static_cast<float>(i))
                                                 : end - rounded(step * static_cast<float>(steps - 1 - i));
  }
  return values;
}

std::array<float, 256> build_dynamic_map() {
  // create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for exponent i = 0..6,
  // 2^i + 1 boundaries linspace(0.1, 1) give 2^i means (b[j] + b[j+1]) / 2, scaled by
  // 10^(i-6) in fp32 (a torch fp32 tensor times a Python float), each with both signs; with
  // 7 non-sign bits and 7 exponent bits there are no "additional items"; then 0 and 1.0 are
  // appended and everything is sorted. 2 * 127 + 2 = 256 values.
  static const double powers_of_ten[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};
  std::vector<float> data;
  for (int i = 0; i < 7; i++) {
    std::vector<float> boundaries = linspace_f32(0.1f, 1.0f, (1 << i) + 1);
    float scale = static_cast<float>(powers_of_ten[i]);
    for (size_t j = 0; j + 1 < boundaries.size(); j++) {
      float mean = (boundaries[j] + boundaries[j + 1]) / 2.0f;
      float value = scale * mean;
      data.push_back(value);
      data.push_back(-value);
    }
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  VKT_ASSERT(data.size() == 256, "the dynamic map has 256 entries");
  std::sort(data.begin(), data.end());
  std::array<float, 256> map{};
  std::copy(data.begin(), data.end(), map.begin());
  return map;
}

}  // namespace

const std::array<float, 256>& dynamic_map() {
  static const std::array<float, 256> map = build_dynamic_map();
  return map;
}

uint8_t dynamic_map_code(float x) {
  const auto& map = dynamic_map();
  // Seven halving steps from 127 visit only odd indices and end on an even index p in [0, 254];
  // x then lies between p's neighbours on each side, which are compared through midpoints.
  int p = 127;
  for (int step = 64; step > 0; step >>= 1) p += x > map[static_cast<size_t>(p)] ? step : -step;
  float value = map[static_cast<size_t>(p)];
  if (x > value) {
    float midpoint = (map[static_cast<size_t>(p + 1)] + value) * 0.5f;
    return static_cast<uint8_t>(x > midpoint ? p + 1 : p);
  }
  if (p == 0) return 0;
  float midpoint = (map[static_cast<size_t>(p - 1)] + value) * 0.5f;
  return static_cast<uint8_t>(x < midpoint ? p - 1 : p);
}

float round_ratio(uint64_t numerator, uint64_t denominator, int exponent) {
  VKT_ASSERT(denominator > 0 && denominator < (uint64_t{1} << 33) && numerator < (uint64_t{1} << 63),
             "round_ratio operands out of range");
  if (numerator == 0) return 0.0f;
  uint64_t quotient = numerator / denominator, remainder = numerator % denominator;
  uint64_t mantissa;
  bool round_bit, sticky;
  if (quotient >= (uint64_t{1} << 24)) {
    int shift = std::bit_width(quotient) - 24;
    mantissa = quotient >> shift;
    round_bit = (quotient >> (shift - 1)) & 1;
    sticky = (quotient & ((uint64_t{1} << (shift - 1)) - 1)) != 0 || remainder != 0;
    exponent += shift;
  } else {
    // Long division: one more quotient bit per step until the mantissa has 24 bits.
    mantissa = quotient;
    while (mantissa < (uint64_t{1} << 23)) {
      remainder <<= 1;
      uint64_t bit = remainder >= denominator ? 1 : 0;
      remainder -= bit * denominator;
      mantissa = (mantissa << 1) | bit;
      exponent--;
    }
    remainder <<= 1;
    round_bit = remainder >= denominator;
    if (round_bit) remainder -= denominator;
    sticky = remainder != 0;
  }
  // value = (mantissa + round/2 + sticky) * 2^exponent with mantissa in [2^23, 2^24): its fp32
  // exponent field is exponent + 150.
  int field = exponent + 150;
  if (field < 1) {  // subnormal: shift the extra bits into round and sticky
    int shift = 1 - field;
    if (shift > 25) {
      mantissa = 0;
      round_bit = false;
      sticky = true;
    } else {
      sticky = sticky || round_bit || (mantissa & ((uint64_t{1} << (shift - 1)) - 1)) != 0;
      round_bit = (mantissa >> (shift - 1)) & 1;
      mantissa >>= shift;
    }
    field = 1;
  }
  if (round_bit && (sticky || (mantissa & 1))) mantissa++;
  if (mantissa == (uint64_t{1} << 24)) {
    mantissa >>= 1;
    field++;
  }
  if (field >= 255) return INFINITY;
  uint32_t bits = mantissa < (uint64_t{1} << 23)
                      ? static_cast<uint32_t>(mantissa)
                      : (static_cast<uint32_t>(field) << 23) | static_cast<uint32_t>(mantissa - (uint64_t{1} << 23));
  return bits_float(bits);
}

namespace {
// |x| = mantissa * 2^exponent with mantissa in [2^23, 2^24) (subnormals normalized); x != 0.
void decompose(float x, uint64_t& mantissa, int& exponent) {
  uint32_t bits = float_bits(x) & 0x7fffffffu;
  uint32_t field = bits >> 23;
  mantissa = bits & 0x7fffffu;
  if (field == 0) {
    int shift = 24 - std::bit_width(mantissa);
    mantissa <<= shift;
    exponent = -149 - shift;
  } else {
    mantissa |= 0x800000u;
    exponent = static_cast<int>(field) - 150;
  }
}
}  // namespace

float divide_exact(float a, float b) {
  VKT_ASSERT(b != 0 && std::isfinite(a) && std::isfinite(b), "divide_exact needs finite a and nonzero finite b");
  bool negative = std::signbit(a) != std::signbit(b);
  if (a == 0) return negative ? -0.0f : 0.0f;
  uint64_t mantissa_a, mantissa_b;
  int exponent_a, exponent_b;
  decompose(a, mantissa_a, exponent_a);
  decompose(b, mantissa_b, exponent_b);
  float magnitude = round_ratio(mantissa_a << 24, mantissa_b, exponent_a - exponent_b - 24);
  return negative ? -magnitude : magnitude;
}

float absmax_mean(const float* values, size_t count) {
  if (count == 0) return 0.0f;
  uint32_t max_bits = 0;
  for (size_t i = 0; i < count; i++) {
    VKT_ASSERT(values[i] >= 0 && std::isfinite(values[i]), "absmax_mean needs non-negative finite values");
    max_bits = std::max(max_bits, float_bits(values[i]));
  }
  if (max_bits == 0) return 0.0f;
  int length = std::bit_width(static_cast<uint64_t>(count));  // k: count < 2^k
  int max_field = std::max<int>(static_cast<int>(max_bits >> 23), 1);
  uint64_t sum = 0;
  for (size_t i = 0; i < count; i++) {
    uint32_t bits = float_bits(values[i]);
    uint32_t field = bits >> 23;
    uint64_t mantissa = (bits & 0x7fffffu) | (field > 0 ? 0x800000u : 0u);
    // value * 2^(189 - k - max_field) = mantissa * 2^shift; the largest term stays < 2^(63-k).
    int shift = std::max<int>(static_cast<int>(field), 1) - max_field + 39 - length;
    sum += shift >= 0 ? mantissa << shift : (shift > -64 ? mantissa >> -shift : 0);
  }
  return round_ratio(sum, count, -(189 - length - max_field));
}

int round_half_away(float q) {
  float magnitude = std::fabs(q);
  float whole = std::floor(magnitude);
  int rounded_magnitude = static_cast<int>(whole) + (magnitude - whole >= 0.5f ? 1 : 0);  // exact difference
  return q < 0 ? -rounded_magnitude : rounded_magnitude;
}

}  // namespace vkt::quant
