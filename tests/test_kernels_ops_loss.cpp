// Fused weighted cross-entropy (forward, dlogits in place, finite differences, ignored rows,
// chunking, NaN) and the fp32 <-> fp16/bf16 conversions (bit-exact against engine/base/half.hpp).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "engine/base/half.hpp"
#include "engine/kernels/convert.hpp"
#include "engine/kernels/loss.hpp"
#include "engine/kernels/reduce.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/ops_test_util.hpp"

using namespace vkt;
using test::context;
using test::Guarded;

namespace {

struct CrossEntropyCase {
  uint32_t rows, vocab;
  std::vector<float> logits, weights;
  std::vector<uint32_t> targets;
};

CrossEntropyCase make_case(uint32_t rows, uint32_t vocab, uint32_t seed) {
  CrossEntropyCase c{rows, vocab, test::random_floats(size_t(rows) * vocab, seed, -8, 8), {}, {}};
  std::mt19937 generator(seed + 1);
  const float weight_choices[] = {1.0f, 0.5f, 2.0f, 1.0f, 0.25f};
  for (uint32_t r = 0; r < rows; r++) {
    c.targets.push_back(generator() % vocab);
    c.weights.push_back(weight_choices[r % 5]);
  }
  if (rows >= 3) {
    c.weights[1] = 0.0f;                             // ignored by weight
    c.targets[2] = kernels::ignore_target;           // ignored by target
    for (uint32_t v = 0; v < vocab; v++) c.logits[size_t(2) * vocab + v] += 1000.0f;  // and huge logits
  }
  if (rows >= 17) {
    c.targets[5] = vocab;  // out of range: ignored
    // A row with large logits that is not ignored: the running max must keep exp() finite.
    for (uint32_t v = 0; v < vocab; v++) c.logits[size_t(7) * vocab + v] += 500.0f;
  }
  return c;
}

// sum_r w_r * CE_r * grad_scale in double: the function dlogits is the gradient of.
double weighted_loss(const CrossEntropyCase& c, const std::vector<float>& logits, double grad_scale) {
  double total = 0;
  for (uint32_t r = 0; r < c.rows; r++) {
    uint32_t target = c.targets[r];
    if (c.weights[r] == 0 || target >= c.vocab) continue;
    const float* row = logits.data() + size_t(r) * c.vocab;
    double max = -INFINITY, sum = 0;
    for (uint32_t v = 0; v < c.vocab; v++) max = std::fmax(max, double(row[v]));
    for (uint32_t v = 0; v < c.vocab; v++) sum += std::exp(row[v] - max);
    total += c.weights[r] * (max + std::log(sum) - row[target]);
  }
  return total * grad_scale;
}

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

// ---------------------------------------------------------------------------------------------
// cross_entropy

TEST_CASE("cross_entropy: loss and in-place dlogits match the reference; ignored rows are zero") {
  struct Shape { uint32_t rows, vocab; };
  for (const std::string& threads : test::row_thread_settings())
  for (Shape shape : {Shape{1, 5}, Shape{3, 1000}, Shape{17, 5}, Shape{17, 32003}, Shape{4, 257}}) {
    CAPTURE(threads); CAPTURE(shape.rows); CAPTURE(shape.vocab);
    test::ScopedEnv row_threads("VKT_ROW_THREADS", threads);
    auto c = make_case(shape.rows, shape.vocab, 141);
    float grad_scale = 1.0f / 7.0f;  // e.g. 1 / (total weight of the batch)
    Guarded logits = Guarded::of(c.logits, "logits"), targets = Guarded::of_raw(c.targets, "targets");
    Guarded weights = Guarded::of(c.weights, "weights"), scale = Guarded::of({grad_scale}, "grad_scale");
    Guarded loss(shape.rows * 4, "loss");
    context().run([&](vk::Recorder& r) {
      kernels::cross_entropy(r, logits.range(), targets.range(), weights.range(), scale.range(), loss.range(),
                             shape.rows, shape.vocab);
    });
    std::vector<float> expected_loss(shape.rows), expected_dlogits(c.logits.size());
    ref::cross_entropy(c.logits.data(), c.targets.data(), c.weights.data(), grad_scale, expected_loss.data(),
                       expected_dlogits.data(), shape.rows, shape.vocab);
    // Losses of order 10 (weights up to 2): the fp32 running sum of exp() over 32003 terms and
    // exp()/log() to a few ulp keep them within ~1e-5.
    test::check_close(loss.floats(), expected_loss, 1e-12, 2e-5, "loss");
    // dlogits = (p - onehot) * w * scale with |.| < 0.3: exp()'s few-ulp error on p.
    test::check_close(logits.floats(), expected_dlogits, 1e-11, 1e-6, "dlogits");
    CHECK(logits.guard_intact());
    CHECK(loss.guard_intact());
    if (shape.rows >= 3) {
      auto gradient = logits.floats();
      for (uint32_t row : {1u, 2u}) {
        CHECK(loss.floats()[row] == 0.0f);
        bool all_zero = true;
        for (uint32_t v = 0; v < shape.vocab; v++) all_zero = all_zero && gradient[size_t(row) * shape.vocab + v] == 0.0f;
        CHECK(all_zero);
      }
    }
  }
}

TEST_CASE("cross_entropy: dlogits is the gradient of the weighted loss (finite differences)") {
  for (uint32_t vocab : {5u, 33u}) {
    CAPTURE(vocab);
    auto c = make_case(3, vocab, 151);
    c.weights = {1.5f, 0.5f, 1.0f};
    c.targets[2] = 1;  // no ignored rows: every row has a gradient
    for (float& value : c.logits) value = std::fmod(value, 4.0f);
    float grad_scale = 0.25f;
    Guarded logits = Guarded::of(c.logits, "logits"), targets = Guarded::of_raw(c.targets, "targets");
    Guarded weights = Guarded::of(c.weights, "weights"), scale = Guarded::of({grad_scale}, "grad_scale");
    Guarded loss(3 * 4, "loss");
    context().run([&](vk::Recorder& r) {
      kernels::cross_entropy(r, logits.range(), targets.range(), weights.range(), scale.range(), loss.range(), 3, vocab);
    });
    auto function = [&](const std::vector<float>& probe) { return weighted_loss(c, probe, grad_scale); };
    // Evaluated in double: only the 4-point stencil's O(h^4) and fp32 dlogits limit agreement.
    test::check_gradient(function, c.logits, logits.floats(), 1e-2f, 1e-8, 1000, "dlogits vs finite differences");
  }
}

TEST_CASE("cross_entropy: chunks of rows give the same bits as one call; evaluation leaves logits alone") {
  uint32_t rows = 17, vocab = 1000, split = 6;
  auto c = make_case(rows, vocab, 161);
  Guarded targets = Guarded::of_raw(c.targets, "targets"), weights = Guarded::of(c.weights, "weights");
  Guarded scale = Guarded::of({0.125f}, "grad_scale");
  Guarded whole = Guarded::of(c.logits, "whole"), chunked = Guarded::of(c.logits, "chunked");
  Guarded evaluated = Guarded::of(c.logits, "evaluated");
  Guarded loss_whole(rows * 4, "loss whole"), loss_chunked(rows * 4, "loss chunked"), loss_eval(rows * 4, "loss eval");
  auto row_slice = [&](const Guarded& buffer, uint32_t first, uint32_t count, uint32_t width) {
    vk::BufferRange range = buffer.range();
    range.offset += uint64_t(first) * width * 4;
    range.address += uint64_t(first) * width * 4;
    range.bytes = uint64_t(count) * width * 4;
    return range;
  };
  context().run([&](vk::Recorder& r) {
    kernels::cross_entropy(r, whole.range(), targets.range(), weights.range(), scale.range(), loss_whole.range(), rows,
                           vocab);
    for (uint32_t first : {0u, split}) {
      uint32_t count = first == 0 ? split : rows - split;
      kernels::cross_entropy(r, row_slice(chunked, first, count, vocab), row_slice(targets, first, count, 1),
                             row_slice(weights, first, count, 1), scale.range(), row_slice(loss_chunked, first, count, 1),
                             count, vocab);
    }
    kernels::cross_entropy(r, evaluated.range(), targets.range(), weights.range(), scale.range(), loss_eval.range(),
                           rows, vocab, kernels::ignore_target, false);
  });
  auto a = whole.floats(), b = chunked.floats(), e = evaluated.floats();
  CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
  CHECK(std::memcmp(e.data(), c.logits.data(), e.size() * 4) == 0);
  auto la = loss_whole.floats(), lb = loss_chunked.floats(), le = loss_eval.floats();
  CHECK(std::memcmp(la.data(), lb.data(), la.size() * 4) == 0);
  CHECK(std::memcmp(la.data(), le.data(), la.size() * 4) == 0);
  CHECK(evaluated.guard_intact());

  // The mean loss the trainer logs: deterministic sums of the per-row losses and the weights.
  Guarded totals(2 * 4, "totals");
  Guarded workspace(kernels::sum_rows_workspace_bytes(rows, 1), "workspace");
  context().run([&](vk::Recorder& r) {
    kernels::sum_rows(r, loss_whole.range(), row_slice(totals, 0, 1, 1), workspace.range(), rows, 1);
    kernels::sum_rows(r, weights.range(), row_slice(totals, 1, 1, 1), workspace.range(), rows, 1);
  });
  auto sums = totals.floats();
  double loss_sum = 0, weight_sum = 0;
  for (uint32_t r = 0; r < rows; r++) loss_sum += la[r];
  for (uint32_t r = 0; r < rows; r++) weight_sum += c.weights[r];
  CHECK(sums[0] == doctest::Approx(loss_sum).epsilon(1e-6));
  CHECK(sums[1] == doctest::Approx(weight_sum).epsilon(1e-6));
  CHECK(totals.guard_intact());
}

TEST_CASE("cross_entropy: a NaN or inf logit makes its row NaN (loss and dlogits) and leaves other rows alone") {
  uint32_t rows = 3, vocab = 33;
  auto c = make_case(rows, vocab, 171);
  c.weights = {1, 1, 1};
  c.targets = {0, 1, 2};
  c.logits[size_t(1) * vocab + 7] = NAN;
  c.logits[size_t(2) * vocab + 3] = INFINITY;
  Guarded logits = Guarded::of(c.logits, "logits"), targets = Guarded::of_raw(c.targets, "targets");
  Guarded weights = Guarded::of(c.weights, "weights"), scale = Guarded::of({1.0f}, "grad_scale");
  Guarded loss(rows * 4, "loss");
  context().run([&](vk::Recorder& r) {
    kernels::cross_entropy(r, logits.range(), targets.range(), weights.range(), scale.range(), loss.range(), rows, vocab);
  });
  auto values = loss.floats();
  auto gradient = logits.floats();
  std::vector<float> expected_loss(rows), expected_dlogits(c.logits.size());
  ref::cross_entropy(c.logits.data(), c.targets.data(), c.weights.data(), 1.0f, expected_loss.data(),
                     expected_dlogits.data(), rows, vocab);
  // Row 0 is untouched by its neighbours' NaN and inf.
  test::check_close({values[0]}, {expected_loss[0]}, 1e-12, 2e-5, "loss of the finite row");
  test::check_close(std::vector<float>(gradient.begin(), gradient.begin() + vocab),
                    std::vector<float>(expected_dlogits.begin(), expected_dlogits.begin() + vocab), 1e-11, 1e-6,
                    "dlogits of the finite row");
  // Rows 1 (NaN) and 2 (+inf): NaN loss and NaN dlogits, which the trainer's checks see.
  for (uint32_t row : {1u, 2u}) {
    CHECK(std::isnan(values[row]));
    CHECK(std::isnan(expected_loss[row]));
    size_t nan_count = 0;
    for (uint32_t v = 0; v < vocab; v++) nan_count += std::isnan(gradient[size_t(row) * vocab + v]);
    CHECK(nan_count == vocab);
  }
  CHECK(logits.guard_intact());
}

// ---------------------------------------------------------------------------------------------
// conversions

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
      0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001, 0x7fbfffff,  // zeros, inf, NaN
      0x00000001, 0x807fffff, 0x00400000,                                    // fp32 subnormals
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

TEST_SUITE("kernels_ops") {

TEST_CASE("cross_entropy: more than 65535 rows (2-D grid)") {
  uint32_t rows = 70001, vocab = 5;
  auto c = make_case(rows, vocab, 211);
  Guarded logits = Guarded::of(c.logits, "logits"), targets = Guarded::of_raw(c.targets, "targets");
  Guarded weights = Guarded::of(c.weights, "weights"), scale = Guarded::of({0.5f}, "grad_scale");
  Guarded loss(size_t(rows) * 4, "loss");
  context().run([&](vk::Recorder& r) {
    kernels::cross_entropy(r, logits.range(), targets.range(), weights.range(), scale.range(), loss.range(), rows, vocab);
  });
  std::vector<float> expected_loss(rows), expected_dlogits(c.logits.size());
  ref::cross_entropy(c.logits.data(), c.targets.data(), c.weights.data(), 0.5f, expected_loss.data(),
                     expected_dlogits.data(), rows, vocab);
  test::check_close(loss.floats(), expected_loss, 1e-12, 2e-5, "loss");
  test::check_close(logits.floats(), expected_dlogits, 1e-11, 1e-6, "dlogits");
  CHECK(logits.guard_intact());
  CHECK(loss.guard_intact());
}

}  // TEST_SUITE
