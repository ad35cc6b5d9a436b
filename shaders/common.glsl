// Shared by every shader: tensors are reached through buffer device addresses passed in push
// constants (see engine/vk/memory.hpp for why), and large 1-D launches use a 2-D grid.
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_buffer_reference2 : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require

layout(buffer_reference, std430, buffer_reference_align = 4) buffer FloatBuffer { float data[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) buffer Vec4Buffer { vec4 data[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer UintBuffer { uint data[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer IntBuffer { int data[]; };

// 1-D index over a grid launched as (x, y) workgroups of `threads` threads, so that more than
// 65535 workgroups' worth of elements can be covered (engine/kernels grid_1d). The size is an
// argument because gl_WorkGroupSize read in a function defined before the shader's
// layout(local_size_x = ...) line silently evaluates to 1.
uint global_index_1d(uint threads) {
  return (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * threads + gl_LocalInvocationID.x;
}
