#version 460
//! variant backward: -DBACKWARD
#extension GL_GOOGLE_include_directive : require
// One time step of an LSTM cell for P-tuning's LSTM prompt encoder (PEFT's torch.nn.LSTM), unit j of
// H per invocation; torch's gate order i, f, g, o in the (4H) gate row. The recurrent and input
// products come from the matmul kernels; this adds bias_hh and does the rest:
//   i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o), c = f·c_prev + i·g, h = o·tanh(c)
// The forward overwrites the pre-activations with the activated gates (what the backward reads) and
// writes h twice (the direction's own (N, H) rows and the layer's (N, 2H) output). Variant backward:
// from dh and the later step's dc (in/out: becomes dc_prev) the pre-activation gradients.
#include "common.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t gates;    // (4H) fp32: forward pre-activations (bias_hh not yet added) -> activated; backward: activated
  uint64_t bias_hh;  // (4H) fp32, forward only
  uint64_t c_prev;   // (H) fp32, the previous step's cell; read only when has_prev
  uint64_t c;        // (H) fp32: forward writes, backward reads
  uint64_t h;        // (H) fp32, forward: h out; backward: dh in
  uint64_t h_copy;   // (H) fp32, forward: h out again; backward: dc (in when has_dc, out: dc_prev)
  uint64_t d_gates;  // (4H) fp32, backward only: d loss / d pre-activations
  uint n;            // H
  uint has_prev;     // 0: the first step in its direction (c_prev = 0)
  uint has_dc;       // backward: 0 at the direction's last step (no later dc)
} p;

float sigmoid(float x) { return 1.0 / (1.0 + exp(-x)); }
// |x| > 15 gives +-1 in fp32; the clamp keeps an exp-based tanh finite (as attention_mask.glsl).
float safe_tanh(float x) { return tanh(clamp(x, -15.0, 15.0)); }

void main() {
  uint j = global_index_1d(256);
  if (j >= p.n) return;
  uint n = p.n;
  float c_prev = p.has_prev != 0 ? FloatBuffer(p.c_prev).data[j] : 0.0;
#ifdef BACKWARD
  float i = FloatBuffer(p.gates).data[j], f = FloatBuffer(p.gates).data[n + j];
  float g = FloatBuffer(p.gates).data[2 * n + j], o = FloatBuffer(p.gates).data[3 * n + j];
  float tc = safe_tanh(FloatBuffer(p.c).data[j]);
  float dh = FloatBuffer(p.h).data[j];
  float dc = (p.has_dc != 0 ? FloatBuffer(p.h_copy).data[j] : 0.0) + dh * o * (1.0 - tc * tc);
  FloatBuffer(p.d_gates).data[j] = dc * g * i * (1.0 - i);
  FloatBuffer(p.d_gates).data[n + j] = dc * c_prev * f * (1.0 - f);
  FloatBuffer(p.d_gates).data[2 * n + j] = dc * i * (1.0 - g * g);
  FloatBuffer(p.d_gates).data[3 * n + j] = dh * tc * o * (1.0 - o);
  FloatBuffer(p.h_copy).data[j] = dc * f;
#else
  float i = sigmoid(FloatBuffer(p.gates).data[j] + FloatBuffer(p.bias_hh).data[j]);
  float f = sigmoid(FloatBuffer(p.gates).data[n + j] + FloatBuffer(p.bias_hh).data[n + j]);
  float g = safe_tanh(FloatBuffer(p.gates).data[2 * n + j] + FloatBuffer(p.bias_hh).data[2 * n + j]);
  float o = sigmoid(FloatBuffer(p.gates).data[3 * n + j] + FloatBuffer(p.bias_hh).data[3 * n + j]);
  float c = f * c_prev + i * g;
  float h = o * safe_tanh(c);
  FloatBuffer(p.gates).data[j] = i;
  FloatBuffer(p.gates).data[n + j] = f;
  FloatBuffer(p.gates).data[2 * n + j] = g;
  FloatBuffer(p.gates).data[3 * n + j] = o;
  FloatBuffer(p.c).data[j] = c;
  FloatBuffer(p.h).data[j] = h;
  FloatBuffer(p.h_copy).data[j] = h;
#endif
}
