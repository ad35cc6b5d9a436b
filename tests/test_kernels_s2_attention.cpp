// LongLoRA's S2 attention (engine/kernels/s2_attention.hpp): the roll kernel exactly, the
// forward against an fp64 reference written from the definition (which keys each head's query
// sees, no rolls), the backward against finite differences and the reference.
// Tolerances as tests/test_kernels_attention.cpp: rolls move bits exactly, so the errors are the
// attention kernels' (forward max-abs <= 5e-7 measured there, bound 5e-6; gradients bound 3e-5).
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "engine/kernels/s2_attention.hpp"
#include "tests/kernel_harness.hpp"

using namespace vkt;
using kernels::AttentionShape;
using test::context;
using test::Guarded;

namespace {

AttentionShape s2_shape(uint32_t batch, uint32_t seq, uint32_t heads, uint32_t kv_heads, uint32_t head_dim) {
  AttentionShape shape;
  shape.batch = batch;
  shape.seq_q = shape.seq_kv = seq;
  shape.q_heads = heads;
  shape.kv_heads = kv_heads;
  shape.head_dim = head_dim;
  shape.scale = 1.0f / std::sqrt(float(head_dim));
  return shape;
}

size_t q_count(const AttentionShape& s) { return size_t(s.batch) * s.seq_q * s.q_heads * s.head_dim; }
size_t kv_count(const AttentionShape& s) { return size_t(s.batch) * s.seq_q * s.kv_heads * s.head_dim; }
size_t stat_count(const AttentionShape& s) { return size_t(s.batch) * s.q_heads * s.seq_q; }

struct S2Inputs {
  AttentionShape shape;
  uint32_t group = 0;
  std::vector<float> q, k, v;
  std::vector<uint32_t> segments;  // (batch*seq) per token, or empty: no masking
};

S2Inputs make_inputs(const AttentionShape& shape, uint32_t group, uint32_t seed) {
  return {shape, group, test::random_floats(q_count(shape), seed, -1.5f, 1.5f),
          test::random_floats(kv_count(shape), seed + 1, -1.5f, 1.5f),
          test::random_floats(kv_count(shape), seed + 2, -1.5f, 1.5f)};
}

struct Forward {
  std::vector<float> o, lse;
};

Forward gpu_forward(const S2Inputs& in) {
  const AttentionShape& s = in.shape;
  Guarded q = Guarded::of(in.q, "q"), k = Guarded::of(in.k, "k"), v = Guarded::of(in.v, "v");
  Guarded o(q_count(s) * 4, "o"), lse(stat_count(s) * 4, "lse");
  Guarded scratch(kernels::s2_attention_scratch_bytes(uint64_t(s.batch) * s.seq_q, s.q_heads, s.kv_heads, s.head_dim,
                                                      kernels::DType::f32, false),
                  "scratch");
  Guarded segments = Guarded::of_raw(in.segments.empty() ? std::vector<uint32_t>{0} : in.segments, "segments");
  const vk::BufferRange segment_range = segments.range();
  context().run([&](vk::Recorder& r) {
    kernels::s2_attention_forward(r, q.range(), k.range(), v.range(), o.range(), lse.range(), s, in.group,
                                  scratch.range(), kernels::DType::f32, in.segments.empty() ? nullptr : &segment_range);
  });
  CHECK(o.guard_intact());
  CHECK(lse.guard_intact());
  CHECK(scratch.guard_intact());
  return {o.floats(), lse.floats()};
}

std::vector<float> cpu_forward(const S2Inputs& in) {
  std::vector<float> o(q_count(in.shape));
  ref::s2_attention_forward(in.q.data(), in.k.data(), in.v.data(), o.data(), in.shape, in.group,
                            in.segments.empty() ? nullptr : in.segments.data());
  return o;
}

struct Gradients {
  std::vector<float> dq, dk, dv;
};

Gradients gpu_backward(const S2Inputs& in, const std::vector<float>& d_o_values) {
  const AttentionShape& s = in.shape;
  Forward forward = gpu_forward(in);
  Guarded q = Guarded::of(in.q, "q"), k = Guarded::of(in.k, "k"), v = Guarded::of(in.v, "v");
  Guarded o = Guarded::of(forward.o, "o"), d_o = Guarded::of(d_o_values, "d_o"), lse = Guarded::of(forward.lse, "lse");
  Guarded delta(stat_count(s) * 4, "delta"), dq(q_count(s) * 4, "dq"), dk(kv_count(s) * 4, "dk"),
      dv(kv_count(s) * 4, "dv");
  Guarded scratch(kernels::s2_attention_scratch_bytes(uint64_t(s.batch) * s.seq_q, s.q_heads, s.kv_heads, s.head_dim,
                                                      kernels::DType::f32, true),
                  "scratch");
  Guarded segments = Guarded::of_raw(in.segments.empty() ? std::vector<uint32_t>{0} : in.segments, "segments");
  const vk::BufferRange segment_range = segments.range();
  context().run([&](vk::Recorder& r) {
    kernels::s2_attention_backward(r, q.range(), k.range(), v.range(), o.range(), d_o.range(), lse.range(),
                                   delta.range(), dq.range(), dk.range(), dv.range(), s, in.group, scratch.range(),
                                   kernels::DType::f32, in.segments.empty() ? nullptr : &segment_range);
  });
  CHECK(dq.guard_intact());
  CHECK(dk.guard_intact());
  CHECK(dv.guard_intact());
  CHECK(scratch.guard_intact());
  return {dq.floats(), dk.floats(), dv.floats()};
}

Gradients cpu_backward(const S2Inputs& in, const std::vector<float>& d_o) {
  Gradients g{std::vector<float>(q_count(in.shape)), std::vector<float>(kv_count(in.shape)),
              std::vector<float>(kv_count(in.shape))};
  ref::s2_attention_backward(in.q.data(), in.k.data(), in.v.data(), d_o.data(), g.dq.data(), g.dk.data(), g.dv.data(),
                             in.shape, in.group, in.segments.empty() ? nullptr : in.segments.data());
  return g;
}

// The reference's gradients against finite differences of the reference forward, every element.
void check_reference_gradients(const S2Inputs& in, const std::vector<float>& g, const std::string& label) {
  const Gradients reference = cpu_backward(in, g);
  auto ref_loss_of = [&](std::vector<float> S2Inputs::*tensor) {
    return [&, tensor](const std::vector<float>& values) {
      S2Inputs probe = in;
      probe.*tensor = values;
      return test::dot(cpu_forward(probe), g);
    };
  };
  test::check_gradient(ref_loss_of(&S2Inputs::q), in.q, reference.dq, 1e-2f, 1e-8, 1 << 30, label + " dq");
  test::check_gradient(ref_loss_of(&S2Inputs::k), in.k, reference.dk, 1e-2f, 1e-8, 1 << 30, label + " dk");
  test::check_gradient(ref_loss_of(&S2Inputs::v), in.v, reference.dv, 1e-2f, 1e-8, 1 << 30, label + " dv");
}

}  // namespace

TEST_SUITE("kernels_attention") {

TEST_CASE("roll_rows: rolls the last words of every row along its sequence, exactly") {
  const uint32_t batch = 3, seq = 8, row_words = 12, first_word = 4;
  std::vector<uint32_t> src(batch * seq * row_words);
  for (size_t i = 0; i < src.size(); i++) src[i] = 0x9e3779b9u * uint32_t(i + 1);
  for (int64_t shift : {3, -3, 11}) {
    Guarded in = Guarded::of_raw(src, "src"), out(src.size() * 4, "dst"), back(src.size() * 4, "back");
    context().run([&](vk::Recorder& r) {
      kernels::roll_rows(r, in.range(), out.range(), batch * seq, seq, row_words, first_word, shift);
    });
    context().run([&](vk::Recorder& r) {
      kernels::roll_rows(r, out.range(), back.range(), batch * seq, seq, row_words, first_word, -shift);
    });
    const std::vector<uint32_t> rolled = out.read<uint32_t>();
    size_t wrong = 0;
    for (uint32_t b = 0; b < batch; b++)
      for (uint32_t i = 0; i < seq; i++)
        for (uint32_t w = 0; w < row_words; w++) {
          const uint32_t source = w < first_word ? i : uint32_t(((int64_t(i) + shift) % seq + seq) % seq);
          wrong += rolled[(b * seq + i) * row_words + w] != src[(b * seq + source) * row_words + w];
        }
    CAPTURE(shift);
    CHECK(wrong == 0);
    CHECK(back.read<uint32_t>() == src);  // the inverse roll (the backward of a roll) restores it
    CHECK(out.guard_intact());
  }
}

TEST_CASE("s2_attention_forward: matches the definition (fp64 reference), GQA, several batches") {
  // seq 16 in groups of 4: 4 q heads on 2 kv heads, the last two shifted by 2 (their last group wraps).
  const S2Inputs in = make_inputs(s2_shape(2, 16, 4, 2, 8), 4, 900);
  test::check_close(gpu_forward(in).o, cpu_forward(in), 1e-11, 5e-6, "s2 o");
  // Not plain causal attention: the groups cut it (an error here of ~1e-1 shows the test can fail).
  std::vector<float> full(q_count(in.shape));
  ref::attention_forward(in.q.data(), in.k.data(), in.v.data(), full.data(), nullptr, in.shape);
  std::vector<float> s2 = cpu_forward(in);
  double largest = 0;
  for (size_t i = 0; i < full.size(); i++) largest = std::max(largest, double(std::fabs(full[i] - s2[i])));
  CHECK(largest > 0.1);
}

TEST_CASE("s2_attention_backward: matches finite differences of the GPU forward and the reference") {
  // As attention_backward's finite-difference case: step 1e-2 on fp32 outputs, NMSE bound 1e-6.
  const S2Inputs in = make_inputs(s2_shape(1, 8, 2, 2, 4), 4, 910);
  const std::vector<float> g = test::random_floats(q_count(in.shape), 911);
  const Gradients analytic = gpu_backward(in, g);
  auto loss_of = [&](std::vector<float> S2Inputs::*tensor) {
    return [&, tensor](const std::vector<float>& values) {
      S2Inputs probe = in;
      probe.*tensor = values;
      return test::dot(gpu_forward(probe).o, g);
    };
  };
  test::check_gradient(loss_of(&S2Inputs::q), in.q, analytic.dq, 1e-2f, 1e-6, 16, "dq");
  test::check_gradient(loss_of(&S2Inputs::k), in.k, analytic.dk, 1e-2f, 1e-6, 16, "dk");
  test::check_gradient(loss_of(&S2Inputs::v), in.v, analytic.dv, 1e-2f, 1e-6, 16, "dv");
  // The reference's gradients, against finite differences of the reference forward (every
  // element), and the GPU's against them on a larger GQA shape.
  check_reference_gradients(in, g, "ref");
  const S2Inputs wide = make_inputs(s2_shape(2, 16, 4, 2, 8), 8, 920);
  const std::vector<float> g_wide = test::random_floats(q_count(wide.shape), 921);
  const Gradients gpu = gpu_backward(wide, g_wide), cpu = cpu_backward(wide, g_wide);
  test::check_close(gpu.dq, cpu.dq, 1e-11, 3e-5, "s2 dq");
  test::check_close(gpu.dk, cpu.dk, 1e-11, 3e-5, "s2 dk");
  test::check_close(gpu.dv, cpu.dv, 1e-11, 3e-5, "s2 dv");
}

// Right padding as the batcher writes it: row b holds lengths[b] real tokens (segment 0), then
// padding (a segment of its own).
std::vector<uint32_t> padded_segments(const AttentionShape& shape, const std::vector<uint32_t>& lengths) {
  std::vector<uint32_t> segments(size_t(shape.batch) * shape.seq_q);
  for (uint32_t b = 0; b < shape.batch; b++)
    for (uint32_t i = 0; i < shape.seq_q; i++) segments[size_t(b) * shape.seq_q + i] = i < lengths[b] ? 0 : 0xffffffffu;
  return segments;
}

TEST_CASE("s2_attention: a padded row's padding is masked, also in the shifted heads' wrapped group") {
  // seq 16, groups of 4, row 1 real for 11 tokens: its shifted heads' last group wraps tokens 0-1
  // after tokens 14-15 (padding), which they must not see (LongLoRA's flash path masks them).
  S2Inputs in = make_inputs(s2_shape(2, 16, 4, 2, 8), 4, 930);
  in.segments = padded_segments(in.shape, {16, 11});
  const Forward forward = gpu_forward(in);
  test::check_close(forward.o, cpu_forward(in), 1e-11, 5e-6, "padded s2 o");
  // The real tokens' outputs do not depend on the padding's q, k, v.
  S2Inputs noisy = in;
  const uint32_t width_q = 4 * 8, width_kv = 2 * 8;
  for (uint32_t i = 11; i < 16; i++) {
    for (uint32_t c = 0; c < width_q; c++) noisy.q[(16 + i) * width_q + c] += 3.0f;
    for (uint32_t c = 0; c < width_kv; c++)
      noisy.k[(16 + i) * width_kv + c] -= 2.0f, noisy.v[(16 + i) * width_kv + c] += 5.0f;
  }
  const std::vector<float> noisy_o = gpu_forward(noisy).o;
  double moved = 0;
  for (uint32_t row = 0; row < 2 * 16; row++)
    if (row < 16 + 11)
      for (uint32_t c = 0; c < width_q; c++)
        moved = std::max(moved, double(std::fabs(noisy_o[row * width_q + c] - forward.o[row * width_q + c])));
  INFO("largest change of a real token's output with the padding's q, k, v changed: " << moved);
  CHECK(moved == 0.0);
  // Backward: against the reference, and no gradient reaches the padding's keys and values from real
  // queries (d_o is zero on padding, as a zero loss weight leaves it).
  std::vector<float> g = test::random_floats(q_count(in.shape), 931);
  for (uint32_t i = 11; i < 16; i++)
    for (uint32_t c = 0; c < width_q; c++) g[(16 + i) * width_q + c] = 0.0f;
  const Gradients gpu = gpu_backward(in, g), cpu = cpu_backward(in, g);
  test::check_close(gpu.dq, cpu.dq, 1e-11, 3e-5, "padded s2 dq");
  test::check_close(gpu.dk, cpu.dk, 1e-11, 3e-5, "padded s2 dk");
  test::check_close(gpu.dv, cpu.dv, 1e-11, 3e-5, "padded s2 dv");
  double padding_gradient = 0;
  for (uint32_t i = 11; i < 16; i++)
    for (uint32_t c = 0; c < width_kv; c++)
      padding_gradient = std::max({padding_gradient, double(std::fabs(gpu.dk[(16 + i) * width_kv + c])),
                                   double(std::fabs(gpu.dv[(16 + i) * width_kv + c]))});
  CHECK(padding_gradient == 0.0);
  // The reference's gradients against finite differences of its forward, on a small padded shape.
  S2Inputs small = make_inputs(s2_shape(1, 8, 2, 2, 4), 4, 940);
  small.segments = padded_segments(small.shape, {6});
  const std::vector<float> g_small = test::random_floats(q_count(small.shape), 941);
  check_reference_gradients(small, g_small, "padded ref");
}

// Packed rows as the batcher writes them with --packing: row b holds examples of lengths[b][s] tokens
// (segment s), then padding (a segment of its own).
std::vector<uint32_t> packed_segments(const AttentionShape& shape, const std::vector<std::vector<uint32_t>>& lengths) {
  std::vector<uint32_t> segments(size_t(shape.batch) * shape.seq_q, 0xffffffffu);
  for (uint32_t b = 0; b < shape.batch; b++) {
    uint32_t cursor = 0;
    for (uint32_t segment = 0; segment < lengths[b].size(); segment++)
      for (uint32_t t = 0; t < lengths[b][segment]; t++) segments[size_t(b) * shape.seq_q + cursor++] = segment;
  }
  return segments;
}

// The largest change of output rows [first, last) of `a` against `b` (width values per row).
double largest_change(const std::vector<float>& a, const std::vector<float>& b, uint32_t first, uint32_t last,
                      uint32_t width) {
  double moved = 0;
  for (uint32_t row = first; row < last; row++)
    for (uint32_t c = 0; c < width; c++)
      moved = std::max(moved, double(std::fabs(a[size_t(row) * width + c] - b[size_t(row) * width + c])));
  return moved;
}

TEST_CASE("s2_attention: packed examples attend only within themselves, inside their groups") {
  // seq 16, groups of 4 (shifted heads rolled by 2). Row 0 packs 6 + 7 tokens, then 3 of padding: the
  // second example starts inside a group of either half. Row 1 packs 9 + 7: the shifted heads' wrapped
  // group holds the second example's last two tokens, then the first's first two, which must not see them.
  S2Inputs in = make_inputs(s2_shape(2, 16, 4, 2, 8), 4, 950);
  in.segments = packed_segments(in.shape, {{6, 7}, {9, 7}});
  const Forward forward = gpu_forward(in);
  test::check_close(forward.o, cpu_forward(in), 1e-11, 5e-6, "packed s2 o");
  // Each example's outputs do not depend on the other example's q, k, v (bit for bit).
  const uint32_t width_q = 4 * 8, width_kv = 2 * 8;
  auto perturbed = [&](uint32_t first, uint32_t last) {
    S2Inputs noisy = in;
    for (uint32_t row = first; row < last; row++) {
      for (uint32_t c = 0; c < width_q; c++) noisy.q[row * width_q + c] += 3.0f;
      for (uint32_t c = 0; c < width_kv; c++) noisy.k[row * width_kv + c] -= 2.0f, noisy.v[row * width_kv + c] += 5.0f;
    }
    return gpu_forward(noisy).o;
  };
  const double row0_second = largest_change(perturbed(0, 6), forward.o, 6, 13, width_q);
  const double row1_first = largest_change(perturbed(16 + 9, 32), forward.o, 16, 16 + 9, width_q);
  INFO("largest change of an example's outputs with the other's q, k, v changed: " << row0_second << ", "
                                                                                   << row1_first);
  CHECK(row0_second == 0.0);
  CHECK(row1_first == 0.0);
  // The segment ids matter here: the same rows without them (one example per row) differ.
  S2Inputs unpacked = in;
  unpacked.segments.clear();
  CHECK(largest_change(cpu_forward(unpacked), forward.o, 6, 13, width_q) > 0.1);
  // Backward against the reference (d_o zero on padding, as a zero loss weight leaves it).
  std::vector<float> g = test::random_floats(q_count(in.shape), 951);
  for (uint32_t i = 13; i < 16; i++)
    for (uint32_t c = 0; c < width_q; c++) g[i * width_q + c] = 0.0f;
  const Gradients gpu = gpu_backward(in, g), cpu = cpu_backward(in, g);
  test::check_close(gpu.dq, cpu.dq, 1e-11, 3e-5, "packed s2 dq");
  test::check_close(gpu.dk, cpu.dk, 1e-11, 3e-5, "packed s2 dk");
  test::check_close(gpu.dv, cpu.dv, 1e-11, 3e-5, "packed s2 dv");
  // The reference's gradients against finite differences of its forward, on a small packed row.
  S2Inputs small = make_inputs(s2_shape(1, 8, 2, 2, 4), 4, 960);
  small.segments = packed_segments(small.shape, {{3, 5}});
  check_reference_gradients(small, test::random_floats(q_count(small.shape), 961), "packed ref");
}

TEST_CASE("s2_attention: shapes it cannot split are named") {
  CHECK(kernels::s2_attention_unsupported(s2_shape(1, 16, 4, 2, 8), 4).empty());
  CHECK(kernels::s2_attention_unsupported(s2_shape(1, 16, 4, 2, 8), 3).find("even") != std::string::npos);
  CHECK(kernels::s2_attention_unsupported(s2_shape(1, 18, 4, 2, 8), 4).find("multiple") != std::string::npos);
  CHECK(kernels::s2_attention_unsupported(s2_shape(1, 16, 4, 1, 8), 4).find("head counts") != std::string::npos);
}

}  // TEST_SUITE
