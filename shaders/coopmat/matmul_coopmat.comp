#version 460
//! variant q: -DWEIGHT_QUANT
// The matmul_nt / matmul_nn / matmul_tn products of shaders/matmul.comp on the matrix units
// (VK_KHR_cooperative_matrix: NVIDIA tensor cores, AMD WMMA, Intel XMX): the same canonical product
//   C[i, j] = alpha * sum_p L[i, p] * R[p, j] + beta * C[i, j] (+ bias[j])   i < rows, j < cols
// with the same push constants and specialization constants 0..19 (engine/kernels/matmul.cpp fills
// both for every body), plus the cooperative-matrix shape (constants 20..22) of the device's
// VkCooperativeMatrixPropertiesKHR entry chosen by vk::choose_coopmat_shape (fp16 x fp16 -> fp32,
// subgroup scope).
//
// A workgroup of 4 subgroups (2 x 2) computes a TILE_ROWS x TILE_COLS block of C (TILE_ROWS =
// 4 * COOP_M, TILE_COLS = 4 * COOP_N, TILE_INNER = COOP_K; the host sets them so), each subgroup
// 2 x 2 accumulator matrices. Per slice of P the whole workgroup stages L and R into shared memory as
// fp16 (zeros outside the matrix, so any shape and leading dimension works), converting on the way:
// L is fp16 (the host routes only fp16 L here); R is fp16, or (variant "q") a quantized weight
// dequantized element by element with shaders/quant.glsl (nf4, int8, int4, int4_asym) and rounded to
// fp16, so nothing dequantized reaches global memory. Accumulation is fp32. Each subgroup then passes
// its accumulators through a shared fp32 scratch to the common epilogue (alpha, beta, bias, C type).
// Requires 4 subgroups of SUBGROUP_SIZE lanes: the host asks for that size (VK_EXT_subgroup_size_control)
// and checks the results against the tiled body before this one may be chosen (autotune).
// Built only by a glslang that knows GL_KHR_cooperative_matrix (cmake/Coopmat.cmake).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_shader_16bit_storage : require
#include "common.glsl"

layout(constant_id = 0) const uint WORKGROUP_SIZE = 128;  // 4 * SUBGROUP_SIZE
layout(constant_id = 1) const uint TILE_ROWS = 64;
layout(constant_id = 2) const uint TILE_COLS = 64;
layout(constant_id = 3) const uint TILE_INNER = 16;
layout(constant_id = 6) const bool L_P_CONTIGUOUS = true;  // L[i,p] at i*ld_l + p (else p*ld_l + i)
layout(constant_id = 7) const bool R_P_CONTIGUOUS = true;  // R[p,j] at j*ld_r + p (else p*ld_r + j)
layout(constant_id = 8) const uint L_TYPE = 1;             // 0 fp32, 1 fp16, 2 bf16 (engine DType)
layout(constant_id = 9) const uint R_TYPE = 1;
layout(constant_id = 10) const uint C_TYPE = 0;
layout(constant_id = 13) const bool C_TRANSPOSED = false;
layout(constant_id = 14) const uint SUBGROUP_SIZE = 32;
layout(constant_id = 15) const bool ACCUMULATE = false;
layout(constant_id = 16) const bool HAS_BIAS = false;
layout(constant_id = 17) const uint WEIGHT_FORMAT = 3;
layout(constant_id = 18) const uint WEIGHT_BLOCK_SHIFT = 6;
layout(constant_id = 19) const bool WEIGHT_DOUBLE_QUANT = false;
layout(constant_id = 20) const uint COOP_M = 16;
layout(constant_id = 21) const uint COOP_N = 16;
layout(constant_id = 22) const uint COOP_K = 16;

layout(local_size_x_id = 0) in;

layout(push_constant) uniform Push {
  uint64_t l, r, c, bias;
  uint64_t r_stats0, r_stats1;
  uint64_t c2, r2;  // unused here (matmul.comp's SwiGLU epilogue and second product)
  uint stride_l, stride_r, stride_c;
  uint rows, cols, inner;
  uint ld_l, ld_r, ld_c;
  float alpha, beta;
  uint group_rows;  // unused here
  float r_absmax_offset;
  uint r_index_offset;
  uint cols2;       // unused here
  float alpha2;     // unused here
} p;

layout(buffer_reference, std430, buffer_reference_align = 4) buffer F32 { float v[]; };
layout(buffer_reference, std430, buffer_reference_align = 2) buffer F16 { float16_t v[]; };
layout(buffer_reference, std430, buffer_reference_align = 2) buffer U16 { uint16_t v[]; };

const uint TYPE_F32 = 0, TYPE_F16 = 1, TYPE_BF16 = 2;
uint type_bytes(uint type) { return type == TYPE_F32 ? 4 : 2; }
float load_dense(uint64_t base, uint type, uint index) {
  if (type == TYPE_F16) return float(F16(base).v[index]);
  if (type == TYPE_BF16) return uintBitsToFloat(uint(U16(base).v[index]) << 16);
  return F32(base).v[index];
}
uint float_to_bf16(float value) {
  uint bits = floatBitsToUint(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (bits >> 16) | 0x40u;
  return (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
}

#ifdef WEIGHT_QUANT
#include "quant.glsl"
uint64_t weight_batch_base() { return uint64_t(p.r_index_offset) + uint64_t(gl_WorkGroupID.z) * p.stride_r; }
float load_weight(uint64_t base, uint index) {
  uint encoding = WEIGHT_FORMAT | (WEIGHT_BLOCK_SHIFT << 8) | (WEIGHT_DOUBLE_QUANT ? 1u << 16 : 0u);
  return quant_weight(QuantWeight(p.r, p.r_stats0, p.r_stats1, p.r_absmax_offset, encoding), uint(base) + index);
}
#else
uint64_t weight_batch_base() { return p.r + uint64_t(gl_WorkGroupID.z) * p.stride_r * type_bytes(R_TYPE); }
float load_weight(uint64_t base, uint index) { return load_dense(base, R_TYPE, index); }
#endif

const uint SUB = 2;  // accumulator matrices per subgroup along each dimension
shared float16_t l_tile[TILE_ROWS * TILE_INNER];     // [i][p]
shared float16_t r_tile[TILE_INNER * TILE_COLS];     // [p][j]
shared float c_stage[4 * COOP_M * COOP_N];           // one accumulator matrix per subgroup

void store_output(uint64_t c_base, uint i, uint j, float sum) {
  uint index = C_TRANSPOSED ? j * p.ld_c + i : i * p.ld_c + j;
  float value = p.alpha * sum;
  if (ACCUMULATE) value += p.beta * load_dense(c_base, C_TYPE, index);
  if (HAS_BIAS) value += F32(p.bias).v[C_TRANSPOSED ? i : j];
  if (C_TYPE == TYPE_F16) F16(c_base).v[index] = float16_t(value);
  else if (C_TYPE == TYPE_BF16) U16(c_base).v[index] = uint16_t(float_to_bf16(value));
  else F32(c_base).v[index] = value;
}

void main() {
  // A driver that ignored the subgroup size asked for: write nothing (the host's check then fails)
  // rather than index past the shared scratch.
  if (gl_NumSubgroups != 4u) return;
  uint thread = gl_LocalInvocationIndex;
  uint row0 = gl_WorkGroupID.y * TILE_ROWS, col0 = gl_WorkGroupID.x * TILE_COLS;
  uint64_t l_base = p.l + uint64_t(gl_WorkGroupID.z) * p.stride_l * type_bytes(L_TYPE);
  uint64_t r_base = weight_batch_base();
  uint subgroup = gl_SubgroupID;
  uint sub_row0 = (subgroup / 2) * SUB * COOP_M, sub_col0 = (subgroup % 2) * SUB * COOP_N;

  coopmat<float, gl_ScopeSubgroup, COOP_M, COOP_N, gl_MatrixUseAccumulator> acc[SUB][SUB];
  [[unroll]] for (uint x = 0; x < SUB; x++)
    [[unroll]] for (uint y = 0; y < SUB; y++)
      acc[x][y] = coopmat<float, gl_ScopeSubgroup, COOP_M, COOP_N, gl_MatrixUseAccumulator>(0.0);

  for (uint p0 = 0; p0 < p.inner; p0 += TILE_INNER) {
    // Consecutive threads read consecutive addresses: along p where it is contiguous, else along i / j.
    for (uint e = thread; e < TILE_ROWS * TILE_INNER; e += WORKGROUP_SIZE) {
      uint i_local = L_P_CONTIGUOUS ? e / TILE_INNER : e % TILE_ROWS;
      uint p_local = L_P_CONTIGUOUS ? e % TILE_INNER : e / TILE_ROWS;
      uint i = row0 + i_local, pp = p0 + p_local;
      float value = 0.0;
      if (i < p.rows && pp < p.inner) value = load_dense(l_base, L_TYPE, L_P_CONTIGUOUS ? i * p.ld_l + pp : pp * p.ld_l + i);
      l_tile[i_local * TILE_INNER + p_local] = float16_t(value);
    }
    for (uint e = thread; e < TILE_INNER * TILE_COLS; e += WORKGROUP_SIZE) {
      uint j_local = R_P_CONTIGUOUS ? e / TILE_INNER : e % TILE_COLS;
      uint p_local = R_P_CONTIGUOUS ? e % TILE_INNER : e / TILE_COLS;
      uint j = col0 + j_local, pp = p0 + p_local;
      float value = 0.0;
      if (j < p.cols && pp < p.inner) value = load_weight(r_base, R_P_CONTIGUOUS ? j * p.ld_r + pp : pp * p.ld_r + j);
      r_tile[p_local * TILE_COLS + j_local] = float16_t(value);
    }
    barrier();
    [[unroll]] for (uint k0 = 0; k0 < TILE_INNER; k0 += COOP_K) {
      coopmat<float16_t, gl_ScopeSubgroup, COOP_M, COOP_K, gl_MatrixUseA> a[SUB];
      coopmat<float16_t, gl_ScopeSubgroup, COOP_K, COOP_N, gl_MatrixUseB> b[SUB];
      [[unroll]] for (uint x = 0; x < SUB; x++)
        coopMatLoad(a[x], l_tile, (sub_row0 + x * COOP_M) * TILE_INNER + k0, TILE_INNER,
                    gl_CooperativeMatrixLayoutRowMajor);
      [[unroll]] for (uint y = 0; y < SUB; y++)
        coopMatLoad(b[y], r_tile, k0 * TILE_COLS + sub_col0 + y * COOP_N, TILE_COLS,
                    gl_CooperativeMatrixLayoutRowMajor);
      [[unroll]] for (uint x = 0; x < SUB; x++)
        [[unroll]] for (uint y = 0; y < SUB; y++) acc[x][y] = coopMatMulAdd(a[x], b[y], acc[x][y]);
    }
    barrier();
  }

  uint64_t c_base = p.c + uint64_t(gl_WorkGroupID.z) * p.stride_c * type_bytes(C_TYPE);
  uint stage0 = subgroup * COOP_M * COOP_N;
  [[unroll]] for (uint x = 0; x < SUB; x++)
    [[unroll]] for (uint y = 0; y < SUB; y++) {
      coopMatStore(acc[x][y], c_stage, stage0, COOP_N, gl_CooperativeMatrixLayoutRowMajor);
      subgroupMemoryBarrierShared();
      subgroupBarrier();
      for (uint e = gl_SubgroupInvocationID; e < COOP_M * COOP_N; e += SUBGROUP_SIZE) {
        uint i = row0 + sub_row0 + x * COOP_M + e / COOP_N, j = col0 + sub_col0 + y * COOP_N + e % COOP_N;
        if (i < p.rows && j < p.cols) store_output(c_base, i, j, c_stage[stage0 + e]);
      }
      subgroupBarrier();
    }
}
