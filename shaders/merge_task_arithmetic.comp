#version 460
#extension GL_GOOGLE_include_directive : require
// mergekit's generalized task arithmetic (task_arithmetic, ties, dare_linear, dare_ties) on one
// chunk of a tensor; see engine/kernels/merge.hpp for the formulas. Per element i and model j:
//   delta_j   = stack_j[i] - base[i]
//   sparsify: MAGNITUDE keeps |delta_j| > threshold_j, or == threshold_j when the element's index
//             in the whole tensor is below tie_cutoff_j (the host chose both from a full sort);
//             RANDOM keeps when uniform(seed, STREAM_DARE, model_key_j, tensor_key, index) < density_j
//             and multiplies kept values by keep_scale_j (1/density, DARE's rescale)
//   wd_j      = weight_j * delta_j
//   CONSENSUS: majority = (Σ_j wd_j >= 0) ? +1 : -1; only wd_j with sign(wd_j) == majority enter
//             mixed = Σ wd_j and divisor = Σ weight_j (divisor 0 -> 1)
//   otherwise: mixed = Σ_j wd_j, divisor = the host's Σ weight_j
//   out[i]    = base[i] + lambda * (NORMALIZE ? mixed / divisor : mixed)
// fp32 in model order with products rounded before adds (`precise`), as ref::merge_task_arithmetic.
// One thread per 4 consecutive elements: one Philox call per model gives the random words of all four.
#include "common.glsl"
#include "random.glsl"
layout(local_size_x = 256) in;

const uint SPARSIFY_NONE = 0u, SPARSIFY_MAGNITUDE = 1u, SPARSIFY_RANDOM = 2u;
const uint FLAG_CONSENSUS = 4u, FLAG_NORMALIZE = 8u;
const uint PARAM_WORDS = 8u;  // kernels::MergeModelParams

layout(push_constant) uniform Push {
  uint64_t stack;       // (count, stride) fp32: the models' values of this chunk (not the base)
  uint64_t base;        // (n) fp32: the base model's values
  uint64_t params;      // (count) MergeModelParams, 8 words each
  uint64_t out_values;  // (n) fp32
  uint n;
  uint count;
  uint stride;          // elements between consecutive models in `stack`
  uint first_index;     // index of this chunk's element 0 in the whole tensor
  uint flags;           // sparsify mode | FLAG_CONSENSUS | FLAG_NORMALIZE
  float lambda;
  float divisor;        // without consensus: Σ weight_j (1 when |Σ| < 1e-8)
  uint seed;            // DARE: the random seed
  uint tensor_key;      // DARE: a hash of the output tensor's name
} p;

layout(buffer_reference, std430, buffer_reference_align = 4) buffer ParamBuffer { uint data[]; };

// Model j's sparsified task vector at element i (chunk index) with random word `bits`.
float sparse_delta(uint j, uint i, uint bits) {
  ParamBuffer params = ParamBuffer(p.params);
  uint at = j * PARAM_WORDS;
  precise float delta = FloatBuffer(p.stack).data[j * p.stride + i] - FloatBuffer(p.base).data[i];
  uint mode = p.flags & 3u;
  if (mode == SPARSIFY_MAGNITUDE) {
    float threshold = uintBitsToFloat(params.data[at + 2u]);
    uint tie_cutoff = params.data[at + 3u];
    float magnitude = abs(delta);
    bool keep = magnitude > threshold || (magnitude == threshold && p.first_index + i < tie_cutoff);
    return keep ? delta : 0.0;
  }
  if (mode == SPARSIFY_RANDOM) {
    float density = uintBitsToFloat(params.data[at + 1u]);
    float keep_scale = uintBitsToFloat(params.data[at + 4u]);
    precise float scaled = delta * keep_scale;
    return uniform_from_bits(bits) < density ? scaled : 0.0;
  }
  return delta;
}

float weight_of(uint j) { return uintBitsToFloat(ParamBuffer(p.params).data[j * PARAM_WORDS]); }

// The random words of elements first..first+3 for model j (DARE), else zeros.
uvec4 random_words(uint j, uint first) {
  if ((p.flags & 3u) != SPARSIFY_RANDOM) return uvec4(0u);
  uint model_key = ParamBuffer(p.params).data[j * PARAM_WORDS + 5u];
  return random_bits4(p.seed, STREAM_DARE, model_key, p.tensor_key, (p.first_index + first) / 4u);
}

void main() {
  uint group = global_index_1d(256);
  uint first = group * 4u;  // chunks start at multiples of 4 elements, so one Philox call covers these 4
  if (first >= p.n) return;
  uint elements = min(4u, p.n - first);
  precise vec4 mixed = vec4(0.0);
  vec4 divisor = vec4(p.divisor);
  if ((p.flags & FLAG_CONSENSUS) != 0u) {
    // Pass 1: the elected sign, from the sum of the weighted (sparsified) task vectors.
    precise vec4 sign_sum = vec4(0.0);
    for (uint j = 0; j < p.count; j++) {
      uvec4 bits = random_words(j, first);
      for (uint e = 0; e < elements; e++) {
        precise float weighted = weight_of(j) * sparse_delta(j, first + e, bits[e]);
        sign_sum[e] += weighted;
      }
    }
    // Pass 2: the agreeing values and their weights (random words drawn again: no per-model array).
    precise vec4 agreeing_weight = vec4(0.0);
    for (uint j = 0; j < p.count; j++) {
      uvec4 bits = random_words(j, first);
      for (uint e = 0; e < elements; e++) {
        precise float weighted = weight_of(j) * sparse_delta(j, first + e, bits[e]);
        float majority = sign_sum[e] >= 0.0 ? 1.0 : -1.0;
        if (sign(weighted) == majority) {
          mixed[e] += weighted;
          agreeing_weight[e] += weight_of(j);
        }
      }
    }
    for (uint e = 0; e < 4u; e++) divisor[e] = agreeing_weight[e] == 0.0 ? 1.0 : agreeing_weight[e];
  } else {
    for (uint j = 0; j < p.count; j++) {
      uvec4 bits = random_words(j, first);
      for (uint e = 0; e < elements; e++) {
        precise float weighted = weight_of(j) * sparse_delta(j, first + e, bits[e]);
        mixed[e] += weighted;
      }
    }
  }
  for (uint e = 0; e < elements; e++) {
    precise float value = mixed[e];
    if ((p.flags & FLAG_NORMALIZE) != 0u) value = value / divisor[e];
    if (p.lambda != 1.0) value = value * p.lambda;
    precise float result = FloatBuffer(p.base).data[first + e] + value;
    FloatBuffer(p.out_values).data[first + e] = result;
  }
}
