#version 460
#extension GL_GOOGLE_include_directive : require
// SGD over every tensor of a TensorList (one workgroup per chunk), as torch.optim.SGD:
//   g = grad * grad_scale * clip_coefficient + wd * p
//   with momentum: buf = (step 1) ? g : momentum * buf + (1 - dampening) * g
//                  g = nesterov ? g + momentum * buf : buf
//   p += -lr * g
#include "common.glsl"
#include "multi_tensor.glsl"
#include "step_state.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t table;       // TensorList entries: param, grad, state0 = momentum buffer (when momentum != 0)
  uint64_t step_state;  // StepState
  uint tensor_count;
  uint chunk_count;
  uint chunk_elements;
  float momentum;
  float one_minus_dampening;
  float weight_decay;
  uint nesterov;
} p;

void main() {
  uint chunk = chunk_index();
  if (chunk >= p.chunk_count) return;
  TensorTable table = TensorTable(p.table);
  TensorEntry tensor = table.entries[find_tensor(table, p.tensor_count, chunk)];
  StepStateBuffer state = StepStateBuffer(p.step_state);
  if ((state.flags & STEP_FLAG_NON_FINITE) != 0u) return;  // a NaN/Inf step leaves weights and momentum as they were
  bool first_step = state.step <= 1u;
  float lr = state.learning_rate * tensor.lr_scale;
  float multiplier = state.grad_scale * state.clip_coefficient;
  float weight_decay = p.weight_decay * tensor.decay_scale;

  FloatBuffer param = FloatBuffer(tensor.param);
  FloatBuffer grad = FloatBuffer(tensor.grad);
  FloatBuffer momentum_buffer = FloatBuffer(tensor.state0);
  uint begin = (chunk - tensor.first_chunk) * p.chunk_elements;
  uint end = min(begin + p.chunk_elements, tensor.count);
  for (uint i = begin + gl_LocalInvocationID.x; i < end; i += 256) {
    float x = param.data[i];
    float g = grad.data[i] * multiplier;
    if (weight_decay != 0.0) g = g + weight_decay * x;
    if (p.momentum != 0.0) {
      float buffered = first_step ? g : momentum_buffer.data[i] * p.momentum + p.one_minus_dampening * g;
      momentum_buffer.data[i] = buffered;
      g = p.nesterov != 0u ? g + p.momentum * buffered : buffered;
    }
    param.data[i] = x + (-lr) * g;
  }
}
