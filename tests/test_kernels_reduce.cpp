// sum_rows (engine/kernels/reduce.hpp): the deterministic column sum against the CPU reference.
// Suite kernels_ops.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "engine/kernels/reduce.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/ops_test_util.hpp"

using namespace vkt;
using test::context;
using test::Guarded;
using test::same_bits;

TEST_SUITE("kernels_ops") {

TEST_CASE("sum_rows: matches the reference, accumulates, and repeats bit for bit") {
  struct Shape {
    uint32_t rows, cols;
  };
  for (Shape shape :
       {Shape{1, 1}, Shape{17, 1}, Shape{3000, 1}, Shape{600, 7}, Shape{3, 130}, Shape{257, 65}, Shape{1, 1000}}) {
    CAPTURE(shape.rows);
    CAPTURE(shape.cols);
    auto x = test::random_floats(size_t(shape.rows) * shape.cols, 81);
    auto initial = test::random_floats(shape.cols, 82);
    Guarded x_buffer = Guarded::of(x, "x"), out(shape.cols * 4, "out"), accumulated = Guarded::of(initial, "acc");
    Guarded workspace(kernels::sum_rows_workspace_bytes(shape.rows, shape.cols), "workspace");
    auto record = [&](vk::Recorder& r) {
      kernels::sum_rows(r, x_buffer.range(), out.range(), workspace.range(), shape.rows, shape.cols);
      kernels::sum_rows(r, x_buffer.range(), accumulated.range(), workspace.range(), shape.rows, shape.cols, true);
    };
    context().run(record);
    std::vector<float> expected(shape.cols), expected_accumulated = initial;
    ref::sum_rows(x.data(), expected.data(), shape.rows, shape.cols);
    ref::sum_rows(x.data(), expected_accumulated.data(), shape.rows, shape.cols, true);
    // fp32 partial sums of up to 3000 values in [-1, 1]: errors ~sqrt(3000) * 2^-24 * 30.
    test::check_close(out.floats(), expected, 1e-12, 2e-5, "sum");
    test::check_close(accumulated.floats(), expected_accumulated, 1e-12, 2e-5, "accumulated sum");
    for (const Guarded* buffer : {&out, &accumulated, &workspace}) CHECK(buffer->guard_intact());
    auto first = out.floats();
    context().run(record);
    CHECK(same_bits(out.floats(), first));
  }
}

}  // TEST_SUITE
