// RoPE: the host's inverse frequencies against transformers' (golden file from
// tests/reference/rope_inv_freq.py), the shader's cos/sin at large angles, forward and backward
// against the reference and finite differences.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "engine/base/error.hpp"
#include "engine/kernels/rope.hpp"
#include "tests/kernel_harness.hpp"

using namespace vkt;
using test::context;
using test::Guarded;

namespace {

// Positions of `rows` tokens packed from documents of random lengths: each restarts at 0.
std::vector<uint32_t> packed_positions(uint32_t rows, uint32_t seed, uint32_t max_start = 0) {
  std::mt19937 generator(seed);
  std::vector<uint32_t> positions(rows);
  uint32_t position = max_start ? generator() % max_start : 0;
  for (uint32_t r = 0; r < rows; r++) {
    if (generator() % 5 == 0) position = max_start ? generator() % max_start : 0;  // a new document
    positions[r] = position++;
  }
  return positions;
}

kernels::RopeScaling llama31_scaling() {
  kernels::RopeScaling scaling;
  scaling.type = kernels::RopeScaling::Type::llama3;
  scaling.factor = 8;
  scaling.low_freq_factor = 1;
  scaling.high_freq_factor = 4;
  scaling.original_max_position_embeddings = 8192;
  return scaling;
}

}  // namespace

TEST_SUITE("kernels_ops") {

TEST_CASE("rope: inv_freq is bit-identical to transformers for default, linear and llama3 scaling") {
  std::ifstream file(test::source_dir() / "tests/reference/rope_inv_freq.txt");
  REQUIRE(file.good());
  std::string line;
  int configurations = 0;
  while (std::getline(file, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string name, type, colon;
    uint32_t head_dim = 0;
    double theta = 0, original = 0;
    kernels::RopeScaling scaling;
    fields >> name >> head_dim >> theta >> type >> scaling.factor >> scaling.low_freq_factor >>
        scaling.high_freq_factor >> original >> colon;
    scaling.original_max_position_embeddings = original;
    scaling.type = kernels::rope_type_from_name(type);
    REQUIRE(colon == ":");
    std::vector<uint32_t> expected;
    std::string word;
    while (fields >> word) expected.push_back(static_cast<uint32_t>(std::stoul(word, nullptr, 16)));
    CAPTURE(name);
    REQUIRE(expected.size() == head_dim / 2);
    auto inv_freq = kernels::rope_inv_freq(head_dim, theta, scaling);
    int mismatches = 0;
    for (uint32_t i = 0; i < head_dim / 2; i++) {
      uint32_t bits;
      std::memcpy(&bits, &inv_freq[i], 4);
      if (bits != expected[i]) {
        mismatches++;
        INFO("inv_freq[" << i << "] = " << inv_freq[i] << ", transformers " << std::hex << expected[i]);
        CHECK(bits == expected[i]);
      }
    }
    CHECK(mismatches == 0);
    configurations++;
  }
  CHECK(configurations >= 9);
  CHECK_THROWS_AS(kernels::rope_type_from_name("yarn"), UserError);
}

TEST_CASE("rope: cos and sin stay accurate at angles up to 4e5 radians") {
  // x = (1, 0) pairs rotate to (cos, sin): the output is the shader's cos/sin of the fp32 angle.
  uint32_t rows = 4096, heads = 1, head_dim = 8;
  std::vector<float> inv_freq = {1.0f, 0.7498942f, 1.5f, 0.0123f};
  std::vector<uint32_t> positions(rows);
  std::mt19937 generator(5);
  for (uint32_t r = 0; r < rows; r++) positions[r] = r < 2048 ? r * 64 + r % 64 : generator() % 262144;
  std::vector<float> x(size_t(rows) * head_dim, 0.0f);
  for (uint32_t r = 0; r < rows; r++)
    for (uint32_t i = 0; i < 4; i++) x[size_t(r) * head_dim + i] = 1.0f;
  Guarded x_buffer = Guarded::of(x, "x"), out(x.size() * 4, "out");
  Guarded position_buffer = Guarded::of_raw(positions, "positions"), freq_buffer = Guarded::of(inv_freq, "inv_freq");
  context().run([&](vk::Recorder& r) {
    kernels::rope(r, x_buffer.range(), out.range(), position_buffer.range(), freq_buffer.range(), rows, heads,
                  head_dim);
  });
  std::vector<float> expected(x.size());
  ref::rope(x.data(), expected.data(), positions.data(), inv_freq.data(), rows, heads, head_dim);
  // The polynomial and reduction are good to ~1.5 ulp of 1 (1.8e-7); GLSL's own sin/cos are
  // specified only to 2^-11 inside [-pi, pi].
  test::check_close(out.floats(), expected, 1e-13, 2.5e-7, "cos, sin");
  CHECK(out.guard_intact());
}

TEST_CASE("rope: forward matches the reference (llama3 frequencies, packed positions), in place") {
  struct Shape {
    uint32_t rows, heads, head_dim;
  };
  auto scaling = llama31_scaling();
  for (Shape shape : {Shape{1, 1, 8}, Shape{3, 2, 64}, Shape{17, 3, 64}, Shape{17, 2, 128}, Shape{5, 1, 8}}) {
    CAPTURE(shape.rows);
    CAPTURE(shape.heads);
    CAPTURE(shape.head_dim);
    size_t n = size_t(shape.rows) * shape.heads * shape.head_dim;
    auto x = test::random_floats(n, 111, -2, 2);
    auto positions = packed_positions(shape.rows, 112, shape.rows == 5 ? 131000 : 0);
    auto inv_freq = kernels::rope_inv_freq(shape.head_dim, 500000.0, scaling);
    Guarded x_buffer = Guarded::of(x, "x"), out(n * 4, "out");
    Guarded position_buffer = Guarded::of_raw(positions, "positions"), freq_buffer = Guarded::of(inv_freq, "inv_freq");
    context().run([&](vk::Recorder& r) {
      kernels::rope(r, x_buffer.range(), out.range(), position_buffer.range(), freq_buffer.range(), shape.rows,
                    shape.heads, shape.head_dim);
    });
    std::vector<float> expected(n);
    ref::rope(x.data(), expected.data(), positions.data(), inv_freq.data(), shape.rows, shape.heads, shape.head_dim);
    // cos/sin to ~1e-7, two products and a sum in fp32 on |x| < 2: < 1e-6.
    test::check_close(out.floats(), expected, 1e-13, 1e-6, "rope output");
    CHECK(out.guard_intact());
    context().run([&](vk::Recorder& r) {
      kernels::rope(r, x_buffer.range(), x_buffer.range(), position_buffer.range(), freq_buffer.range(), shape.rows,
                    shape.heads, shape.head_dim);
    });
    auto in_place = x_buffer.floats(), separate = out.floats();
    CHECK(std::memcmp(in_place.data(), separate.data(), n * 4) == 0);
    CHECK(x_buffer.guard_intact());
  }
}

TEST_CASE("rope: attention_scaling multiplies cos and sin") {
  uint32_t rows = 3, heads = 2, head_dim = 8;
  size_t n = size_t(rows) * heads * head_dim;
  auto x = test::random_floats(n, 121);
  std::vector<uint32_t> positions = {0, 7, 100};
  auto inv_freq = kernels::rope_inv_freq(head_dim, 10000.0);
  Guarded x_buffer = Guarded::of(x, "x"), out(n * 4, "out");
  Guarded position_buffer = Guarded::of_raw(positions, "positions"), freq_buffer = Guarded::of(inv_freq, "inv_freq");
  context().run([&](vk::Recorder& r) {
    kernels::rope(r, x_buffer.range(), out.range(), position_buffer.range(), freq_buffer.range(), rows, heads, head_dim,
                  1.25f);
  });
  std::vector<float> expected(n);
  ref::rope(x.data(), expected.data(), positions.data(), inv_freq.data(), rows, heads, head_dim, 1.25f);
  test::check_close(out.floats(), expected, 1e-13, 1e-6, "scaled rope output");
  CHECK(out.guard_intact());
}

TEST_CASE("rope_backward: the inverse rotation; vs reference and finite differences; in place") {
  struct Shape {
    uint32_t rows, heads, head_dim;
  };
  auto scaling = llama31_scaling();
  for (Shape shape : {Shape{1, 1, 8}, Shape{3, 2, 64}, Shape{17, 3, 64}}) {
    CAPTURE(shape.rows);
    CAPTURE(shape.heads);
    CAPTURE(shape.head_dim);
    size_t n = size_t(shape.rows) * shape.heads * shape.head_dim;
    auto x = test::random_floats(n, 131, -2, 2);
    auto dy = test::random_floats(n, 132);
    auto positions = packed_positions(shape.rows, 133, 9000);
    auto inv_freq = kernels::rope_inv_freq(shape.head_dim, 500000.0, scaling);
    Guarded x_buffer = Guarded::of(x, "x"), rotated(n * 4, "rotated"), restored(n * 4, "restored");
    Guarded dy_buffer = Guarded::of(dy, "dy"), dx(n * 4, "dx");
    Guarded position_buffer = Guarded::of_raw(positions, "positions"), freq_buffer = Guarded::of(inv_freq, "inv_freq");
    context().run([&](vk::Recorder& r) {
      kernels::rope(r, x_buffer.range(), rotated.range(), position_buffer.range(), freq_buffer.range(), shape.rows,
                    shape.heads, shape.head_dim);
      kernels::rope_backward(r, rotated.range(), restored.range(), position_buffer.range(), freq_buffer.range(),
                             shape.rows, shape.heads, shape.head_dim);
      kernels::rope_backward(r, dy_buffer.range(), dx.range(), position_buffer.range(), freq_buffer.range(), shape.rows,
                             shape.heads, shape.head_dim);
    });
    // R^T R = I up to the rounding of two rotations.
    test::check_close(restored.floats(), x, 1e-13, 2e-6, "rope_backward(rope(x)) = x");
    std::vector<float> expected(n);
    ref::rope_backward(dy.data(), expected.data(), positions.data(), inv_freq.data(), shape.rows, shape.heads,
                       shape.head_dim);
    test::check_close(dx.floats(), expected, 1e-13, 1e-6, "dx");
    for (const Guarded* buffer : {&rotated, &restored, &dx}) CHECK(buffer->guard_intact());
    auto loss = [&](const std::vector<float>& probe) {
      std::vector<float> out(n);
      ref::rope(probe.data(), out.data(), positions.data(), inv_freq.data(), shape.rows, shape.heads, shape.head_dim);
      return test::dot(out, dy);
    };
    // Linear in x: finite differences agree up to fp32 rounding of the reference's outputs.
    test::check_gradient(loss, x, dx.floats(), 1e-2f, 1e-7, 300, "dx vs finite differences");
    context().run([&](vk::Recorder& r) {
      kernels::rope_backward(r, dy_buffer.range(), dy_buffer.range(), position_buffer.range(), freq_buffer.range(),
                             shape.rows, shape.heads, shape.head_dim);
    });
    auto in_place = dy_buffer.floats(), separate = dx.floats();
    CHECK(std::memcmp(in_place.data(), separate.data(), n * 4) == 0);
  }
}

}  // TEST_SUITE
