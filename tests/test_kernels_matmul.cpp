// matmul_nt / matmul_nn / matmul_tn against the fp64 CPU references: shapes that are not
// multiples of any tile (1, 7, 33, 65, 127, 130) and a realistic one, alpha/beta/bias, batches,
// each storage type in each operand, unaligned operands (scalar loads), both shader bodies
// (direct on CPU drivers, tiled elsewhere: the tiled one is forced with its kill switch), and the
// three forms checked as each other's backward with finite differences. Quantized weights
// (nf4 with and without double quant, int8, int4, int4_asym) against the dense product of the
// CPU-dequantized weight; long inner dimensions (lavapipe's loop limit).
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>

#include "engine/base/error.hpp"
#include "engine/base/half.hpp"
#include "engine/kernels/matmul.hpp"
#include "engine/quant/device.hpp"
#include "engine/quant/ggml_device.hpp"
#include "engine/quant/quantize.hpp"
#include "tests/kernel_harness.hpp"

using namespace vkt;
using kernels::DType;
using test::ScopedEnv;
using vkt::test::context;
using vkt::test::Guarded;

namespace {

enum class Form { nt, nn, tn };

const char* form_name(Form form) {
  return form == Form::nt ? "matmul_nt" : form == Form::nn ? "matmul_nn" : "matmul_tn";
}

float round_to(float value, DType type) {
  if (type == DType::f16) return half_to_float(float_to_half(value));
  if (type == DType::bf16) return bf16_to_float(float_to_bf16(value));
  return value;
}

// Host values already rounded to their storage type, as the kernel will see them.
std::vector<float> random_stored(size_t count, uint32_t seed, DType type) {
  std::vector<float> values = test::random_floats(count, seed);
  for (float& value : values) value = round_to(value, type);
  return values;
}

// A device copy of `values` in `type`, preceded by `offset` unused elements (to make the
// operand's address unaligned) and followed by the guard region.
struct DeviceTensor {
  Guarded buffer;
  size_t offset_bytes;
  kernels::BufferRange range() const {
    kernels::BufferRange full = buffer.range();
    return {full.buffer, full.offset + offset_bytes, full.bytes - offset_bytes, full.address + offset_bytes};
  }
};

DeviceTensor upload_as(const std::vector<float>& values, DType type, size_t offset = 0, const std::string& name = "t") {
  if (values.empty() && offset == 0) offset = 1;  // an empty operand still gets a (never read) buffer
  if (type == DType::f32) {
    std::vector<float> padded(offset, 0.0f);
    padded.insert(padded.end(), values.begin(), values.end());
    return {Guarded::of(padded, name), offset * 4};
  }
  std::vector<uint16_t> raw(offset + values.size(), 0);
  for (size_t i = 0; i < values.size(); i++)
    raw[offset + i] = type == DType::f16 ? float_to_half(values[i]) : float_to_bf16(values[i]);
  return {Guarded::of_raw(raw, name), offset * 2};
}

std::vector<float> read_as(const DeviceTensor& tensor, DType type, size_t count) {
  std::vector<float> values(count);
  if (type == DType::f32) {
    auto all = tensor.buffer.read<float>();
    std::copy(all.begin() + tensor.offset_bytes / 4, all.begin() + tensor.offset_bytes / 4 + count, values.begin());
  } else {
    auto all = tensor.buffer.read<uint16_t>();
    for (size_t i = 0; i < count; i++) {
      uint16_t bits = all[tensor.offset_bytes / 2 + i];
      values[i] = type == DType::f16 ? half_to_float(bits) : bf16_to_float(bits);
    }
  }
  return values;
}

kernels::WeightFormat weight_format(DType type) {
  return type == DType::f16    ? kernels::WeightFormat::f16
         : type == DType::bf16 ? kernels::WeightFormat::bf16
                               : kernels::WeightFormat::f32;
}

struct Case {
  Form form = Form::nt;
  uint32_t m = 1, n = 1, k = 1;                          // as in matmul.hpp for this form
  DType a = DType::f32, w = DType::f32, c = DType::f32;  // w: the weight (nt/nn) or B (tn)
  float alpha = 1, beta = 0;
  bool bias = false;
  uint32_t batch = 1;
  size_t offset_a = 0, offset_w = 0;  // leading unused elements: unaligned operands
  std::string what() const {
    return std::string(form_name(form)) + " M=" + std::to_string(m) + " N=" + std::to_string(n) +
           " K=" + std::to_string(k) + " a=" + kernels::dtype_name(a) + " w=" + kernels::dtype_name(w) +
           " c=" + kernels::dtype_name(c) + " alpha=" + std::to_string(alpha) + " beta=" + std::to_string(beta) +
           (bias ? " bias" : "") + " batch=" + std::to_string(batch) + " offsets=" + std::to_string(offset_a) + "," +
           std::to_string(offset_w);
  }
};

// Element counts of one batch entry's A, W (or B) and C, and the inner (summed) length.
void sizes(const Case& t, size_t& a, size_t& w, size_t& c, uint32_t& inner) {
  if (t.form == Form::nt)
    a = size_t(t.m) * t.k, w = size_t(t.n) * t.k, c = size_t(t.m) * t.n, inner = t.k;
  else if (t.form == Form::nn)
    a = size_t(t.m) * t.n, w = size_t(t.n) * t.k, c = size_t(t.m) * t.k, inner = t.n;
  else
    a = size_t(t.m) * t.n, w = size_t(t.m) * t.k, c = size_t(t.n) * t.k, inner = t.m;
}

void record_case(vk::Recorder& r, const Case& t, const kernels::BufferRange& a, const kernels::BufferRange& w,
                 const kernels::BufferRange& c, const kernels::BufferRange* bias, size_t a_count, size_t w_count,
                 size_t c_count) {
  kernels::MatmulBatch batch{t.batch, a_count, w_count, c_count};
  kernels::WeightRef weight;
  weight.format = weight_format(t.w);
  weight.data = w;
  if (t.form == Form::nt)
    kernels::matmul_nt(r, a, t.a, weight, c, t.c, t.m, t.n, t.k, t.alpha, t.beta, bias, batch);
  else if (t.form == Form::nn)
    kernels::matmul_nn(r, a, t.a, weight, c, t.c, t.m, t.n, t.k, t.alpha, t.beta, batch);
  else
    kernels::matmul_tn(r, a, t.a, w, t.w, c, t.m, t.n, t.k, t.alpha, t.beta, batch);
}

// Tolerances. The reference sees the same rounded inputs (and, for a quantized weight, the same
// dequantized values: quant.glsl is bit-identical to quant::dequantize), so only two errors remain:
// - fp32 accumulation of `inner` products of values in [-1, 1]: rounding errors add up like
//   a random walk, about eps*sqrt(inner) relative to the result scale; 8x that is the bound
//   (eps = 2^-24 per operation, tile-order sums differ from the reference's order);
// - rounding the result to C's storage type: half an ulp, 2^-11 (fp16) or 2^-8 (bf16) relative.
void check_product(const std::vector<float>& actual, const std::vector<float>& expected, uint32_t inner, DType c_type,
                   const std::string& what) {
  double scale = 1e-3;
  for (float value : expected) scale = std::max(scale, double(std::fabs(value)));
  double accumulation = 8.0 * std::ldexp(1.0, -24) * std::sqrt(double(inner) + 1.0);
  double storage = c_type == DType::f16 ? std::ldexp(1.0, -11) : c_type == DType::bf16 ? std::ldexp(1.0, -8) : 0.0;
  double relative = accumulation + storage;
  test::check_close(actual, expected, relative * relative, relative * scale, what);
}

void run_case(Case t, uint32_t seed = 1) {
  if (t.form == Form::tn) t.c = DType::f32;  // matmul_tn writes fp32 weight gradients
  INFO(t.what());
  size_t a_count, w_count, c_count;
  uint32_t inner;
  sizes(t, a_count, w_count, c_count, inner);
  auto a = random_stored(a_count * t.batch, seed, t.a);
  auto w = random_stored(w_count * t.batch, seed + 1, t.w);
  // beta = 0 must ignore C entirely: give it NaNs the kernel must not read.
  auto c_before = t.beta == 0.0f ? std::vector<float>(c_count * t.batch, std::numeric_limits<float>::quiet_NaN())
                                 : random_stored(c_count * t.batch, seed + 2, t.c);
  uint32_t cols = t.form == Form::nt ? t.n : t.k;
  auto bias = test::random_floats(cols, seed + 3);

  DeviceTensor a_device = upload_as(a, t.a, t.offset_a, "A");
  DeviceTensor w_device = upload_as(w, t.w, t.offset_w, "W");
  DeviceTensor c_device = upload_as(c_before, t.c, 0, "C");
  Guarded bias_device = Guarded::of(bias, "bias");
  kernels::BufferRange bias_range = bias_device.range();
  context().run([&](vk::Recorder& r) {
    record_case(r, t, a_device.range(), w_device.range(), c_device.range(), t.bias ? &bias_range : nullptr, a_count,
                w_count, c_count);
  });

  std::vector<float> expected = c_before;
  for (uint32_t b = 0; b < t.batch; b++) {
    const float* a_b = a.data() + b * a_count;
    const float* w_b = w.data() + b * w_count;
    float* c_b = expected.data() + b * c_count;
    if (t.form == Form::nt)
      ref::matmul_nt(a_b, w_b, c_b, t.m, t.n, t.k, t.alpha, t.beta, t.bias ? bias.data() : nullptr);
    else if (t.form == Form::nn)
      ref::matmul_nn(a_b, w_b, c_b, t.m, t.n, t.k, t.alpha, t.beta);
    else
      ref::matmul_tn(a_b, w_b, c_b, t.m, t.n, t.k, t.alpha, t.beta);
  }
  auto actual = read_as(c_device, t.c, expected.size());

  check_product(actual, expected, inner, t.c, t.what());
  CHECK(c_device.buffer.guard_intact());
  CHECK(a_device.buffer.guard_intact());
  CHECK(w_device.buffer.guard_intact());
}

// Shapes not multiple of any tile or vec4 group, and at tile boundaries.
const uint32_t odd_shapes[][3] = {{1, 1, 1},    {7, 33, 65},     {33, 7, 127}, {65, 130, 33},
                                  {127, 65, 7}, {130, 127, 130}, {1, 130, 64}, {129, 1, 12}};

void odd_shape_cases(Form form) {
  for (const auto& shape : odd_shapes) {
    Case t;
    t.form = form;
    t.m = shape[0], t.n = shape[1], t.k = shape[2];
    run_case(t);
  }
}

void scaling_cases(Form form) {
  for (auto [alpha, beta, bias] : {std::tuple{0.5f, 0.0f, false}, {1.0f, 1.0f, false}, {-2.0f, 0.25f, true}}) {
    if (bias && form != Form::nt) continue;
    Case t;
    t.form = form;
    t.m = 33, t.n = 70, t.k = 65;
    t.alpha = alpha, t.beta = beta, t.bias = bias;
    run_case(t, 7);
  }
  // A thin output (16 columns, as a LoRA rank): the direct body computes its transpose, and the
  // bias then runs along the other dimension.
  Case t;
  t.form = form;
  t.m = 70, t.n = 16, t.k = 16;
  t.alpha = 1.5f, t.beta = 0.5f, t.bias = form == Form::nt;
  run_case(t, 9);
  // An empty inner dimension: C = beta * C (+ bias), no operand read.
  t = Case{};
  t.form = form;
  t.m = 5, t.n = 6, t.k = 7;
  (form == Form::nt ? t.k : form == Form::nn ? t.n : t.m) = 0;
  t.beta = 0.5f, t.bias = form == Form::nt;
  run_case(t, 10);
}

void realistic_case(Form form) {
  Case t;
  t.form = form;
  t.m = 256, t.n = 384, t.k = 320;
  run_case(t, 11);
}

// matmul_nn with a dense weight and an inner dimension above 512 fp32 (1024 16-bit) steps runs in
// passes on the direct body (matmul.cpp direct_inner_per_dispatch), each after the first adding into
// C; a remainder pass, beta and 16-bit weights included. VKT_DISABLE_MATMUL_NN_SPLIT=1: one pass,
// the same values within fp32 summation error.
void inner_pass_cases() {
  Case t;
  t.form = Form::nn;
  t.m = 40, t.n = 1300, t.k = 36;
  t.beta = 0.5f;
  run_case(t, 71);
  {
    test::ScopedEnv off("VKT_DISABLE_MATMUL_NN_SPLIT", "1");
    run_case(t, 71);
  }
  if (!context().caps().storage_16bit) return;
  t.w = DType::bf16;
  t.n = 2100;
  run_case(t, 73);
}

void batched_cases(Form form) {
  Case t;
  t.form = form;
  t.m = 33, t.n = 20, t.k = 24;
  t.batch = 3;
  t.beta = 0.5f;
  run_case(t, 13);
  t.m = 7, t.n = 9, t.k = 5;  // odd batch strides: scalar loads
  t.batch = 4;
  run_case(t, 17);
}

// Each storage type in each operand position, plus the all-16-bit combinations a model runs
// with. The type handling does not depend on the tile size, so these run with the smallest
// tiles (faster pipeline compiles; the kill switch is tested along the way).
void storage_cases(Form form) {
  if (!context().caps().storage_16bit) return;
  ScopedEnv small_tiles("VKT_DISABLE_MATMUL_LARGE_TILES", "1");
  const DType f32 = DType::f32, f16 = DType::f16, bf16 = DType::bf16;
  const DType combinations[][3] = {{f16, f32, f32},  {bf16, f32, f32},   {f32, f16, f32},
                                   {f32, bf16, f32}, {f32, f32, f16},    {f32, f32, bf16},
                                   {f16, f16, f16},  {bf16, bf16, bf16}, {bf16, f16, f32}};
  for (const auto& types : combinations) {
    if (form == Form::tn && types[2] != f32) continue;  // matmul_tn writes fp32
    Case t;
    t.form = form;
    t.a = types[0], t.w = types[1], t.c = types[2];
    t.m = 36, t.n = 40, t.k = 44;
    t.beta = t.c == f32 ? 0.0f : 0.5f;  // 16-bit C is also read back
    run_case(t, 19);
  }
  // Odd sizes with 16-bit storage: scalar 16-bit loads and stores at every edge.
  Case t;
  t.form = form;
  t.a = DType::f16, t.w = DType::bf16, t.c = DType::f16;
  t.m = 65, t.n = 33, t.k = 7;
  run_case(t, 23);
}

void unaligned_cases(Form form) {
  for (DType type : {DType::f32, DType::f16}) {
    if (type != DType::f32 && !context().caps().storage_16bit) continue;
    Case t;
    t.form = form;
    t.a = t.w = type;
    t.m = 40, t.n = 36, t.k = 64;  // vec4-friendly sizes, but the operands start one element late
    t.offset_a = 1, t.offset_w = 3;
    run_case(t, 29);
  }
}

// The tiled shader body (the GPU path) on the cases that exercise its edges.
void tiled_body_cases(Form form) {
  ScopedEnv tiled("VKT_DISABLE_MATMUL_DIRECT", "1");
  REQUIRE_FALSE(kernels::matmul_tiling(context(), 256, 256).direct);
  for (const auto& shape : {std::array<uint32_t, 3>{7, 33, 65}, {65, 130, 33}, {130, 127, 132}}) {
    Case t;
    t.form = form;
    t.m = shape[0], t.n = shape[1], t.k = shape[2];
    run_case(t, 31);
  }
  Case t;
  t.form = form;
  t.m = 33, t.n = 70, t.k = 65;
  t.alpha = -2.0f, t.beta = 0.25f, t.bias = form == Form::nt;
  run_case(t, 37);
  t = Case{};
  t.form = form;
  t.m = 33, t.n = 20, t.k = 24, t.batch = 3;
  run_case(t, 41);
  t.offset_a = 1, t.offset_w = 3;  // scalar loads
  run_case(t, 43);
  if (context().caps().storage_16bit) {
    for (DType type : {DType::f16, DType::bf16}) {
      t = Case{};
      t.form = form;
      t.a = t.w = t.c = type;
      t.m = 36, t.n = 40, t.k = 44, t.beta = 0.5f;
      run_case(t, 47);
    }
  }
}

// loss = <C, G> for the product of `form` on the device, fp32, as finite differences see it.
double device_loss(Form form, const std::vector<float>& a, const std::vector<float>& w, const std::vector<float>& g,
                   uint32_t m, uint32_t n, uint32_t k) {
  Case t;
  t.form = form;
  t.m = m, t.n = n, t.k = k;
  size_t a_count, w_count, c_count;
  uint32_t inner;
  sizes(t, a_count, w_count, c_count, inner);
  Guarded a_device = Guarded::of(a, "A"), w_device = Guarded::of(w, "W"), c_device(c_count * 4, "C");
  context().run([&](vk::Recorder& r) {
    record_case(r, t, a_device.range(), w_device.range(), c_device.range(), nullptr, a_count, w_count, c_count);
  });
  return test::dot(c_device.floats(), g);
}

// The three forms are each other's backward: for loss = <C, G>,
//   nt  C = A·Wᵀ:  dA = G·W  (nn),    dW = Gᵀ·A (tn)
//   nn  C = A·W:   dA = G·Wᵀ (nt),    dW = Aᵀ·G (tn)
//   tn  C = Aᵀ·B:  dA = B·Gᵀ (nt),    dB = A·G  (nn)
// The analytic gradients come from the other two kernels on the device; the numeric ones from
// 4-point differences of the forward kernel. The loss is bilinear, so the differences are exact
// up to fp32 rounding of C (~1e-7 relative over a few dozen terms, divided by 12*step = 3):
// NMSE 1e-8 leaves a wide margin and still fails on any wrong index or transpose.
void gradient_case(Form form) {
  const uint32_t m = 5, n = 6, k = 7;
  Case t;
  t.form = form;
  t.m = m, t.n = n, t.k = k;
  size_t a_count, w_count, c_count;
  uint32_t inner;
  sizes(t, a_count, w_count, c_count, inner);
  auto a = test::random_floats(a_count, 51), w = test::random_floats(w_count, 52), g = test::random_floats(c_count, 53);
  Guarded a_device = Guarded::of(a, "A"), w_device = Guarded::of(w, "W"), g_device = Guarded::of(g, "G");
  Guarded da_device(a_count * 4, "dA"), dw_device(w_count * 4, "dW");
  kernels::BufferRange a_range = a_device.range(), w_range = w_device.range(), g_range = g_device.range();
  context().run([&](vk::Recorder& r) {
    auto dense = [](const kernels::BufferRange& range) { return kernels::dense_f32(range); };
    if (form == Form::nt) {
      kernels::matmul_nn(r, g_range, DType::f32, dense(w_range), da_device.range(), DType::f32, m, n, k);
      kernels::matmul_tn(r, g_range, DType::f32, a_range, DType::f32, dw_device.range(), m, n, k);
    } else if (form == Form::nn) {
      kernels::matmul_nt(r, g_range, DType::f32, dense(w_range), da_device.range(), DType::f32, m, n, k);
      kernels::matmul_tn(r, a_range, DType::f32, g_range, DType::f32, dw_device.range(), m, n, k);
    } else {
      kernels::matmul_nt(r, w_range, DType::f32, dense(g_range), da_device.range(), DType::f32, m, n, k);
      kernels::matmul_nn(r, a_range, DType::f32, dense(g_range), dw_device.range(), DType::f32, m, n, k);
    }
  });
  auto da = da_device.floats(), dw = dw_device.floats();
  CHECK(da_device.guard_intact());
  CHECK(dw_device.guard_intact());
  test::check_gradient([&](const std::vector<float>& x) { return device_loss(form, x, w, g, m, n, k); }, a, da, 0.25f,
                       1e-8, 12, std::string(form_name(form)) + " dA");
  test::check_gradient([&](const std::vector<float>& x) { return device_loss(form, a, x, g, m, n, k); }, w, dw, 0.25f,
                       1e-8, 12, std::string(form_name(form)) + (form == Form::tn ? " dB" : " dW"));
}


// ---------------------------------------------------------------------------------------------
// Quantized weights: matmul_nt (Y = X·deq(W)ᵀ, W read along in-features) and matmul_nn
// (dX = dY·deq(W), W read along out-features) with W quantized by quant::quantize, against the
// fp64 reference on quant::dequantize() of the same codes.

using kernels::WeightFormat;

struct QuantCase {
  Form form = Form::nt;          // nt or nn
  uint32_t m = 1, n = 1, k = 1;  // as in matmul.hpp: W is (n, k)
  WeightFormat format = WeightFormat::nf4;
  uint32_t block_size = 64;
  bool double_quant = false;
  DType a = DType::f32, c = DType::f32;
  float alpha = 1, beta = 0;
  bool bias = false;
  uint32_t batch = 1;
  std::string what() const {
    return std::string(form_name(form)) + " M=" + std::to_string(m) + " N=" + std::to_string(n) +
           " K=" + std::to_string(k) + " w=" + kernels::weight_format_name(format) + (double_quant ? "+dq" : "") +
           " block=" + std::to_string(block_size) + " a=" + kernels::dtype_name(a) + " c=" + kernels::dtype_name(c) +
           " alpha=" + std::to_string(alpha) + " beta=" + std::to_string(beta) + (bias ? " bias" : "") +
           " batch=" + std::to_string(batch);
  }
};

// The formats with their block-size-64 defaults: nf4 with and without double quant, int8, int4, int4_asym.
std::vector<QuantCase> every_format(QuantCase base) {
  std::vector<QuantCase> cases;
  for (auto [format, double_quant] : {std::pair{WeightFormat::nf4, true},
                                      {WeightFormat::nf4, false},
                                      {WeightFormat::int8, false},
                                      {WeightFormat::int4, false},
                                      {WeightFormat::int4_asym, false}}) {
    base.format = format, base.double_quant = double_quant;
    cases.push_back(base);
  }
  return cases;
}

void record_quant(vk::Recorder& r, Form form, const kernels::BufferRange& a, DType a_type, const kernels::WeightRef& w,
                  const kernels::BufferRange& c, DType c_type, uint32_t m, uint32_t n, uint32_t k, float alpha,
                  float beta, const kernels::BufferRange* bias, kernels::MatmulBatch batch = {}) {
  if (form == Form::nt)
    kernels::matmul_nt(r, a, a_type, w, c, c_type, m, n, k, alpha, beta, bias, batch);
  else
    kernels::matmul_nn(r, a, a_type, w, c, c_type, m, n, k, alpha, beta, batch);
}

void run_quant_case(const QuantCase& t, uint32_t seed = 1) {
  INFO(t.what());
  uint32_t inner = t.form == Form::nt ? t.k : t.n;
  uint32_t cols = t.form == Form::nt ? t.n : t.k;
  size_t a_count = size_t(t.m) * inner, w_count = size_t(t.n) * t.k, c_count = size_t(t.m) * cols;
  // The batch entries' weights are consecutive slices of one flattened (batch*n, k) weight, so
  // quantization blocks straddle rows and, when n*k is not a multiple of the block, entries.
  auto w = test::random_floats(w_count * t.batch, seed + 1);
  quant::QuantizedWeight q =
      quant::quantize(w.data(), t.n * t.batch, t.k, t.format, {t.block_size, t.double_quant}, "W");
  std::vector<float> deq = quant::dequantize(q);
  quant::DeviceWeight device_w = quant::upload(context(), q, "W");

  auto a = random_stored(a_count * t.batch, seed, t.a);
  auto c_before = t.beta == 0.0f ? std::vector<float>(c_count * t.batch, std::numeric_limits<float>::quiet_NaN())
                                 : random_stored(c_count * t.batch, seed + 2, t.c);
  auto bias = test::random_floats(cols, seed + 3);
  DeviceTensor a_device = upload_as(a, t.a, 0, "A");
  DeviceTensor c_device = upload_as(c_before, t.c, 0, "C");
  Guarded bias_device = Guarded::of(bias, "bias");
  kernels::BufferRange bias_range = bias_device.range();
  kernels::MatmulBatch batch{t.batch, a_count, w_count, c_count};
  context().run([&](vk::Recorder& r) {
    record_quant(r, t.form, a_device.range(), t.a, device_w.ref, c_device.range(), t.c, t.m, t.n, t.k, t.alpha, t.beta,
                 t.bias ? &bias_range : nullptr, batch);
  });

  std::vector<float> expected = c_before;
  for (uint32_t b = 0; b < t.batch; b++) {
    const float* a_b = a.data() + b * a_count;
    const float* w_b = deq.data() + b * w_count;
    float* c_b = expected.data() + b * c_count;
    if (t.form == Form::nt)
      ref::matmul_nt(a_b, w_b, c_b, t.m, t.n, t.k, t.alpha, t.beta, t.bias ? bias.data() : nullptr);
    else
      ref::matmul_nn(a_b, w_b, c_b, t.m, t.n, t.k, t.alpha, t.beta);
  }
  check_product(read_as(c_device, t.c, expected.size()), expected, inner, t.c, t.what());
  CHECK(c_device.buffer.guard_intact());
  CHECK(a_device.buffer.guard_intact());
}

// Every format; block sizes 64, 32 and 128 (and 16 for int4); in_features a multiple of 4
// (4-element loads) and odd (scalar loads); out 33 x in 100 puts blocks across row boundaries.
void quant_format_cases(Form form) {
  QuantCase shape;
  shape.form = form;
  shape.m = 7, shape.n = 33, shape.k = 100;
  for (QuantCase t : every_format(shape)) run_quant_case(t, 61);
  shape.m = 5, shape.n = 17, shape.k = 65;
  for (QuantCase t : every_format(shape)) run_quant_case(t, 67);
  shape.m = 7, shape.n = 33, shape.k = 100;
  for (auto [format, double_quant, block] : {std::tuple{WeightFormat::nf4, true, 32u},
                                             {WeightFormat::nf4, true, 128u},
                                             {WeightFormat::nf4, false, 128u},
                                             {WeightFormat::int8, false, 32u},
                                             {WeightFormat::int4, false, 16u},
                                             {WeightFormat::int4_asym, false, 128u}}) {
    QuantCase t = shape;
    t.format = format, t.double_quant = double_quant, t.block_size = block;
    run_quant_case(t, 71);
  }
  // Many workgroups in both dimensions, and more than 256 blocks (a second absmax_scales group).
  QuantCase t = shape;
  t.m = 130, t.n = 320, t.k = 96, t.double_quant = true;
  run_quant_case(t, 73);
}

void quant_scaling_cases(Form form) {
  QuantCase t;
  t.form = form;
  t.m = 33, t.n = 70, t.k = 68;
  t.format = WeightFormat::nf4, t.double_quant = true;
  t.alpha = -2.0f, t.beta = 0.25f, t.bias = form == Form::nt;
  run_quant_case(t, 79);
  // A thin output (nt: 16 out-features, as a LoRA rank): dense weights would take the direct
  // body's transposed launch, a quantized one must stay the R operand.
  t.m = 70, t.n = form == Form::nt ? 16 : 64, t.k = form == Form::nt ? 64 : 16;
  t.format = WeightFormat::int4_asym, t.double_quant = false;
  run_quant_case(t, 83);
  // Batched: entry strides of 9*20 = 180 elements, not a multiple of the block.
  t = QuantCase{};
  t.form = form;
  t.m = 7, t.n = 9, t.k = 20, t.batch = 3, t.beta = 0.5f;
  t.format = WeightFormat::nf4, t.double_quant = true;
  run_quant_case(t, 89);
  t.format = WeightFormat::int8, t.double_quant = false;
  run_quant_case(t, 97);
}

// 16-bit activations and outputs with a quantized weight (QLoRA's bf16 compute type).
void quant_storage_cases(Form form) {
  if (!context().caps().storage_16bit) return;
  QuantCase t;
  t.form = form;
  t.m = 36, t.n = 40, t.k = 44;
  t.format = WeightFormat::nf4, t.double_quant = true;
  t.a = DType::bf16, t.c = DType::bf16, t.beta = 0.5f;
  run_quant_case(t, 101);
  t.format = WeightFormat::int4, t.double_quant = false;
  t.a = DType::f16, t.c = DType::f32, t.beta = 0.0f;
  run_quant_case(t, 103);
}

void quant_tiled_body_cases(Form form) {
  ScopedEnv tiled("VKT_DISABLE_MATMUL_DIRECT", "1");
  REQUIRE_FALSE(kernels::matmul_tiling(context(), 256, 256).direct);
  QuantCase shape;
  shape.form = form;
  shape.m = 7, shape.n = 33, shape.k = 100;
  for (QuantCase t : every_format(shape)) run_quant_case(t, 107);
  QuantCase t = shape;
  t.m = 65, t.n = 130, t.k = 33;  // scalar loads, several tiles
  t.format = WeightFormat::int4_asym, t.block_size = 32;
  run_quant_case(t, 109);
  t = shape;
  t.m = 7, t.n = 9, t.k = 20, t.batch = 3, t.beta = 0.5f, t.alpha = 1.5f, t.bias = form == Form::nt;
  t.double_quant = true, t.block_size = 128;
  run_quant_case(t, 113);
}

// The quantized matmul_nn is the backward of the quantized matmul_nt with respect to x: for
// loss = <X·deq(W)ᵀ, G>, dX = G·deq(W). Bilinear loss: the 4-point differences are exact up to fp32
// rounding of Y, so NMSE 1e-8 (as for the dense forms) fails on any index or transpose error.
void quant_gradient_case(WeightFormat format, bool double_quant) {
  const uint32_t m = 5, n = 9, k = 24;  // W: 216 elements, blocks of 64 across rows
  INFO(kernels::weight_format_name(format) << (double_quant ? "+dq" : ""));
  auto w = test::random_floats(size_t(n) * k, 121);
  quant::QuantizedWeight q = quant::quantize(w.data(), n, k, format, {64, double_quant}, "W");
  quant::DeviceWeight device_w = quant::upload(context(), q, "W");
  auto x = test::random_floats(size_t(m) * k, 122), g = test::random_floats(size_t(m) * n, 123);
  Guarded g_device = Guarded::of(g, "G"), dx_device(size_t(m) * k * 4, "dX");
  context().run([&](vk::Recorder& r) {
    kernels::matmul_nn(r, g_device.range(), DType::f32, device_w.ref, dx_device.range(), DType::f32, m, n, k);
  });
  CHECK(dx_device.guard_intact());
  auto loss = [&](const std::vector<float>& x_now) {
    Guarded x_device = Guarded::of(x_now, "X"), y_device(size_t(m) * n * 4, "Y");
    context().run([&](vk::Recorder& r) {
      kernels::matmul_nt(r, x_device.range(), DType::f32, device_w.ref, y_device.range(), DType::f32, m, n, k);
    });
    return test::dot(y_device.floats(), g);
  };
  test::check_gradient(loss, x, dx_device.floats(), 0.25f, 1e-8, 12,
                       std::string("quantized ") + kernels::weight_format_name(format) + " dX");
}

// Every code byte value 0..255 in every format, with hand-picked statistics, through both
// products with identity activations: nt with A = I (K x K) gives C = deq(W)ᵀ and nn with A = I
// (N x N) gives C = deq(W), each output one exact product (the other terms are exact zeros), so
// the load stage must reproduce quant::dequantize bit for bit (including the NF4 pair table).
void every_code_case(WeightFormat format, bool double_quant, bool tiled_body) {
  std::optional<ScopedEnv> tiled;
  if (tiled_body) tiled.emplace("VKT_DISABLE_MATMUL_DIRECT", "1");
  std::string what = std::string(kernels::weight_format_name(format)) + (double_quant ? "+dq" : "") +
                     (tiled_body ? " tiled body" : " default body");
  INFO(what);
  quant::QuantizedWeight q;
  q.format = format;
  q.rows = 4, q.cols = 128;  // 512 elements, 8 blocks of 64
  q.block_size = 64;
  q.double_quant = double_quant;
  size_t code_bytes = format == WeightFormat::int8 ? 512 : 256;
  q.data.resize(code_bytes);
  for (size_t i = 0; i < code_bytes; i++) q.data[i] = static_cast<uint8_t>(i);
  if (double_quant) {
    q.absmax_codes = {0, 37, 100, 127, 128, 200, 254, 255};
    q.absmax_scales = {0.75f};
    q.absmax_offset = 0.3125f;
  } else {
    q.scales = {0.5f, 1.0f, 2.0f, 0.25f, 3.0f, 0.125f, 1.5f, 0.7f};
  }
  if (format == WeightFormat::int4_asym) q.zeros = {0, 3, 8, 15, 1, 7, 9, 12};
  std::vector<float> deq = quant::dequantize(q);
  quant::DeviceWeight device_w = quant::upload(context(), q, "W");
  for (Form form : {Form::nt, Form::nn}) {
    INFO(form_name(form));
    uint32_t size = form == Form::nt ? q.cols : q.rows;  // A = I (size x size)
    std::vector<float> identity(size_t(size) * size, 0.0f);
    for (uint32_t i = 0; i < size; i++) identity[size_t(i) * size + i] = 1.0f;
    Guarded a_device = Guarded::of(identity, "I"), c_device(deq.size() * 4, "C");
    context().run([&](vk::Recorder& r) {
      record_quant(r, form, a_device.range(), DType::f32, device_w.ref, c_device.range(), DType::f32, size, q.rows,
                   q.cols, 1.0f, 0.0f, nullptr);
    });
    std::vector<float> c = c_device.floats();
    size_t mismatches = 0, first = 0;
    for (uint32_t j = 0; j < q.rows; j++)
      for (uint32_t p = 0; p < q.cols; p++) {
        float expected = deq[size_t(j) * q.cols + p];
        float actual = form == Form::nt ? c[size_t(p) * q.rows + j] : c[size_t(j) * q.cols + p];
        // == rather than bits: a sum starting from +0 turns an exact -0.0 (code 0.0 times a
        // negative decoded absmax) into +0.0.
        if (!(actual == expected) && mismatches++ == 0) first = size_t(j) * q.cols + p;
      }
    INFO("first mismatch at element " << first);
    CHECK(mismatches == 0);
    CHECK(c_device.guard_intact());
  }
}

// Long inner dimensions. lavapipe silently leaves a shader's loops after 65535 iterations per
// invocation (all loops together): K = 14336 (Llama-3-8B's MLP width; nt reads it as in-features,
// nn as out-features) must come out whole on both bodies, dense and quantized, and an inner
// dimension of 300000 (75000 four-step iterations in the direct body) is split across dispatches
// by the host. Small M and N keep these fast.
void long_inner_cases(Form form, bool tiled_body) {
  std::optional<ScopedEnv> tiled;
  if (tiled_body) tiled.emplace("VKT_DISABLE_MATMUL_DIRECT", "1");
  if (tiled_body) REQUIRE_FALSE(kernels::matmul_tiling(context(), 64, 64).direct);
  for (uint32_t inner : {14336u, 300000u}) {
    Case t;
    t.form = form;
    t.m = 3, t.n = 5, t.k = 8;
    (form == Form::nt ? t.k : form == Form::nn ? t.n : t.m) = inner;
    t.beta = 0.5f, t.bias = form == Form::nt;
    run_case(t, 131);
    if (form == Form::tn) continue;
    QuantCase q;
    q.form = form;
    q.m = 3, q.n = t.n, q.k = t.k;
    q.double_quant = true;
    q.bias = t.bias;
    run_quant_case(q, 137);
  }
}

// ---- ggml block formats (a GGUF base kept as stored) ----

constexpr quant::GgmlType every_ggml_block_type[] = {
    quant::GgmlType::Q8_0, quant::GgmlType::Q4_0, quant::GgmlType::Q4_1, quant::GgmlType::Q5_0,
    quant::GgmlType::Q5_1, quant::GgmlType::Q4_K, quant::GgmlType::Q5_K, quant::GgmlType::Q6_K};

struct GgmlCase {
  Form form = Form::nt;
  quant::GgmlType type = quant::GgmlType::Q8_0;
  uint32_t m = 7, n = 9, k = 256;  // W: (n, k), k a multiple of the block
  float alpha = 1, beta = 0;
  bool bias = false;
  DType a = DType::f32, c = DType::f32;
  std::string what() const {
    return std::string(form_name(form)) + " " + quant::ggml_type_name(type) + " M=" + std::to_string(m) +
           " N=" + std::to_string(n) + " K=" + std::to_string(k) + " alpha=" + std::to_string(alpha) +
           " beta=" + std::to_string(beta) + (bias ? " bias" : "") + " a=" + kernels::dtype_name(a) +
           " c=" + kernels::dtype_name(c);
  }
};

// The product with W as raw ggml blocks against the fp64 product with quant::dequantize_ggml(W).
// Tolerance: check_product's (fp32 summation order and C's storage rounding only; the decoding
// itself is exact, see ggml_every_element_case).
void run_ggml_case(const GgmlCase& t, uint32_t seed) {
  INFO(t.what());
  uint32_t inner = t.form == Form::nt ? t.k : t.n;
  uint32_t cols = t.form == Form::nt ? t.n : t.k;
  std::vector<uint8_t> blocks = test::random_ggml_blocks(t.type, uint64_t{t.n} * t.k, seed + 1);
  std::vector<float> deq(size_t{t.n} * t.k);
  quant::dequantize_ggml(t.type, blocks, deq);
  quant::DeviceWeight device_w = quant::upload_ggml(context(), t.type, t.n, t.k, blocks, "W");
  auto a = random_stored(size_t{t.m} * inner, seed, t.a);
  auto c_before = t.beta == 0.0f ? std::vector<float>(size_t{t.m} * cols, std::numeric_limits<float>::quiet_NaN())
                                 : random_stored(size_t{t.m} * cols, seed + 2, t.c);
  auto bias = test::random_floats(cols, seed + 3);
  DeviceTensor a_device = upload_as(a, t.a, 0, "A");
  DeviceTensor c_device = upload_as(c_before, t.c, 0, "C");
  Guarded bias_device = Guarded::of(bias, "bias");
  kernels::BufferRange bias_range = bias_device.range();
  context().run([&](vk::Recorder& r) {
    record_quant(r, t.form, a_device.range(), t.a, device_w.ref, c_device.range(), t.c, t.m, t.n, t.k, t.alpha, t.beta,
                 t.bias ? &bias_range : nullptr);
  });
  std::vector<float> expected = c_before;
  if (t.form == Form::nt)
    ref::matmul_nt(a.data(), deq.data(), expected.data(), t.m, t.n, t.k, t.alpha, t.beta,
                   t.bias ? bias.data() : nullptr);
  else
    ref::matmul_nn(a.data(), deq.data(), expected.data(), t.m, t.n, t.k, t.alpha, t.beta);
  check_product(read_as(c_device, t.c, expected.size()), expected, inner, t.c, t.what());
  CHECK(c_device.buffer.guard_intact());
}

// Every type, 32-block types also with K = 96; several workgroups; alpha/beta/bias; 16-bit A and C.
void ggml_product_cases(Form form) {
  for (quant::GgmlType type : every_ggml_block_type) {
    GgmlCase t;
    t.form = form, t.type = type;
    run_ggml_case(t, 131);
    if (quant::ggml_type_info(type).block_elems == 32) {
      t.m = 5, t.n = 33, t.k = 96;
      run_ggml_case(t, 137);
    }
  }
  GgmlCase t;
  t.form = form, t.type = quant::GgmlType::Q4_K;
  t.m = 70, t.n = 130, t.k = 512, t.alpha = -1.5f, t.beta = 0.5f, t.bias = form == Form::nt;
  run_ggml_case(t, 139);
  t.type = quant::GgmlType::Q6_K, t.m = 40, t.n = 16, t.k = 256;  // a thin output stays the R operand
  run_ggml_case(t, 149);
  if (context().caps().storage_16bit) {
    t.type = quant::GgmlType::Q8_0, t.a = DType::bf16, t.c = DType::bf16, t.n = 36;
    run_ggml_case(t, 151);
  }
}

// A = I: C holds W's decoded elements themselves (one exact product each), so every element of
// random blocks must equal quant::dequantize_ggml exactly, through 4-element and scalar loads.
void ggml_every_element_case(quant::GgmlType type, bool tiled_body, bool scalar_loads) {
  std::optional<ScopedEnv> tiled, scalar;
  if (tiled_body) tiled.emplace("VKT_DISABLE_MATMUL_DIRECT", "1");
  if (scalar_loads) scalar.emplace("VKT_DISABLE_MATMUL_VEC4", "1");
  INFO(quant::ggml_type_name(type) << (tiled_body ? " tiled body" : " default body")
                                   << (scalar_loads ? " scalar loads" : ""));
  const uint32_t rows = 3, cols = 256;
  std::vector<uint8_t> blocks = test::random_ggml_blocks(type, uint64_t{rows} * cols, 157, 0.05f, true);
  std::vector<float> deq(size_t{rows} * cols);
  quant::dequantize_ggml(type, blocks, deq);
  quant::DeviceWeight device_w = quant::upload_ggml(context(), type, rows, cols, blocks, "W");
  for (Form form : {Form::nt, Form::nn}) {
    INFO(form_name(form));
    uint32_t size = form == Form::nt ? cols : rows;
    std::vector<float> identity(size_t(size) * size, 0.0f);
    for (uint32_t i = 0; i < size; i++) identity[size_t(i) * size + i] = 1.0f;
    Guarded a_device = Guarded::of(identity, "I"), c_device(deq.size() * 4, "C");
    context().run([&](vk::Recorder& r) {
      record_quant(r, form, a_device.range(), DType::f32, device_w.ref, c_device.range(), DType::f32, size, rows, cols,
                   1.0f, 0.0f, nullptr);
    });
    std::vector<float> c = c_device.floats();
    size_t mismatches = 0, first = 0;
    for (uint32_t j = 0; j < rows; j++)
      for (uint32_t p = 0; p < cols; p++) {
        float expected = deq[size_t(j) * cols + p];
        float actual = form == Form::nt ? c[size_t(p) * rows + j] : c[size_t(j) * cols + p];
        if (!(actual == expected) && mismatches++ == 0) first = size_t(j) * cols + p;  // == : -0 sums to +0
      }
    INFO("first mismatch at element " << first);
    CHECK(mismatches == 0);
    CHECK(c_device.guard_intact());
  }
}

}  // namespace

TEST_SUITE("kernels_matmul") {

TEST_CASE("matmul_nt: odd shapes against the fp64 reference") { odd_shape_cases(Form::nt); }
TEST_CASE("matmul_nt: alpha, beta and bias") { scaling_cases(Form::nt); }
TEST_CASE("matmul_nt: realistic shape 256x384x320") { realistic_case(Form::nt); }
TEST_CASE("matmul_nt: batched") { batched_cases(Form::nt); }
TEST_CASE("matmul_nt: every fp32/fp16/bf16 storage combination") { storage_cases(Form::nt); }
TEST_CASE("matmul_nt: unaligned operands fall back to scalar loads") { unaligned_cases(Form::nt); }
TEST_CASE("matmul_nt: tiled body (GPU path) on odd shapes, scaling, batches, 16-bit") { tiled_body_cases(Form::nt); }
TEST_CASE("matmul_nt: gradients are matmul_nn and matmul_tn") { gradient_case(Form::nt); }
TEST_CASE("matmul_nn: odd shapes against the fp64 reference") { odd_shape_cases(Form::nn); }
TEST_CASE("matmul_nn: alpha and beta") { scaling_cases(Form::nn); }
TEST_CASE("matmul_nn: realistic shape 256x384x320") { realistic_case(Form::nn); }
TEST_CASE("matmul_nn: batched") { batched_cases(Form::nn); }
TEST_CASE("matmul_nn: a long inner dimension in L2-sized passes (dense weight)") { inner_pass_cases(); }
TEST_CASE("matmul_nn: every fp32/fp16/bf16 storage combination") { storage_cases(Form::nn); }
TEST_CASE("matmul_nn: unaligned operands fall back to scalar loads") { unaligned_cases(Form::nn); }
TEST_CASE("matmul_nn: tiled body (GPU path) on odd shapes, scaling, batches, 16-bit") { tiled_body_cases(Form::nn); }
TEST_CASE("matmul_nn: gradients are matmul_nt and matmul_tn") { gradient_case(Form::nn); }

TEST_CASE("matmul_tn: odd shapes against the fp64 reference") { odd_shape_cases(Form::tn); }
TEST_CASE("matmul_tn: alpha and beta") { scaling_cases(Form::tn); }
TEST_CASE("matmul_tn: realistic shape 256x384x320") { realistic_case(Form::tn); }
TEST_CASE("matmul_tn: batched") { batched_cases(Form::tn); }
TEST_CASE("matmul_tn: every fp32/fp16/bf16 storage combination") { storage_cases(Form::tn); }
TEST_CASE("matmul_tn: unaligned operands fall back to scalar loads") { unaligned_cases(Form::tn); }
TEST_CASE("matmul_tn: tiled body (GPU path) on odd shapes, scaling, batches, 16-bit") { tiled_body_cases(Form::tn); }
TEST_CASE("matmul_tn: gradients are matmul_nt and matmul_nn") { gradient_case(Form::tn); }

TEST_CASE("matmul_nt: quantized weights, every format and block size, against the dequantized product") {
  quant_format_cases(Form::nt);
}
TEST_CASE("matmul_nt: quantized weight with alpha, beta, bias, a thin output and batches") {
  quant_scaling_cases(Form::nt);
}
TEST_CASE("matmul_nt: quantized weight with 16-bit activations and output") { quant_storage_cases(Form::nt); }
TEST_CASE("matmul_nt: quantized weights on the tiled body (GPU path)") { quant_tiled_body_cases(Form::nt); }
TEST_CASE("matmul_nt: long inner dimensions (lavapipe's loop limit), direct body") {
  long_inner_cases(Form::nt, false);
}
TEST_CASE("matmul_nt: long inner dimensions (lavapipe's loop limit), tiled body") { long_inner_cases(Form::nt, true); }
TEST_CASE("matmul_nn: quantized weights, every format and block size, against the dequantized product") {
  quant_format_cases(Form::nn);
}
TEST_CASE("matmul_nn: quantized weight with alpha, beta, a thin output and batches") { quant_scaling_cases(Form::nn); }
TEST_CASE("matmul_nn: quantized weight with 16-bit activations and output") { quant_storage_cases(Form::nn); }
TEST_CASE("matmul_nn: quantized weights on the tiled body (GPU path)") { quant_tiled_body_cases(Form::nn); }
TEST_CASE("matmul_nn: long inner dimensions (lavapipe's loop limit), direct body") {
  long_inner_cases(Form::nn, false);
}
TEST_CASE("matmul_nn: long inner dimensions (lavapipe's loop limit), tiled body") { long_inner_cases(Form::nn, true); }
TEST_CASE("matmul_nt: every code byte of every format decodes as quant::dequantize, in nt and nn, both bodies") {
  for (bool tiled_body : {false, true}) {
    for (auto [format, double_quant] : {std::pair{WeightFormat::nf4, true},
                                        {WeightFormat::nf4, false},
                                        {WeightFormat::int8, false},
                                        {WeightFormat::int4, false},
                                        {WeightFormat::int4_asym, false}})
      every_code_case(format, double_quant, tiled_body);
  }
}
TEST_CASE("matmul_nn: quantized backward of matmul_nt with respect to x (finite differences)") {
  quant_gradient_case(WeightFormat::nf4, true);
  quant_gradient_case(WeightFormat::int4_asym, false);
}
TEST_CASE("matmul_tn: long inner dimensions (lavapipe's loop limit), direct body") {
  long_inner_cases(Form::tn, false);
}
TEST_CASE("matmul_tn: long inner dimensions (lavapipe's loop limit), tiled body") { long_inner_cases(Form::tn, true); }

TEST_CASE("matmul_nt: ggml block weights (GGUF) against the dequantized product") { ggml_product_cases(Form::nt); }
TEST_CASE("matmul_nn: ggml block weights (GGUF) against the dequantized product") { ggml_product_cases(Form::nn); }
TEST_CASE("matmul_nt: ggml block weights decode every element exactly, in nt and nn, both bodies") {
  for (quant::GgmlType type : every_ggml_block_type) {
    ggml_every_element_case(type, false, false);
    ggml_every_element_case(type, true, false);
    ggml_every_element_case(type, false, true);
  }
}

}  // TEST_SUITE
