#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
#extension GL_GOOGLE_include_directive : require
// Fused, weighted cross-entropy over a chunk of rows, one workgroup per row:
//   pass 1 reads the row once, keeping a running max and sum of exp (online softmax);
//   pass 2 overwrites the logits with dlogits = (softmax - onehot(target)) * w * grad_scale.
//   loss[row] = w * (logsumexp - logit[target]).
// A row is ignored (loss 0, dlogits 0) when its weight is 0, its target is ignore_index, or its
// target is >= vocab. A row that is not ignored and holds a NaN or infinite logit gets a NaN
// loss and NaN dlogits, so the trainer's finiteness checks see it: Vulkan does not promise that
// exp()/log() propagate NaN (lavapipe's exp clamps its argument), so it is tested explicitly.
// logit_softcap > 0 (Gemma 2): every logit z is read as c * tanh(z / c) and its gradient gets
// the factor 1 - tanh^2, the derivative of the capping; the NaN check sees the raw logits.
// grad_scale is read from device memory: the step is recorded once and replayed, so per-step
// values live in buffers.
#include "common.glsl"
#include "row_reduce.glsl"
#include "act_storage.glsl"

layout(push_constant) uniform Push {
  uint64_t logits;      // (rows, vocab) activation (act_storage.glsl), overwritten by dlogits when write_gradient
  uint64_t targets;     // (rows) uint32
  uint64_t weights;     // (rows) fp32
  uint64_t grad_scale;  // (1) fp32
  uint64_t loss;        // (rows) fp32
  uint rows, vocab, ignore_index;
  uint write_gradient;  // 0: loss only (evaluation), logits left untouched
  float logit_softcap;  // 0: none
} p;

shared float max_scratch[ROW_THREADS];
shared float sum_scratch[ROW_THREADS];
shared uint non_finite_seen;

#define negative_infinity uintBitsToFloat(0xff800000u)
#define quiet_nan uintBitsToFloat(0x7fc00000u)

// By the bits, so that no fast-math assumption can fold it away.
bool is_finite(float value) { return (floatBitsToUint(value) & 0x7f800000u) != 0x7f800000u; }

// (max, sum of exp(x - max)) of the union of two sets.
void combine(inout float m, inout float s, float other_m, float other_s) {
  float new_m = max(m, other_m);
  if (new_m == negative_infinity) return;  // both empty
  s = (m == negative_infinity ? 0.0 : s * exp(m - new_m)) +
      (other_m == negative_infinity ? 0.0 : other_s * exp(other_m - new_m));
  m = new_m;
}

// tanh(z / c) for |z / c| > 15 is +-1 in fp32; the clamp keeps an exp-based tanh finite.
float capped(float z) { return p.logit_softcap > 0.0 ? p.logit_softcap * tanh(clamp(z / p.logit_softcap, -15.0, 15.0)) : z; }

void main() {
  uint row = workgroup_index_1d();
  if (row >= p.rows) return;
  uint lane = gl_LocalInvocationID.x;
  ActBuffer logits = ActBuffer(p.logits);
  uint base = row * p.vocab;
  uint target = UintBuffer(p.targets).data[row];
  float weight = FloatBuffer(p.weights).data[row];
  bool ignored = weight == 0.0 || target == p.ignore_index || target >= p.vocab;
  if (ignored) {  // uniform over the workgroup
    if (lane == 0) FloatBuffer(p.loss).data[row] = 0.0;
    if (p.write_gradient != 0u)
      for (uint v = lane; v < p.vocab; v += ROW_THREADS) act_store(logits, base + v, 0.0);
    return;
  }
  if (lane == 0) non_finite_seen = 0u;
  barrier();
  float m = negative_infinity, s = 0.0;
  bool finite = true;
  for (uint v = lane; v < p.vocab; v += ROW_THREADS) {
    float raw = act_load(logits, base + v);
    finite = finite && is_finite(raw);
    float z = capped(raw);
    if (z > m) {
      s = s * exp(m - z) + 1.0;  // exp(-inf) = 0 on the first element
      m = z;
    } else {
      s += exp(z - m);
    }
  }
  if (!finite) atomicOr(non_finite_seen, 1u);
  max_scratch[lane] = m;
  sum_scratch[lane] = s;
  barrier();
  for (uint stride = ROW_THREADS / 2; stride > 0; stride >>= 1) {
    if (lane < stride) {
      float mine_m = max_scratch[lane], mine_s = sum_scratch[lane];
      combine(mine_m, mine_s, max_scratch[lane + stride], sum_scratch[lane + stride]);
      max_scratch[lane] = mine_m;
      sum_scratch[lane] = mine_s;
    }
    barrier();
  }
  // Kept apart rather than as m + log(s): for large logits (|x| ~ 500, ulp 3e-5) the sum would
  // round, and exp(x - lse) would inherit that as a relative error; x - m is exact near the max.
  float row_max = max_scratch[0], log_sum = log(sum_scratch[0]);
  bool poisoned = non_finite_seen != 0u;
  float target_logit = capped(act_load(logits, base + target));
  barrier();  // every invocation has read the target logit before pass 2 overwrites it
  if (lane == 0) FloatBuffer(p.loss).data[row] = poisoned ? quiet_nan : weight * ((row_max - target_logit) + log_sum);
  if (p.write_gradient == 0u) return;
  float scale = weight * FloatBuffer(p.grad_scale).data[0];
  for (uint v = lane; v < p.vocab; v += ROW_THREADS) {
    float z = capped(act_load(logits, base + v));
    float probability = exp((z - row_max) - log_sum);
    float capping = p.logit_softcap > 0.0 ? 1.0 - (z / p.logit_softcap) * (z / p.logit_softcap) : 1.0;
    act_store(logits, base + v, poisoned ? quiet_nan : (v == target ? probability - 1.0 : probability) * scale * capping);
  }
}
