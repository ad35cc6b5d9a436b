// Quantization formats: NF4 with bitsandbytes' double quantization, INT8, INT4, INT4-asym.
// CPU (engine/quant) against hand-derived expectations and against an independent numpy
// re-implementation of bitsandbytes (tests/reference/nf4_bnb_reference.py -> tests/data/
// nf4_reference.bin); GPU kernels (engine/kernels/quantize.hpp) against the CPU bit for bit;
// round trips against each format's error bound.
//
// Tolerances: codes, statistics and dequantized values are compared bit for bit (memcmp /
// max-abs 0): every step is deterministic fp32 arithmetic (products and sums correctly rounded,
// divisions correctly rounded on both sides), so any difference is a bug, not rounding noise.
// Round trips are checked per element against the format's worst case, derived in each case.
#include <doctest/doctest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>

#include "engine/base/error.hpp"
#include "engine/base/half.hpp"
#include "engine/kernels/quantize.hpp"
#include "engine/quant/bitsandbytes.hpp"
#include "engine/quant/device.hpp"
#include "engine/quant/formats.hpp"
#include "engine/quant/ggml_device.hpp"
#include "engine/quant/quantize.hpp"
#include "tests/kernel_harness.hpp"

using namespace vkt;
using kernels::WeightFormat;
using test::context;
using test::Guarded;

namespace {

// Weights like a linear layer's: normal values whose scale varies from block to block over
// several decades (so block statistics and the double quantization see a wide range).
std::vector<float> weight_like(size_t n, uint32_t seed, float decades = 3.0f, uint32_t block = 64) {
  std::mt19937 generator(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> exponent(-decades, 0.0f);
  std::vector<float> values(n);
  float scale = 1.0f;
  for (size_t i = 0; i < n; i++) {
    if (i % block == 0) scale = std::pow(10.0f, exponent(generator));
    values[i] = normal(generator) * scale;
  }
  return values;
}

float next_up(float x) { return std::nextafter(x, INFINITY); }
float next_down(float x) { return std::nextafter(x, -INFINITY); }
uint32_t bits_of(float x) { return float_bits(x); }

template <class T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// First index where two arrays differ (for messages), or -1.
template <class T>
long first_difference(const std::vector<T>& a, const std::vector<T>& b) {
  for (size_t i = 0; i < std::min(a.size(), b.size()); i++)
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) return static_cast<long>(i);
  return a.size() == b.size() ? -1 : static_cast<long>(std::min(a.size(), b.size()));
}

#define CHECK_SAME(actual, expected)                                                                       \
  do {                                                                                                     \
    INFO("first difference at " << first_difference((actual), (expected)) << " of " << (expected).size()); \
    CHECK(same_bytes((actual), (expected)));                                                               \
  } while (0)

// The 4-bit code of element i (first element of a byte in the high nibble).
int nibble(const std::vector<uint8_t>& data, size_t i) { return (i & 1) ? data[i / 2] & 15 : data[i / 2] >> 4; }

// ---- GPU quantization into Guarded buffers ----

struct GpuQuantized {
  quant::QuantizedWeight weight;  // what the kernels wrote
  bool guards_intact = true;
};

GpuQuantized quantize_on_gpu(const std::vector<float>& x, uint32_t rows, uint32_t cols, WeightFormat format,
                             const quant::QuantOptions& options) {
  quant::QuantizedWeight shape;
  shape.format = format;
  shape.rows = rows;
  shape.cols = cols;
  shape.block_size = options.block_size;
  shape.double_quant = format == WeightFormat::nf4 && options.double_quant;
  uint64_t n = shape.elements(), blocks = shape.blocks();
  uint64_t data_bytes = format == WeightFormat::int8 ? shape.padded_elements() : shape.padded_elements() / 2;
  bool dq = shape.double_quant;
  Guarded input = Guarded::of(x, "x");
  Guarded data(data_bytes, "codes");
  Guarded scales(dq ? 0 : blocks * 4, "scales");
  Guarded zeros(format == WeightFormat::int4_asym ? blocks : 0, "zeros");
  Guarded absmax_codes(dq ? blocks : 0, "absmax_codes");
  Guarded absmax_scales(dq ? shape.groups() * 4 : 0, "absmax_scales");
  Guarded workspace(dq ? blocks * 4 : 0, "raw_absmax");
  Guarded offset(dq ? 4 : 0, "offset");
  kernels::WeightRef ref;
  ref.format = format;
  ref.block_size = options.block_size;
  ref.double_quant = dq;
  ref.data = data.range();
  ref.scales = scales.range();
  ref.zeros = zeros.range();
  ref.absmax_codes = absmax_codes.range();
  ref.absmax_scales = absmax_scales.range();
  context().run(
      [&](vk::Recorder& r) { kernels::quantize_weight(r, input.range(), n, ref, workspace.range(), offset.range()); });
  GpuQuantized result;
  result.weight = shape;
  result.weight.data = data.read<uint8_t>();
  if (!dq && kernels::is_quantized(format)) result.weight.scales = scales.read<float>();
  if (format == WeightFormat::int4_asym) result.weight.zeros = zeros.read<uint8_t>();
  if (dq) {
    result.weight.absmax_codes = absmax_codes.read<uint8_t>();
    result.weight.absmax_scales = absmax_scales.read<float>();
    result.weight.absmax_offset = offset.read<float>()[0];
  }
  for (const Guarded* g : {&input, &data, &scales, &zeros, &absmax_codes, &absmax_scales, &workspace, &offset})
    result.guards_intact = result.guards_intact && g->guard_intact();
  return result;
}

void check_same_weight(const quant::QuantizedWeight& gpu, const quant::QuantizedWeight& cpu) {
  CHECK_SAME(gpu.data, cpu.data);
  CHECK_SAME(gpu.scales, cpu.scales);
  CHECK_SAME(gpu.zeros, cpu.zeros);
  CHECK_SAME(gpu.absmax_codes, cpu.absmax_codes);
  CHECK_SAME(gpu.absmax_scales, cpu.absmax_scales);
  CHECK(bits_of(gpu.absmax_offset) == bits_of(cpu.absmax_offset));
}

// ---- the bitsandbytes reference fixture (tests/reference/nf4_bnb_reference.py) ----

struct ReferenceTensor {
  uint32_t n = 0, block_size = 0, blocks = 0, groups = 0;
  float offset = 0;
  std::vector<float> input, absmax, absmax2, dequantized;
  std::vector<uint8_t> codes, absmax_codes;
};

struct ReferenceFile {
  std::vector<float> nf4_table, dynamic_map;
  std::vector<ReferenceTensor> tensors;
};

ReferenceFile read_reference() {
  auto path = test::source_dir() / "tests" / "data" / "nf4_reference.bin";
  std::ifstream file(path, std::ios::binary);
  REQUIRE_MESSAGE(file.good(), "missing " << path << " (run tests/reference/nf4_bnb_reference.py)");
  auto read_bytes = [&](void* out, size_t bytes) {
    file.read(static_cast<char*>(out), static_cast<std::streamsize>(bytes));
    REQUIRE(file.good());
  };
  auto u32 = [&] {
    uint32_t v;
    read_bytes(&v, 4);
    return v;
  };
  auto floats = [&](size_t count) {
    std::vector<float> v(count);
    read_bytes(v.data(), count * 4);
    return v;
  };
  auto bytes = [&](size_t count) {
    std::vector<uint8_t> v(count);
    read_bytes(v.data(), count);
    return v;
  };
  char magic[8];
  read_bytes(magic, 8);
  REQUIRE(std::memcmp(magic, "VKTNF4RF", 8) == 0);
  REQUIRE(u32() == 1);  // version
  uint32_t count = u32();
  REQUIRE(u32() == 16);
  REQUIRE(u32() == 256);
  ReferenceFile reference;
  reference.nf4_table = floats(16);
  reference.dynamic_map = floats(256);
  for (uint32_t t = 0; t < count; t++) {
    ReferenceTensor tensor;
    tensor.n = u32();
    tensor.block_size = u32();
    tensor.blocks = u32();
    tensor.groups = u32();
    read_bytes(&tensor.offset, 4);
    tensor.input = floats(tensor.n);
    tensor.codes = bytes((tensor.n + 1) / 2);
    tensor.absmax = floats(tensor.blocks);
    tensor.absmax_codes = bytes(tensor.blocks);
    tensor.absmax2 = floats(tensor.groups);
    tensor.dequantized = floats(tensor.n);
    reference.tensors.push_back(std::move(tensor));
  }
  return reference;
}

// Largest |x - NF4[code(x)]| over x in [-1, 1], from the table and thresholds: for x between
// thresholds k-1 and k the code is k, so the error is at most the distance to either threshold.
double nf4_worst_error() {
  const auto& table = quant::nf4_table();
  const auto& thresholds = quant::nf4_thresholds();
  double worst = std::max(thresholds[0] - table[0], table[15] - thresholds[14]);
  for (size_t k = 0; k < 15; k++)
    worst = std::max({worst, double(thresholds[k]) - table[k], double(table[k + 1]) - thresholds[k]});
  return worst;
}

// Largest |v - map[code(v)]| over v in [-1, 1]: half the largest gap, or the distance from -1 to
// the most negative entry (-0.99296874).
double dynamic_map_worst_error() {
  const auto& map = quant::dynamic_map();
  double worst = 1.0 + map[0];
  for (size_t i = 0; i + 1 < 256; i++) worst = std::max(worst, (double(map[i + 1]) - map[i]) / 2);
  return worst;
}

}  // namespace

TEST_SUITE("kernels_quant") {

// ============================== NF4 codes (CPU, hand-derived) ==============================

TEST_CASE("quantize_nf4: the code table and thresholds are bitsandbytes'") {
  const auto& table = quant::nf4_table();
  CHECK(table[0] == -1.0f);
  CHECK(table[7] == 0.0f);
  CHECK(table[15] == 1.0f);
  CHECK(std::is_sorted(table.begin(), table.end()));
  // bitsandbytes' tree literals are the midpoints of neighbouring codes (computed in double), so
  // each fp32 threshold is within an ulp of the fp32 midpoint and strictly between the codes.
  const auto& thresholds = quant::nf4_thresholds();
  for (size_t k = 0; k < 15; k++) {
    CAPTURE(k);
    double midpoint = (double(table[k]) + table[k + 1]) / 2;
    CHECK(table[k] < thresholds[k]);
    CHECK(thresholds[k] < table[k + 1]);
    CHECK(std::fabs(thresholds[k] - midpoint) <= std::fabs(next_up(thresholds[k]) - thresholds[k]));
  }
  // They are the CUDA `f` literals: each decimal rounded once to fp32. The long-double parse
  // keeps enough digits to round once; four literals are exact fp32 ties as doubles, so a parse
  // through double (what Python's float32(float) does) lands one ulp away from CUDA's value.
  const char* literals[15] = {"-0.8480964004993439",   "-0.6106329262256622",  "-0.4599952697753906",
                              "-0.33967943489551544",  "-0.23460740596055984", "-0.13791173323988914",
                              "-0.045525018125772476", "0.03979014977812767",  "0.1202552504837513",
                              "0.2035212516784668",    "0.2920137718319893",   "0.3893125355243683",
                              "0.5016634166240692",    "0.6427869200706482",   "0.8614784181118011"};
  int double_rounding_traps = 0;
  for (size_t k = 0; k < 15; k++) {
    CAPTURE(literals[k]);
    CHECK(thresholds[k] == static_cast<float>(std::strtold(literals[k], nullptr)));
    double_rounding_traps += thresholds[k] != static_cast<float>(std::strtod(literals[k], nullptr)) ? 1 : 0;
  }
  CHECK(double_rounding_traps == 4);
}

TEST_CASE("quantize_nf4: values on codes, on thresholds and just past them") {
  // With absmax exactly 1 (or a power of two) the normalized value x * (1/absmax) is x exactly.
  for (float absmax : {1.0f, 4.0f, 0.125f}) {
    CAPTURE(absmax);
    std::vector<float> block(64, 0.0f);
    for (int k = 0; k < 16; k++) block[static_cast<size_t>(k)] = quant::nf4_table()[static_cast<size_t>(k)] * absmax;
    for (int k = 0; k < 16; k++)
      block[static_cast<size_t>(16 + k)] = quant::nf4_table()[static_cast<size_t>(15 - k)] * absmax;
    std::vector<uint8_t> codes(32);
    float stored_absmax = 0;
    quant::quantize_nf4(block.data(), 64, 64, codes.data(), &stored_absmax);
    CHECK(stored_absmax == absmax);
    for (int k = 0; k < 16; k++) {
      CHECK(nibble(codes, static_cast<size_t>(k)) == k);
      CHECK(nibble(codes, static_cast<size_t>(16 + k)) == 15 - k);
    }
    for (size_t i = 32; i < 64; i++) CHECK(nibble(codes, i) == 7);  // zeros
  }
  // On a threshold: the lower code (bitsandbytes compares with strict '>'); one ulp above: the
  // upper code; one ulp below: the lower code.
  const auto& thresholds = quant::nf4_thresholds();
  std::vector<float> block(64, 0.0f);
  block[0] = 1.0f;
  for (size_t k = 0; k < 15; k++) {
    block[1 + 3 * k] = thresholds[k];
    block[2 + 3 * k] = next_up(thresholds[k]);
    block[3 + 3 * k] = next_down(thresholds[k]);
  }
  std::vector<uint8_t> codes(32);
  float absmax = 0;
  quant::quantize_nf4(block.data(), 64, 64, codes.data(), &absmax);
  for (size_t k = 0; k < 15; k++) {
    CAPTURE(k);
    CHECK(nibble(codes, 1 + 3 * k) == int(k));
    CHECK(nibble(codes, 2 + 3 * k) == int(k) + 1);
    CHECK(nibble(codes, 3 + 3 * k) == int(k));
  }
  CHECK(quant::nf4_code(NAN) == 0);  // every comparison of the tree is false
  CHECK(quant::nf4_code(-0.0f) == 7);
  CHECK(quant::nf4_code(2.0f) == 15);
  CHECK(quant::nf4_code(-2.0f) == 0);
}

TEST_CASE("quantize_nf4: zero block, extremes, nibble order and tail padding") {
  // Block 0: zeros. Block 1: [1, -1, 0, ...]. Block 2 (3 elements, then padding): [-3, 1.5, 0.2].
  std::vector<float> x(64 + 64 + 3, 0.0f);
  x[64] = 1.0f;
  x[65] = -1.0f;
  x[128] = -3.0f;
  x[129] = 1.5f;
  x[130] = 0.2f;
  quant::QuantOptions options;
  options.double_quant = false;
  auto q = quant::quantize(x.data(), 1, static_cast<uint32_t>(x.size()), WeightFormat::nf4, options);
  REQUIRE(q.data.size() == 96);  // 3 whole blocks
  REQUIRE(q.scales.size() == 3);
  // A zero block: bitsandbytes' 0 * (1/0) = NaN falls to code 0 in every nibble; absmax 0.
  for (size_t i = 0; i < 32; i++) CHECK(q.data[i] == 0x00);
  CHECK(q.scales[0] == 0.0f);
  // First element in the high nibble: 1 -> 15, -1 -> 0; zeros -> code 7.
  CHECK(q.data[32] == 0xF0);
  for (size_t i = 33; i < 64; i++) CHECK(q.data[i] == 0x77);
  CHECK(q.scales[1] == 1.0f);
  // absmax 3 (a negative extreme): -3 -> 0; 1.5 * fl(1/3) = 0.5 < 0.50166 -> 12; 0.2/3 = 0.0667
  // lies in (0.0398, 0.1203] -> 8; the padding is 0 -> 7.
  CHECK(q.scales[2] == 3.0f);
  CHECK(q.data[64] == 0x0C);
  CHECK(q.data[65] == 0x87);
  for (size_t i = 66; i < 96; i++) CHECK(q.data[i] == 0x77);
  auto back = quant::dequantize(q);
  for (size_t i = 0; i < 64; i++) CHECK(back[i] == 0.0f);
  CHECK(back[64] == 1.0f);
  CHECK(back[65] == -1.0f);
  CHECK(back[128] == -3.0f);
  CHECK(back[129] == quant::nf4_table()[12] * 3.0f);
}

// ============================== the dynamic map (CPU, hand-derived) ==============================

TEST_CASE("double_quantize: the dynamic map is bitsandbytes' signed map") {
  const auto& map = quant::dynamic_map();
  REQUIRE(map.size() == 256);
  for (size_t i = 0; i + 1 < 256; i++) CHECK(map[i] < map[i + 1]);  // sorted, no duplicates
  CHECK(map[127] == 0.0f);
  CHECK(map[255] == 1.0f);  // appended; not normalized, so the most negative value is not -1
  for (size_t i = 0; i < 127; i++) CHECK(map[i] == -map[254 - i]);  // each mean with both signs
  // Hand values: i = 0 gives 1e-6 * mean(linspace(0.1, 1, 2)) = 5.5e-7; i = 1 gives 1e-5 * {0.325,
  // 0.775}; the extremes are the last mean of linspace(0.1, 1, 65): (1 - 0.9/64 + 1) / 2.
  auto near = [](float actual, double expected) { return std::fabs(actual - expected) <= 2e-7 * std::fabs(expected); };
  CHECK(near(map[128], 5.5e-7));
  CHECK(near(map[129], 3.25e-6));
  CHECK(near(map[130], 7.75e-6));
  CHECK(near(map[254], (1.0 - 0.9 / 64 + 1.0) / 2));
  CHECK(near(map[0], -(1.0 - 0.9 / 64 + 1.0) / 2));
  // Decade i = 0..6 holds 2^i positive values in [0.1, 1) * 10^(i-6).
  for (int i = 0; i < 7; i++) {
    double low = 0.1 * std::pow(10.0, i - 6), high = std::pow(10.0, i - 6);
    int count = 0;
    for (float value : map) count += value >= low * 0.999 && value < high ? 1 : 0;
    CAPTURE(i);
    CHECK(count == (1 << i));
  }
}

TEST_CASE("double_quantize: the nearest map value wins, midpoints take the even index") {
  const auto& map = quant::dynamic_map();
  for (int i = 0; i < 256; i++) CHECK(quant::dynamic_map_code(map[static_cast<size_t>(i)]) == i);
  // bitsandbytes' search visits odd pivots and stops on an even index p; a value exactly on the
  // fp32 midpoint (a + b) * 0.5f of two neighbours then stays on p: the even one.
  for (int i = 0; i < 255; i++) {
    CAPTURE(i);
    float a = map[static_cast<size_t>(i)], b = map[static_cast<size_t>(i + 1)];
    float midpoint = (a + b) * 0.5f;
    REQUIRE(a < midpoint);
    REQUIRE(midpoint < b);
    CHECK(quant::dynamic_map_code(midpoint) == (i % 2 == 0 ? i : i + 1));
    CHECK(quant::dynamic_map_code(next_up(midpoint)) == i + 1);
    CHECK(quant::dynamic_map_code(next_down(midpoint)) == i);
  }
  CHECK(quant::dynamic_map_code(1.5f) == 255);
  CHECK(quant::dynamic_map_code(-1.0f) == 0);
  CHECK(quant::dynamic_map_code(NAN) == 0);
}

// ============================== exact arithmetic ==============================

TEST_CASE("absmax_mean: integer division and the fixed-point mean are exact") {
  // round_ratio through divide_exact must equal IEEE division, including subnormal quotients and
  // operands, for operands spread over the whole exponent range.
  std::mt19937 generator(7);
  std::uniform_int_distribution<uint32_t> any_bits(0, 0x7f7fffffu);
  size_t mismatches = 0, checked = 0;
  auto check_division = [&](float a, float b) {
    if (b == 0 || !std::isfinite(a) || !std::isfinite(b)) return;
    checked++;
    if (bits_of(quant::divide_exact(a, b)) != bits_of(a / b)) mismatches++;
  };
  for (int i = 0; i < 100000; i++) {
    float a = bits_float(any_bits(generator)), b = bits_float(any_bits(generator));
    check_division(a, b);
    check_division(-a, b);
    check_division(1.0f, b);
  }
  for (float b : {3.0f, 7.0f, 15.0f, 127.0f, FLT_MIN, FLT_TRUE_MIN, FLT_MAX, 1e-30f})
    for (float a : {1.0f, 2.0f, 0.1f, FLT_MAX, FLT_MIN, FLT_TRUE_MIN, 3.0f, 1e30f}) check_division(a, b);
  CHECK(checked > 300000);
  CHECK(mismatches == 0);

  // The mean is the fp32 nearest to the exact mean, ties to even.
  auto mean = [](std::vector<float> v) { return quant::absmax_mean(v.data(), v.size()); };
  float ulp = std::ldexp(1.0f, -23);
  CHECK(mean({1.0f, 2.0f}) == 1.5f);
  CHECK(mean({1.0f, 1.0f + ulp}) == 1.0f);                      // 1 + ulp/2: a tie, to the even 1.0
  CHECK(mean({1.0f + ulp, 1.0f + 2 * ulp}) == 1.0f + 2 * ulp);  // 1 + 1.5 ulp: a tie, to the even
  CHECK(mean({1.0f, 1.0f, 1.0f + ulp}) == 1.0f);                // 1 + ulp/3
  CHECK(mean({0.0f, 0.0f}) == 0.0f);
  CHECK(mean({3.0f}) == 3.0f);
  CHECK(mean(std::vector<float>(1000, 0.1f)) == 0.1f);  // a running fp32 sum would drift
  // Random sets (values within a few decades, as block absmax values are): the fixed-point sum
  // is exact there, so it must equal the long-double mean rounded to fp32 (the long-double sum of
  // <= 2^11 fp32 values within 2^20 of each other is exact).
  for (uint32_t seed = 0; seed < 200; seed++) {
    std::mt19937 g(seed);
    std::uniform_real_distribution<float> exponent(-6.0f, 0.0f);
    std::vector<float> values(1 + seed * 7);
    long double sum = 0;
    for (float& v : values) {
      v = std::pow(2.0f, exponent(g)) * 0.37f;
      sum += v;
    }
    CAPTURE(seed);
    CHECK(mean(values) == static_cast<float>(sum / values.size()));
  }
}

TEST_CASE("absmax_mean: GPU equals CPU bit for bit") {
  for (size_t count : {size_t{1}, size_t{2}, size_t{255}, size_t{257}, size_t{1000}, size_t{4099}}) {
    for (uint32_t seed : {1u, 2u}) {
      std::mt19937 g(static_cast<uint32_t>(count) * 31 + seed);
      std::uniform_real_distribution<float> exponent(seed == 1 ? -3.0f : -30.0f, 2.0f);
      std::vector<float> values(count);
      for (float& v : values) v = std::pow(10.0f, exponent(g));
      if (count > 3) values[count / 2] = 0.0f;  // zero blocks happen
      Guarded input = Guarded::of(values, "absmax"), mean(4, "mean");
      context().run(
          [&](vk::Recorder& r) { kernels::absmax_mean(r, input.range(), static_cast<uint32_t>(count), mean.range()); });
      CAPTURE(count);
      CAPTURE(seed);
      CHECK(bits_of(mean.floats()[0]) == bits_of(quant::absmax_mean(values.data(), count)));
      CHECK(mean.guard_intact());
    }
  }
  // Exact ties of the mean round to even on the GPU too (1 + ulp/2 -> 1; 1 + 1.5 ulp -> 1 + 2 ulp).
  float ulp = std::ldexp(1.0f, -23);
  std::vector<std::pair<std::vector<float>, float>> ties = {{{1.0f, 1.0f + ulp}, 1.0f},
                                                            {{1.0f + ulp, 1.0f + 2 * ulp}, 1.0f + 2 * ulp},
                                                            {std::vector<float>(300, 0.0f), 0.0f}};
  for (const auto& [values, expected] : ties) {
    Guarded input = Guarded::of(values, "absmax"), mean(4, "mean");
    uint32_t count = static_cast<uint32_t>(values.size());
    context().run([&](vk::Recorder& r) { kernels::absmax_mean(r, input.range(), count, mean.range()); });
    CHECK(mean.floats()[0] == expected);
  }
}

// ============================== NF4 against bitsandbytes' algorithm ==============================

TEST_CASE("quantize_nf4: matches the bitsandbytes reference fixture") {
  // tests/reference/nf4_bnb_reference.py implements quantize_4bit(nf4, compress_statistics=True)
  // and dequantize_4bit in numpy from bitsandbytes' published algorithm (its comparison tree and
  // binary search written out as in csrc/kernels.cu): everything must agree bit for bit.
  ReferenceFile reference = read_reference();
  CHECK(std::memcmp(reference.nf4_table.data(), quant::nf4_table().data(), 16 * 4) == 0);
  CHECK(std::memcmp(reference.dynamic_map.data(), quant::dynamic_map().data(), 256 * 4) == 0);
  REQUIRE(reference.tensors.size() == 3);
  for (const ReferenceTensor& tensor : reference.tensors) {
    CAPTURE(tensor.n);
    REQUIRE(tensor.block_size == 64);
    auto q = quant::quantize(tensor.input.data(), 1, tensor.n, WeightFormat::nf4, {64, true});
    // bitsandbytes stores (n+1)/2 bytes; ours holds whole blocks, whose extra bytes are padding.
    std::vector<uint8_t> codes(q.data.begin(), q.data.begin() + (tensor.n + 1) / 2);
    CHECK_SAME(codes, tensor.codes);
    std::vector<float> raw_absmax(q.blocks());
    std::vector<uint8_t> scratch(q.padded_elements() / 2);
    quant::quantize_nf4(tensor.input.data(), tensor.n, 64, scratch.data(), raw_absmax.data());
    CHECK_SAME(raw_absmax, tensor.absmax);
    CHECK(bits_of(q.absmax_offset) == bits_of(tensor.offset));
    CHECK_SAME(q.absmax_codes, tensor.absmax_codes);
    CHECK_SAME(q.absmax_scales, tensor.absmax2);
    CHECK_SAME(quant::dequantize(q), tensor.dequantized);
    // And the GPU from the same input.
    GpuQuantized gpu = quantize_on_gpu(tensor.input, 1, tensor.n, WeightFormat::nf4, {64, true});
    check_same_weight(gpu.weight, q);
    CHECK(gpu.guards_intact);
  }
}

TEST_CASE("from_bitsandbytes_nf4: checkpoint tensors load into the same QuantizedWeight") {
  ReferenceFile reference = read_reference();
  const ReferenceTensor& tensor = reference.tensors[2];  // the (33, 65) matrix
  quant::BitsandbytesNf4 source;
  source.rows = 33;
  source.cols = 65;
  source.packed = tensor.codes.data();
  source.packed_bytes = tensor.codes.size();
  source.quant_map = reference.nf4_table.data();
  source.absmax_codes = tensor.absmax_codes.data();
  source.nested_absmax = tensor.absmax2.data();
  source.nested_quant_map = reference.dynamic_map.data();
  source.nested_offset = tensor.offset;
  auto loaded = quant::from_bitsandbytes_nf4(source, "model.layers.0.mlp.up_proj");
  auto ours = quant::quantize(tensor.input.data(), 33, 65, WeightFormat::nf4, {64, true});
  check_same_weight(loaded, ours);
  CHECK(loaded.double_quant);
  CHECK_SAME(quant::dequantize(loaded), tensor.dequantized);
  // A nested map from another torch build (one entry an ulp off): decoded on load with that map.
  std::vector<float> other_map = reference.dynamic_map;
  other_map[200] = next_up(other_map[200]);
  source.nested_quant_map = other_map.data();
  auto decoded = quant::from_bitsandbytes_nf4(source, "w");
  CHECK_FALSE(decoded.double_quant);
  REQUIRE(decoded.scales.size() == tensor.blocks);
  for (size_t b = 0; b < tensor.blocks; b++) {
    float expected = quant::rounded(other_map[tensor.absmax_codes[b]] * tensor.absmax2[b / 256]) + tensor.offset;
    CHECK(bits_of(decoded.scales[b]) == bits_of(expected));
  }
  // Not NF4, or the wrong size: user errors.
  std::vector<float> fp4_map(16, 0.5f);
  source.quant_map = fp4_map.data();
  CHECK_THROWS_AS(quant::from_bitsandbytes_nf4(source, "w"), UserError);
  source.quant_map = nullptr;
  source.packed_bytes -= 1;
  CHECK_THROWS_AS(quant::from_bitsandbytes_nf4(source, "w"), UserError);
}

// ============================== GPU quantizers against the CPU ==============================

TEST_CASE("quantize_nf4: GPU equals CPU bit for bit") {
  struct Shape {
    uint32_t rows, cols, block_size;
    bool double_quant;
  };
  for (Shape shape :
       {Shape{1, 64 * 3 + 10, 64, true}, Shape{1, 1, 64, true}, Shape{1, 7, 64, false}, Shape{3, 33, 32, true},
        Shape{37, 519, 64, true}, Shape{5, 301, 128, false}, Shape{1, 64 * 300 + 37, 64, true}}) {
    CAPTURE(shape.rows);
    CAPTURE(shape.cols);
    CAPTURE(shape.block_size);
    CAPTURE(shape.double_quant);
    auto x = weight_like(uint64_t{shape.rows} * shape.cols, shape.cols * 7 + shape.rows, 4.0f, shape.block_size);
    if (x.size() > 200) std::fill(x.begin() + 64, x.begin() + 64 + shape.block_size, 0.0f);  // a zero block
    quant::QuantOptions options{shape.block_size, shape.double_quant};
    auto cpu = quant::quantize(x.data(), shape.rows, shape.cols, WeightFormat::nf4, options);
    GpuQuantized gpu = quantize_on_gpu(x, shape.rows, shape.cols, WeightFormat::nf4, options);
    check_same_weight(gpu.weight, cpu);
    CHECK(gpu.guards_intact);
  }
}

TEST_CASE("double_quantize: GPU equals CPU on equal, zero and spread absmax values") {
  // Constant absmax (a zero group: every absmax equals the mean), one group plus one block, and
  // values over many decades.
  std::vector<std::vector<float>> cases = {std::vector<float>(300, 0.25f), std::vector<float>(257, 0.0f)};
  std::vector<float> spread(1000);
  std::mt19937 g(3);
  std::uniform_real_distribution<float> exponent(-8.0f, 1.0f);
  for (float& v : spread) v = std::pow(10.0f, exponent(g));
  cases.push_back(spread);
  for (const auto& absmax : cases) {
    uint32_t blocks = static_cast<uint32_t>(absmax.size());
    uint32_t groups = (blocks + 255) / 256;
    Guarded input = Guarded::of(absmax, "absmax"), offset(4, "offset"), codes(blocks, "codes"),
            scales(groups * 4, "scales");
    context().run([&](vk::Recorder& r) {
      kernels::absmax_mean(r, input.range(), blocks, offset.range());
      kernels::double_quantize(r, input.range(), blocks, offset.range(), codes.range(), scales.range());
    });
    auto cpu = quant::double_quantize(absmax.data(), blocks);
    CAPTURE(blocks);
    CHECK(bits_of(offset.floats()[0]) == bits_of(cpu.offset));
    CHECK_SAME(codes.read<uint8_t>(), cpu.codes);
    CHECK_SAME(scales.read<float>(), cpu.scales);
    CHECK(codes.guard_intact());  // the tail word is rewritten with atomics that keep the guard bytes
    CHECK(scales.guard_intact());
  }
  // A constant absmax quantizes to code 0 with absmax2 0 and decodes to the offset exactly.
  auto constant = quant::double_quantize(cases[0].data(), 300);
  CHECK(constant.scales[0] == 0.0f);
  CHECK(constant.codes[0] == 0);
  auto decoded = quant::double_dequantize(constant.codes.data(), constant.scales.data(), constant.offset, 300);
  CHECK(decoded[299] == 0.25f);
}

TEST_CASE("quantize_int: GPU equals CPU bit for bit") {
  for (WeightFormat format : {WeightFormat::int8, WeightFormat::int4, WeightFormat::int4_asym}) {
    for (uint32_t block_size : {8u, 64u, 128u}) {
      for (uint32_t cols : {1u, 7u, 64u * 3 + 10, 1001u}) {
        CAPTURE(kernels::weight_format_name(format));
        CAPTURE(block_size);
        CAPTURE(cols);
        // Scales over 24 decades exercise the integer division across exponents; one-signed and
        // zero blocks exercise the asymmetric range and the zero-block rule.
        auto x = weight_like(uint64_t{cols} * 3, cols + block_size, 24.0f, block_size);
        for (size_t i = 0; i < std::min<size_t>(x.size(), block_size); i++) x[i] = std::fabs(x[i]) + 1.0f;
        if (x.size() > 3 * block_size) std::fill(x.begin() + block_size, x.begin() + 2 * block_size, 0.0f);
        quant::QuantOptions options{block_size, false};
        auto cpu = quant::quantize(x.data(), 3, cols, format, options);
        GpuQuantized gpu = quantize_on_gpu(x, 3, cols, format, options);
        check_same_weight(gpu.weight, cpu);
        CHECK(gpu.guards_intact);
      }
    }
  }
}

TEST_CASE("quantize_int: hand-derived codes") {
  // absmax 127 -> scale 1 and reciprocal 1, so codes are the rounded values themselves.
  std::vector<float> x = {127.0f, -127.0f, 63.5f, -63.5f, 0.49999997f, -0.5f, 126.5f, 0.0f};
  auto q8 = quant::quantize(x.data(), 1, 8, WeightFormat::int8, {8, false});
  CHECK(q8.scales[0] == 1.0f);
  std::vector<int> expected8 = {127, -127, 64, -64, 0, -1, 127, 0};  // half away from zero
  for (size_t i = 0; i < 8; i++) CHECK(static_cast<int8_t>(q8.data[i]) == expected8[i]);
  // absmax 7 -> scale 1: code = round(x) + 8.
  std::vector<float> y = {7.0f, -7.0f, 3.5f, -3.5f, 0.5f, -0.4f, 2.5f, 0.0f};
  auto q4 = quant::quantize(y.data(), 1, 8, WeightFormat::int4, {8, false});
  CHECK(q4.scales[0] == 1.0f);
  std::vector<int> expected4 = {15, 1, 12, 4, 9, 8, 11, 8};
  for (size_t i = 0; i < 8; i++) CHECK(nibble(q4.data, i) == expected4[i]);
  // min -5, max 10 -> scale 15/15 = 1, zero point 5: code = round(x) + 5 clamped to [0, 15].
  std::vector<float> z = {-5.0f, 10.0f, 2.5f, 0.0f, -2.5f, 9.6f, -4.5f, 1.0f};
  auto qa = quant::quantize(z.data(), 1, 8, WeightFormat::int4_asym, {8, false});
  CHECK(qa.scales[0] == 1.0f);
  CHECK(qa.zeros[0] == 5);
  std::vector<int> expected_asym = {0, 15, 8, 5, 2, 15, 0, 6};
  for (size_t i = 0; i < 8; i++) CHECK(nibble(qa.data, i) == expected_asym[i]);
  // The GPU rounds the same halves away from zero.
  auto gpu8 = quantize_on_gpu(x, 1, 8, WeightFormat::int8, {8, false}).weight;
  for (size_t i = 0; i < 8; i++) CHECK(static_cast<int8_t>(gpu8.data[i]) == expected8[i]);
  auto gpu4 = quantize_on_gpu(y, 1, 8, WeightFormat::int4, {8, false}).weight;
  for (size_t i = 0; i < 8; i++) CHECK(nibble(gpu4.data, i) == expected4[i]);
  auto gpu_asym = quantize_on_gpu(z, 1, 8, WeightFormat::int4_asym, {8, false}).weight;
  CHECK(gpu_asym.zeros[0] == 5);
  for (size_t i = 0; i < 8; i++) CHECK(nibble(gpu_asym.data, i) == expected_asym[i]);
  // A zero block: scale 0, the code of 0 everywhere, dequantized to 0.
  std::vector<float> zeros(8, 0.0f);
  for (WeightFormat format : {WeightFormat::int8, WeightFormat::int4, WeightFormat::int4_asym}) {
    auto q = quant::quantize(zeros.data(), 1, 8, format, {8, false});
    CHECK(q.scales[0] == 0.0f);
    int zero_code = format == WeightFormat::int4 ? 8 : 0;
    for (size_t i = 0; i < 8; i++)
      CHECK((format == WeightFormat::int8 ? int(q.data[i]) : nibble(q.data, i)) == zero_code);
    for (float v : quant::dequantize(q)) CHECK(v == 0.0f);
  }
}

// ============================== round trips ==============================

TEST_CASE("quantize_int: round trip within half a step") {
  // Every element is within scale/2 of its code's value: x * (1/scale) is within a few ulps of
  // x/scale (|x/scale| <= 127), rounding adds at most 1/2 step, and the widened asymmetric range
  // keeps clamping within 1/2 step as well. Slack: 2^-16 of a step for those few ulps.
  for (WeightFormat format : {WeightFormat::int8, WeightFormat::int4, WeightFormat::int4_asym}) {
    for (uint32_t block_size : {32u, 64u, 128u}) {
      CAPTURE(kernels::weight_format_name(format));
      CAPTURE(block_size);
      auto x = weight_like(64 * 31 + 13, block_size + static_cast<uint32_t>(format), 3.0f, block_size);
      for (size_t i = 0; i < block_size; i++) x[i] = std::fabs(x[i]) + 0.5f;  // a one-signed block
      auto q = quant::quantize(x.data(), 1, static_cast<uint32_t>(x.size()), format, {block_size, false});
      auto back = quant::dequantize(q);
      size_t violations = 0;
      double worst = 0;
      for (size_t i = 0; i < x.size(); i++) {
        double step = q.scales[i / block_size];
        double error = std::fabs(double(x[i]) - back[i]);
        worst = std::max(worst, error / step);
        if (error > step * (0.5 + std::ldexp(1.0, -16))) violations++;
      }
      INFO("worst error " << worst << " steps");
      CHECK(violations == 0);
    }
  }
}

TEST_CASE("quantize_nf4: round trip within the NF4 and double-quant bounds") {
  // Per element: |x - NF4[c] * absmax| <= absmax * e4 (e4 = the largest distance from a threshold
  // to a neighbouring code, ~0.152), and with double quantization the decoded absmax moves by at
  // most absmax2 * e8 (e8 = the dynamic map's largest half gap, ~0.0070) times |NF4[c]| <= 1.
  // Slack: 2^-20 relative for the fp32 normalization and products.
  double e4 = nf4_worst_error(), e8 = dynamic_map_worst_error();
  CHECK(e4 < 0.16);
  CHECK(e8 < 0.0071);
  for (bool double_quant : {false, true}) {
    CAPTURE(double_quant);
    auto x = weight_like(64 * 300 + 37, 11, 4.0f);
    std::fill(x.begin() + 128, x.begin() + 192, 0.0f);  // a zero block (codes 0, see the fixture test)
    auto q = quant::quantize(x.data(), 1, static_cast<uint32_t>(x.size()), WeightFormat::nf4, {64, double_quant});
    auto back = quant::dequantize(q);
    std::vector<float> raw_absmax(q.blocks());
    std::vector<uint8_t> scratch(q.padded_elements() / 2);
    quant::quantize_nf4(x.data(), x.size(), 64, scratch.data(), raw_absmax.data());
    size_t violations = 0;
    double worst = 0;
    for (size_t i = 0; i < x.size(); i++) {
      size_t b = i / 64;
      double bound = raw_absmax[b] * (e4 + std::ldexp(1.0, -20));
      if (double_quant) bound += q.absmax_scales[b / 256] * (e8 + std::ldexp(1.0, -20));
      double error = std::fabs(double(x[i]) - back[i]);
      worst = std::max(worst, error / bound);
      if (error > bound) violations++;
    }
    INFO("worst error " << worst << " of the bound");
    CHECK(violations == 0);
    // The bound is tight enough to mean something: the worst element uses most of it.
    CHECK(worst > 0.5);
  }
}

// ============================== dequantize (quant.glsl) ==============================

TEST_CASE("dequantize: GPU equals CPU for every format") {
  uint32_t rows = 5, cols = 64 + 13;  // n = 385: not a multiple of 8, so both GLSL paths run
  auto x = weight_like(uint64_t{rows} * cols, 5, 3.0f);
  struct Variant {
    WeightFormat format;
    uint32_t block_size;
    bool double_quant;
  };
  for (Variant v : {Variant{WeightFormat::f32, 64, false}, Variant{WeightFormat::f16, 64, false},
                    Variant{WeightFormat::bf16, 64, false}, Variant{WeightFormat::nf4, 64, false},
                    Variant{WeightFormat::nf4, 64, true}, Variant{WeightFormat::nf4, 32, true},
                    Variant{WeightFormat::int8, 64, false}, Variant{WeightFormat::int4, 16, false},
                    Variant{WeightFormat::int4_asym, 128, false}}) {
    CAPTURE(kernels::weight_format_name(v.format));
    CAPTURE(v.block_size);
    CAPTURE(v.double_quant);
    auto q = quant::quantize(x.data(), rows, cols, v.format, {v.block_size, v.double_quant});
    quant::DeviceWeight device = quant::upload(context(), q, "w");
    for (bool per_element : {false, true}) {
      CAPTURE(per_element);
      Guarded out(q.elements() * 4, "out");
      context().run(
          [&](vk::Recorder& r) { kernels::dequantize(r, device.ref, q.elements(), out.range(), per_element); });
      CHECK_SAME(out.floats(), quant::dequantize(q));
      CHECK(out.guard_intact());
    }
  }
}

// ggml's block formats (GGUF) through shaders/ggml_blocks.glsl: random code bytes and scales,
// compared bit for bit with quant::dequantize_ggml (itself bit-exact with ggml, test_model_gguf.cpp).
// Tolerance: none. Random finite fp16 bit patterns as scales (subnormals, 65504, both signs) too.
TEST_CASE("dequantize: GPU equals CPU bit for bit for every ggml block format (GGUF)") {
  using quant::GgmlType;
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q4_K,
                        GgmlType::Q5_K, GgmlType::Q6_K}) {
    CAPTURE(quant::ggml_type_name(type));
    const uint32_t rows = 3, cols = 512;  // 6 super-blocks, 48 blocks of 32
    for (bool every_half_pattern : {false, true}) {
      CAPTURE(every_half_pattern);
      std::vector<uint8_t> bytes = test::random_ggml_blocks(type, uint64_t{rows} * cols, 17, 0.05f, every_half_pattern);
      std::vector<float> expected(size_t{rows} * cols);
      quant::dequantize_ggml(type, bytes, expected);
      quant::DeviceWeight device = quant::upload_ggml(context(), type, rows, cols, bytes, "w");
      CHECK(device.ref.format == quant::ggml_device_format(type));
      for (bool per_element : {false, true}) {
        CAPTURE(per_element);
        Guarded out(expected.size() * 4, "out");
        context().run(
            [&](vk::Recorder& r) { kernels::dequantize(r, device.ref, expected.size(), out.range(), per_element); });
        CHECK_SAME(out.floats(), expected);
        CHECK(out.guard_intact());
      }
    }
  }
}

TEST_CASE("dequantize: ggml formats name their blocks as ggml_blocks does") {
  using quant::GgmlType;
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q4_K,
                        GgmlType::Q5_K, GgmlType::Q6_K}) {
    WeightFormat format = quant::ggml_device_format(type);
    CAPTURE(quant::ggml_type_name(type));
    CHECK(kernels::is_ggml_block(format));
    CHECK(kernels::is_quantized(format));
    CHECK(kernels::ggml_block_elements(format) == quant::ggml_type_info(type).block_elems);
    CHECK(kernels::ggml_block_bytes(format) == quant::ggml_type_info(type).block_bytes);
    CHECK(quant::ggml_type_of_format(format) == type);
  }
  CHECK(quant::ggml_device_format(GgmlType::F16) == WeightFormat::f16);
  CHECK(quant::ggml_device_format(GgmlType::BF16) == WeightFormat::bf16);
  CHECK(quant::ggml_device_format(GgmlType::F32) == WeightFormat::f32);
}

TEST_CASE("dequantize: every NF4 code and every dynamic-map code decodes as on the CPU") {
  // A synthetic double-quantized weight whose absmax codes run through 0..255 twice and whose
  // NF4 nibbles run through 0..15: the GLSL tables must equal the CPU tables entry for entry.
  quant::QuantizedWeight q;
  q.format = WeightFormat::nf4;
  q.rows = 1;
  q.cols = 512 * 16;  // 512 blocks of 16
  q.block_size = 16;
  q.double_quant = true;
  q.data.resize(q.padded_elements() / 2);
  for (size_t i = 0; i < q.data.size(); i++) q.data[i] = static_cast<uint8_t>(((i * 2) % 16) << 4 | ((i * 2 + 1) % 16));
  q.absmax_codes.resize(512);
  for (size_t b = 0; b < 512; b++) q.absmax_codes[b] = static_cast<uint8_t>(b % 256);
  q.absmax_scales = {0.75f, 3.5f};
  q.absmax_offset = 4.0f;
  quant::DeviceWeight device = quant::upload(context(), q, "tables");
  auto expected = quant::dequantize(q);
  for (bool per_element : {false, true}) {
    Guarded out(q.elements() * 4, "out");
    context().run([&](vk::Recorder& r) { kernels::dequantize(r, device.ref, q.elements(), out.range(), per_element); });
    CHECK_SAME(out.floats(), expected);
  }
  // And the decoded absmax is map * scale + offset with the product rounded first.
  auto absmax = q.block_absmax();
  CHECK(absmax[300] == quant::rounded(quant::dynamic_map()[44] * 3.5f) + 4.0f);
  CHECK(expected[16 * 300 + 5] == quant::nf4_table()[5] * absmax[300]);
}

TEST_CASE("quantize_nf4: quantize_on_device gives a WeightRef equal to the CPU upload") {
  auto x = weight_like(96 * 70, 21, 3.0f);
  vk::Buffer input = test::upload(x, "w");
  for (WeightFormat format : {WeightFormat::nf4, WeightFormat::int4_asym}) {
    CAPTURE(kernels::weight_format_name(format));
    quant::QuantOptions options{64, true};
    quant::DeviceWeight device = quant::quantize_on_device(context(), input.range(), 96, 70, format, options, "w");
    auto cpu = quant::quantize(x.data(), 96, 70, format, options);
    auto downloaded = quant::download(context(), device);
    check_same_weight(downloaded, cpu);
    CHECK(device.ref.absmax_offset == cpu.absmax_offset);
    auto push = kernels::quant_weight_push(device.ref);
    CHECK((push.encoding & 0xff) == static_cast<uint32_t>(format));
    CHECK(((push.encoding >> 8) & 0xff) == 6);  // log2(64)
    CHECK(push.data == device.data.address());
    CHECK(context().ledger().snapshot().category_current(vk::Category::quantized_weights) >= cpu.bytes());
  }
}

TEST_CASE("quantize_nf4: non-finite weights and bad block sizes are user errors") {
  std::vector<float> x(64, 1.0f);
  x[37] = NAN;
  CHECK_THROWS_AS(quant::quantize(x.data(), 2, 32, WeightFormat::nf4), UserError);
  try {
    quant::quantize(x.data(), 2, 32, WeightFormat::int8, {64, false}, "layers.0.q_proj");
  } catch (const UserError& error) {
    CHECK(std::string(error.what()).find("layers.0.q_proj: element [1, 5]") != std::string::npos);
  }
  x[37] = 0.0f;
  CHECK_THROWS_AS(quant::quantize(x.data(), 2, 32, WeightFormat::int4, {48, false}), UserError);
  CHECK_THROWS_AS(quant::quantize(x.data(), 2, 32, WeightFormat::nf4, {4, true}), UserError);
}

}  // TEST_SUITE
