#pragma once
// Rotary position embeddings, HF rotate_half convention, on q or k stored as
// (rows, heads, head_dim) fp32 with rows = tokens. Every rope scaling type reduces to a table of
// inverse frequencies (head_dim / 2) computed once on the host; the shaders compute
// angle = float(position) * inv_freq[i] in fp32 (exactly as HF's fp32 matmul does) and its
// cos/sin to about 1 ulp (shaders/trig.glsl) for angles below 4e5 radians.
#include <string>
#include <vector>

#include "engine/kernels/dispatch.hpp"
#include "engine/kernels/types.hpp"

namespace vkt::kernels {

// config.json's rope_scaling. Fields are doubles because HF mixes Python floats (double) into
// its fp32 tensor arithmetic; rope_inv_freq reproduces each rounding.
struct RopeScaling {
  enum class Type { none, linear, llama3 };  // "default" (or no rope_scaling), "linear", "llama3"
  Type type = Type::none;
  double factor = 1.0;                             // linear, llama3
  double low_freq_factor = 1.0;                    // llama3
  double high_freq_factor = 4.0;                   // llama3
  double original_max_position_embeddings = 8192;  // llama3
};

// HF's rope_type names: "default", "linear", "llama3"; anything else throws UserError.
RopeScaling::Type rope_type_from_name(const std::string& name);

// inv_freq (head_dim / 2) fp32, bit-identical to transformers' _compute_default_rope_parameters /
// _compute_linear_scaling_rope_parameters / _compute_llama3_parameters run on the CPU in fp32,
// with one caveat: base ** (2j / d) is rounded correctly here, as torch's scalar CPU path (glibc
// powf) does; torch's vectorized path (Sleef, 1-ulp) differs by 1 ulp on ~0.7% of entries.
std::vector<float> rope_inv_freq(uint32_t head_dim, double theta, const RopeScaling& scaling = {});

// x: (rows, heads, head_dim) act; out: same shape and type, may be x (in place);
// positions: (rows) uint32 (restart at 0 for each packed document); inv_freq: (head_dim / 2) fp32.
// cos and sin are multiplied by attention_scaling (1 for default, linear and llama3).
// act: the storage type of x/out, dy/dx (engine/kernels/act_storage.hpp), arithmetic in fp32.
void rope(Recorder& recorder, const BufferRange& x, const BufferRange& out, const BufferRange& positions,
          const BufferRange& inv_freq, uint32_t rows, uint32_t heads, uint32_t head_dim, float attention_scaling = 1.0f,
          DType act = DType::f32);

// The inverse rotation: dx = R^T dy. dy, dx: (rows, heads, head_dim) act; dx may be dy.
void rope_backward(Recorder& recorder, const BufferRange& dy, const BufferRange& dx, const BufferRange& positions,
                   const BufferRange& inv_freq, uint32_t rows, uint32_t heads, uint32_t head_dim,
                   float attention_scaling = 1.0f, DType act = DType::f32);

}  // namespace vkt::kernels

namespace vkt::ref {
// angle = float(position) * inv_freq[i] in fp32 (as HF), its cos/sin in double.
void rope(const float* x, float* out, const uint32_t* positions, const float* inv_freq, uint32_t rows, uint32_t heads,
          uint32_t head_dim, float attention_scaling = 1.0f);
void rope_backward(const float* dy, float* dx, const uint32_t* positions, const float* inv_freq, uint32_t rows,
                   uint32_t heads, uint32_t head_dim, float attention_scaling = 1.0f);
}  // namespace vkt::ref
