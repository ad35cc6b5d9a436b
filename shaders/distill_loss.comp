#version 460
#extension GL_GOOGLE_include_directive : require
// Knowledge distillation's fused loss over a chunk of rows, one workgroup per row (Hinton et al.;
// the loss of `vktune train --objective distill`, engine/kernels/distill.hpp):
//   loss[row] = w * (alpha * T^2 * KL(softmax(u / T) || softmax(s / T)) + (1 - alpha) * CE(s, target))
// with s the student's logits, u the teacher's (same rows, same vocabulary), w the row's weight.
//   pass 1 reads both rows once, keeping running (max, sum of exp) of s, s / T and u / T, and for
//     the teacher also the running sum of exp(u / T - max) * (u - s) / T (online softmax);
//   pass 2 overwrites the student's logits with
//     dlogits = w * grad_scale * (alpha * T * (q - p) + (1 - alpha) * (softmax(s) - onehot(target)))
//     where q = softmax(s / T) and p = softmax(u / T).
// The teacher's logits are only read. Ignored rows (weight 0, target == ignore_index or >= vocab)
// get loss 0 and dlogits 0, exactly as cross_entropy.comp; a non-finite logit in a row that is not
// ignored (student's or teacher's) gives a NaN loss and NaN dlogits.
#include "common.glsl"
#include "row_reduce.glsl"

layout(push_constant) uniform Push {
  uint64_t logits;          // (rows, vocab) fp32 student logits, overwritten by dlogits when write_gradient
  uint64_t teacher_logits;  // (rows, vocab) fp32, read only
  uint64_t targets;         // (rows) uint32
  uint64_t weights;         // (rows) fp32
  uint64_t grad_scale;      // (1) fp32
  uint64_t loss;            // (rows) fp32
  uint64_t kl_part;         // (rows) fp32 w * T^2 * KL, or 0: not written
  uint64_t ce_part;         // (rows) fp32 w * CE, or 0: not written
  uint rows, vocab, ignore_index;
  uint write_gradient;  // 0: loss only
  float temperature;    // T > 0
  float alpha;          // weight of the KL term, in [0, 1]
} p;

// Per lane: (max, sum) of s, of s / T, of u / T, and the teacher's weighted sum k.
shared float scratch_m[3][ROW_THREADS];
shared float scratch_s[3][ROW_THREADS];
shared float scratch_k[ROW_THREADS];
shared uint non_finite_seen;

#define negative_infinity uintBitsToFloat(0xff800000u)
#define quiet_nan uintBitsToFloat(0x7fc00000u)

bool is_finite(float value) { return (floatBitsToUint(value) & 0x7f800000u) != 0x7f800000u; }

// Adds x (with its term d, for the teacher's k) to the running (m, s, k).
void accumulate(inout float m, inout float s, inout float k, float x, float d) {
  if (x > m) {
    float rescale = exp(m - x);  // exp(-inf) = 0 on the first element
    s = s * rescale + 1.0;
    k = k * rescale + d;
    m = x;
  } else {
    float e = exp(x - m);
    s += e;
    k += e * d;
  }
}

// (m, s, k) of the union of two sets.
void combine(inout float m, inout float s, inout float k, float other_m, float other_s, float other_k) {
  float new_m = max(m, other_m);
  if (new_m == negative_infinity) return;  // both empty
  float mine = m == negative_infinity ? 0.0 : exp(m - new_m);
  float theirs = other_m == negative_infinity ? 0.0 : exp(other_m - new_m);
  s = s * mine + other_s * theirs;
  k = k * mine + other_k * theirs;
  m = new_m;
}

void main() {
  uint row = workgroup_index_1d();
  if (row >= p.rows) return;
  uint lane = gl_LocalInvocationID.x;
  FloatBuffer student = FloatBuffer(p.logits);
  FloatBuffer teacher = FloatBuffer(p.teacher_logits);
  uint base = row * p.vocab;
  uint target = UintBuffer(p.targets).data[row];
  float weight = FloatBuffer(p.weights).data[row];
  bool ignored = weight == 0.0 || target == p.ignore_index || target >= p.vocab;
  if (ignored) {  // uniform over the workgroup
    if (lane == 0) {
      FloatBuffer(p.loss).data[row] = 0.0;
      if (p.kl_part != 0ul) FloatBuffer(p.kl_part).data[row] = 0.0;
      if (p.ce_part != 0ul) FloatBuffer(p.ce_part).data[row] = 0.0;
    }
    if (p.write_gradient != 0u)
      for (uint v = lane; v < p.vocab; v += ROW_THREADS) student.data[base + v] = 0.0;
    return;
  }
  if (lane == 0) non_finite_seen = 0u;
  barrier();
  float inv_t = 1.0 / p.temperature;
  float m[3] = {negative_infinity, negative_infinity, negative_infinity};
  float s[3] = {0.0, 0.0, 0.0};
  float k = 0.0, unused = 0.0;
  bool finite = true;
  for (uint v = lane; v < p.vocab; v += ROW_THREADS) {
    float z = student.data[base + v], u = teacher.data[base + v];
    finite = finite && is_finite(z) && is_finite(u);
    accumulate(m[0], s[0], unused, z, 0.0);
    accumulate(m[1], s[1], unused, z * inv_t, 0.0);
    accumulate(m[2], s[2], k, u * inv_t, (u - z) * inv_t);
  }
  if (!finite) atomicOr(non_finite_seen, 1u);
  for (uint i = 0; i < 3; i++) {
    scratch_m[i][lane] = m[i];
    scratch_s[i][lane] = s[i];
  }
  scratch_k[lane] = k;
  barrier();
  for (uint stride = ROW_THREADS / 2; stride > 0; stride >>= 1) {
    if (lane < stride) {
      for (uint i = 0; i < 3; i++) {
        float mine_m = scratch_m[i][lane], mine_s = scratch_s[i][lane];
        float mine_k = i == 2 ? scratch_k[lane] : 0.0;
        combine(mine_m, mine_s, mine_k, scratch_m[i][lane + stride], scratch_s[i][lane + stride],
                i == 2 ? scratch_k[lane + stride] : 0.0);
        scratch_m[i][lane] = mine_m;
        scratch_s[i][lane] = mine_s;
        if (i == 2) scratch_k[lane] = mine_k;
      }
    }
    barrier();
  }
  // Maxima and log-sums kept apart, as cross_entropy.comp does (x - max is exact near the max).
  float max_s = scratch_m[0][0], log_sum_s = log(scratch_s[0][0]);
  float max_q = scratch_m[1][0], log_sum_q = log(scratch_s[1][0]);
  float max_p = scratch_m[2][0], log_sum_p = log(scratch_s[2][0]);
  // KL(p || q) = E_p[(u - s) / T] - lse(u / T) + lse(s / T)
  float kl = scratch_k[0] / scratch_s[2][0] - (max_p - max_q) - (log_sum_p - log_sum_q);
  bool poisoned = non_finite_seen != 0u;
  float target_logit = student.data[base + target];
  barrier();  // every invocation has read the target logit before pass 2 overwrites it
  float ce = (max_s - target_logit) + log_sum_s;
  float t2 = p.temperature * p.temperature;
  if (lane == 0) {
    FloatBuffer(p.loss).data[row] = poisoned ? quiet_nan : weight * (p.alpha * t2 * kl + (1.0 - p.alpha) * ce);
    if (p.kl_part != 0ul) FloatBuffer(p.kl_part).data[row] = poisoned ? quiet_nan : weight * t2 * kl;
    if (p.ce_part != 0ul) FloatBuffer(p.ce_part).data[row] = poisoned ? quiet_nan : weight * ce;
  }
  if (p.write_gradient == 0u) return;
  float scale = weight * FloatBuffer(p.grad_scale).data[0];
  float kl_scale = p.alpha * p.temperature, ce_scale = 1.0 - p.alpha;
  for (uint v = lane; v < p.vocab; v += ROW_THREADS) {
    float z = student.data[base + v], u = teacher.data[base + v];
    float softmax_s = exp((z - max_s) - log_sum_s);
    float q = exp((z * inv_t - max_q) - log_sum_q);
    float pt = exp((u * inv_t - max_p) - log_sum_p);
    float d = kl_scale * (q - pt) + ce_scale * (v == target ? softmax_s - 1.0 : softmax_s);
    student.data[base + v] = poisoned ? quiet_nan : d * scale;
  }
}
