#version 460
// matmul_nt on the matrix units (VK_KHR_cooperative_matrix: NVIDIA tensor cores, AMD WMMA, Intel XMX):
//   C[M,N] (fp32) = alpha * A[M,K] (fp16) · W[N,K]ᵀ (fp16), fp32 accumulation.
// One subgroup per workgroup computes one TILE_M x TILE_N block of C, TILE_K at a time, with the
// tile shape of a VkCooperativeMatrixPropertiesKHR entry (fp16 A/B, fp32 C, subgroup scope) passed as
// specialization constants. The host routes here only shapes that are whole tiles (M % TILE_M,
// N % TILE_N, K % TILE_K all 0) with 16-byte-aligned rows; everything else takes shaders/matmul.comp.
// Built only when the glslang at hand knows GL_KHR_cooperative_matrix (CMake says at configure time).
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require

layout(constant_id = 0) const uint SUBGROUP_SIZE = 32;
layout(constant_id = 1) const uint TILE_M = 16;
layout(constant_id = 2) const uint TILE_N = 16;
layout(constant_id = 3) const uint TILE_K = 16;
layout(local_size_x_id = 0) in;

layout(buffer_reference, std430, buffer_reference_align = 16) readonly buffer F16 { float16_t v[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) writeonly buffer F32 { float v[]; };

layout(push_constant) uniform Push {
  uint64_t a;  // (M, K) fp16, row-major
  uint64_t w;  // (N, K) fp16, row-major
  uint64_t c;  // (M, N) fp32, row-major
  uint m, n, k;
  float alpha;
} p;

void main() {
  uint row0 = gl_WorkGroupID.y * TILE_M, col0 = gl_WorkGroupID.x * TILE_N;
  coopmat<float, gl_ScopeSubgroup, TILE_M, TILE_N, gl_MatrixUseAccumulator> acc =
      coopmat<float, gl_ScopeSubgroup, TILE_M, TILE_N, gl_MatrixUseAccumulator>(0.0);
  for (uint k0 = 0; k0 < p.k; k0 += TILE_K) {
    coopmat<float16_t, gl_ScopeSubgroup, TILE_M, TILE_K, gl_MatrixUseA> a_tile;
    coopmat<float16_t, gl_ScopeSubgroup, TILE_K, TILE_N, gl_MatrixUseB> w_tile;
    coopMatLoad(a_tile, F16(p.a).v, row0 * p.k + k0, p.k, gl_CooperativeMatrixLayoutRowMajor);
    // Wᵀ[k, j] = W[j, k]: W's rows read as the columns of the B operand.
    coopMatLoad(w_tile, F16(p.w).v, col0 * p.k + k0, p.k, gl_CooperativeMatrixLayoutColumnMajor);
    acc = coopMatMulAdd(a_tile, w_tile, acc);
  }
  acc = acc * p.alpha;
  coopMatStore(acc, F32(p.c).v, row0 * p.n + col0, p.n, gl_CooperativeMatrixLayoutRowMajor);
}
