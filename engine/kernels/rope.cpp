#include "engine/kernels/rope.hpp"

#include <cmath>
#include <numbers>

#include "engine/base/error.hpp"
#include "engine/kernels/act_storage.hpp"
#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {

namespace {
// Rounds to fp32 through memory, so the compiler cannot fuse a product into a following sum
// (fp-contract): every step below must round exactly where torch's fp32 kernels round.
float fp32(float value) {
  volatile float stored = value;
  return stored;
}
}  // namespace

RopeScaling::Type rope_type_from_name(const std::string& name) {
  if (name == "default" || name.empty()) return RopeScaling::Type::none;
  if (name == "linear") return RopeScaling::Type::linear;
  if (name == "llama3") return RopeScaling::Type::llama3;
  throw UserError("rope_scaling type \"" + name + "\" is not supported",
                  "supported: default, linear, llama3 (the rope_type field of config.json)");
}

std::vector<float> rope_inv_freq(uint32_t head_dim, double theta, const RopeScaling& scaling) {
  VKT_ASSERT(head_dim >= 2 && head_dim % 2 == 0, "rope head_dim must be even");
  uint32_t half = head_dim / 2;
  std::vector<float> inv_freq(half);
  // _compute_default_rope_parameters: 1.0 / (base ** (arange(0, dim, 2).float() / dim)).
  // The Python float base becomes fp32; pow in fp32 (correctly rounded: see the header);
  // `1.0 / t` is t.reciprocal() * 1.0.
  float base = static_cast<float>(theta);
  for (uint32_t j = 0; j < half; j++) {
    float exponent = fp32(static_cast<float>(2 * j) / static_cast<float>(head_dim));
    float power = static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(exponent)));
    inv_freq[j] = fp32(1.0f / power);
  }
  if (scaling.type == RopeScaling::Type::linear) {
    float factor = static_cast<float>(scaling.factor);
    for (float& value : inv_freq) value = fp32(value / factor);
  } else if (scaling.type == RopeScaling::Type::llama3) {
    // _compute_llama3_parameters, one fp32 rounding per torch op; Python scalars (doubles) are
    // rounded to fp32 where they meet a tensor, and `s / t` is t.reciprocal() * s.
    float factor = static_cast<float>(scaling.factor);
    double old_context = scaling.original_max_position_embeddings;
    float low_freq_wavelen = static_cast<float>(old_context / scaling.low_freq_factor);
    float high_freq_wavelen = static_cast<float>(old_context / scaling.high_freq_factor);
    float two_pi = static_cast<float>(2 * std::numbers::pi);
    float old_context_f = static_cast<float>(old_context);
    float low_f = static_cast<float>(scaling.low_freq_factor);
    float factor_span = static_cast<float>(scaling.high_freq_factor - scaling.low_freq_factor);
    for (float& value : inv_freq) {
      float wavelen = fp32(fp32(1.0f / value) * two_pi);
      float scaled = wavelen > low_freq_wavelen ? fp32(value / factor) : value;
      float smooth = fp32(fp32(fp32(fp32(1.0f / wavelen) * old_context_f) - low_f) / factor_span);
      float smoothed = fp32(fp32(fp32(fp32(1.0f - smooth) * scaled) / factor) + fp32(smooth * scaled));
      bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
      value = medium ? smoothed : scaled;
    }
  }
  return inv_freq;
}

namespace {
void rope_dispatch(Recorder& recorder, const char* shader, const BufferRange& x, const BufferRange& out,
                   const BufferRange& positions, const BufferRange& inv_freq, uint32_t rows, uint32_t heads,
                   uint32_t head_dim, float attention_scaling, DType act) {
  VKT_ASSERT(head_dim % 2 == 0, std::string(shader) + ": head_dim must be even");
  uint64_t elements = uint64_t(rows) * heads * head_dim;
  require_index_range(elements, shader);
  require_bytes(x, act_bytes(elements, act), shader, "x");
  require_bytes(out, act_bytes(elements, act), shader, "out");
  require_bytes(positions, uint64_t(rows) * 4, shader, "positions");
  require_bytes(inv_freq, uint64_t(head_dim / 2) * 4, shader, "inv_freq");
  struct {
    uint64_t x, out, positions, inv_freq;
    uint32_t rows, heads, head_dim;
    float attention_scaling;
  } push{x.address, out.address, positions.address, inv_freq.address, rows, heads, head_dim, attention_scaling};
  record_dispatch(recorder, {.shader = act_shader(recorder, shader, act),
                             .push = push,
                             .grid = grid_1d(elements / 2, 256),
                             .reads = {x, positions, inv_freq},
                             .writes = {out},
                             .label = shader});
}

void rope_reference(const float* x, float* out, const uint32_t* positions, const float* inv_freq, uint32_t rows,
                    uint32_t heads, uint32_t head_dim, float attention_scaling, double direction) {
  uint32_t half = head_dim / 2;
  for (uint32_t r = 0; r < rows; r++)
    for (uint32_t i = 0; i < half; i++) {
      float angle = static_cast<float>(positions[r]) * inv_freq[i];  // one fp32 product, as HF
      double cosine = std::cos(static_cast<double>(angle)) * attention_scaling;
      double sine = direction * std::sin(static_cast<double>(angle)) * attention_scaling;
      for (uint32_t h = 0; h < heads; h++) {
        size_t first = (size_t(r) * heads + h) * head_dim + i;
        double a = x[first], b = x[first + half];
        out[first] = static_cast<float>(a * cosine - b * sine);
        out[first + half] = static_cast<float>(b * cosine + a * sine);
      }
    }
}
}  // namespace

void rope(Recorder& recorder, const BufferRange& x, const BufferRange& out, const BufferRange& positions,
          const BufferRange& inv_freq, uint32_t rows, uint32_t heads, uint32_t head_dim, float attention_scaling,
          DType act) {
  rope_dispatch(recorder, "rope", x, out, positions, inv_freq, rows, heads, head_dim, attention_scaling, act);
}

void rope_backward(Recorder& recorder, const BufferRange& dy, const BufferRange& dx, const BufferRange& positions,
                   const BufferRange& inv_freq, uint32_t rows, uint32_t heads, uint32_t head_dim,
                   float attention_scaling, DType act) {
  rope_dispatch(recorder, "rope_backward", dy, dx, positions, inv_freq, rows, heads, head_dim, attention_scaling, act);
}

}  // namespace vkt::kernels

namespace vkt::ref {
void rope(const float* x, float* out, const uint32_t* positions, const float* inv_freq, uint32_t rows, uint32_t heads,
          uint32_t head_dim, float attention_scaling) {
  kernels::rope_reference(x, out, positions, inv_freq, rows, heads, head_dim, attention_scaling, 1.0);
}
void rope_backward(const float* dy, float* dx, const uint32_t* positions, const float* inv_freq, uint32_t rows,
                   uint32_t heads, uint32_t head_dim, float attention_scaling) {
  kernels::rope_reference(dy, dx, positions, inv_freq, rows, heads, head_dim, attention_scaling, -1.0);
}
}  // namespace vkt::ref
