#version 460
//! variant s16: -DSTORAGE_16BIT
//! variant direct: -DMATMUL_DIRECT
//! variant direct_s16: -DMATMUL_DIRECT -DSTORAGE_16BIT
//! variant q: -DWEIGHT_QUANT
//! variant q_s16: -DWEIGHT_QUANT -DSTORAGE_16BIT
//! variant direct_q: -DMATMUL_DIRECT -DWEIGHT_QUANT
//! variant direct_q_s16: -DMATMUL_DIRECT -DWEIGHT_QUANT -DSTORAGE_16BIT
// Matrix products for matmul_nt / matmul_nn / matmul_tn (engine/kernels/matmul.hpp).
//
// All three are one canonical product over an inner dimension P:
//   C[i, j] = alpha * sum_p L[i, p] * R[p, j] + beta * C[i, j] (+ bias[j])   i < rows, j < cols
// where L and R are read either with p contiguous in memory or with i (resp. j) contiguous:
//   matmul_nt: L = A[M,K] (p contiguous), R = W[N,K]ᵀ (p contiguous)
//   matmul_nn: L = A[M,N] (p contiguous), R = W[N,K]  (j contiguous)
//   matmul_tn: L = A[M,N]ᵀ (i contiguous), R = B[M,K] (j contiguous)
// and C may be stored transposed (the host swaps L and R to put the longer output dimension
// across the lanes of the direct path). Layouts, storage types, tile sizes and 4-element loads
// are specialization constants, so the driver compiles only the path it runs.
//
// Variants: the plain ones are fp32 only and run on devices without 16-bit storage buffers;
// "s16" adds fp16/bf16 operands; "q" reads a quantized weight as R (nf4, int8, int4, int4_asym,
// and ggml's Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/Q4_K/Q5_K/Q6_K blocks; see load_weight below), so the dense variants carry none of its code. Two bodies:
// - matmul_tiled.glsl (default, GPUs): workgroup tiles staged through shared memory, vec4
//   loads, a register tile per thread;
// - matmul_direct.glsl (MATMUL_DIRECT, CPU drivers such as lavapipe): no shared memory, big
//   per-lane register tiles fed by 64-bit loads, rows shared across a subgroup by shuffles.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#ifdef STORAGE_16BIT
#extension GL_EXT_shader_16bit_storage : require
#endif
#ifdef MATMUL_DIRECT
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#endif
#include "common.glsl"
#include "gated_activation.glsl"

layout(constant_id = 0) const uint WORKGROUP_SIZE = 256;
layout(constant_id = 1) const uint TILE_ROWS = 128;        // outputs per workgroup
layout(constant_id = 2) const uint TILE_COLS = 128;
layout(constant_id = 3) const uint TILE_INNER = 16;        // tiled: P per shared-memory slice (multiple of 4)
layout(constant_id = 4) const uint THREAD_ROWS = 8;        // tiled: rows per thread; direct: rows per subgroup
layout(constant_id = 5) const uint THREAD_COLS = 8;        // columns per thread (lane); multiple of 4
layout(constant_id = 6) const bool L_P_CONTIGUOUS = true;  // L[i,p] at i*ld_l + p (else p*ld_l + i)
layout(constant_id = 7) const bool R_P_CONTIGUOUS = true;  // R[p,j] at j*ld_r + p (else p*ld_r + j)
layout(constant_id = 8) const uint L_TYPE = 0;             // 0 fp32, 1 fp16, 2 bf16 (engine DType)
layout(constant_id = 9) const uint R_TYPE = 0;             // dense weight storage: 0 fp32, 1 fp16, 2 bf16
layout(constant_id = 10) const uint C_TYPE = 0;
layout(constant_id = 11) const bool L_VEC4 = false;        // host checked: 4-element groups whole and aligned
layout(constant_id = 12) const bool R_VEC4 = false;
layout(constant_id = 13) const bool C_TRANSPOSED = false;  // C[i,j] at j*ld_c + i; bias indexed by i
layout(constant_id = 14) const uint SUBGROUP_SIZE = 8;     // direct: the device's fixed subgroup size
// Known when recording, so the epilogue carries no branch it does not need (llvmpipe executes
// both sides of a branch under a mask, even a uniform one).
layout(constant_id = 15) const bool ACCUMULATE = false;    // beta != 0: read C
layout(constant_id = 16) const bool HAS_BIAS = false;
// "q" variants: the quantized weight's format (engine WeightFormat: 3 nf4, 4 int8, 5 int4,
// 6 int4_asym, 7..14 ggml blocks of a GGUF file), log2 of its block size and nf4 double quantization.
layout(constant_id = 17) const uint WEIGHT_FORMAT = 3;
layout(constant_id = 18) const uint WEIGHT_BLOCK_SHIFT = 6;
layout(constant_id = 19) const bool WEIGHT_DOUBLE_QUANT = false;
// The SwiGLU epilogue (kernels::matmul_nt_swiglu): besides C, write h = silu(gate) * C (C as stored),
// gate read from p.bias's slot (no bias then) and h written to p.c2, both laid out as C in
// C_TYPE; set on the last inner pass only.
layout(constant_id = 20) const bool SWIGLU_EPILOGUE = false;
// A second product in the same dispatch, sharing L (engine/kernels/matmul_lora_a.hpp: a LoRA layer's
// t = x·Aᵀ beside y = x·Wᵀ, and in the backward dt = s·dy·B beside dx = dy·W):
// C2[i, j] = alpha2 * sum_p L[i, p] * R2[p, j] (+ C2 when ACCUMULATE2), j < cols2, with R2 a dense fp32
// matrix laid out like a dense R (leading dimension ld_r when R_P_CONTIGUOUS, else cols2) and C2
// row-major (rows, cols2), no bias. Its column tiles follow C's in the tile order, so each row group's
// L strip is read for both while it is in cache. One batch entry, C not transposed, no SwiGLU.
layout(constant_id = 21) const bool SECOND_PRODUCT = false;
layout(constant_id = 22) const bool R2_VEC4 = false;       // as R_VEC4, for R2
layout(constant_id = 23) const bool ACCUMULATE2 = false;   // add into C2 (the inner passes after the first)

layout(local_size_x_id = 0) in;

layout(push_constant) uniform Push {
  uint64_t l;         // L operand (see above), L_TYPE
  uint64_t r;         // R operand, R_TYPE
  uint64_t c;         // (rows, cols) with leading dimension ld_c, C_TYPE; read when beta != 0
  uint64_t bias;      // (cols) fp32 ((rows) when C_TRANSPOSED); read when HAS_BIAS
  uint64_t r_stats0;  // quantized R: QuantWeight.stats0 / stats1 of shaders/quant.glsl (p.r is its data)
  uint64_t r_stats1;
  uint64_t c2;        // SWIGLU_EPILOGUE: h, laid out as C; SECOND_PRODUCT: C2 (rows, cols2); C_TYPE
  uint64_t r2;        // SECOND_PRODUCT: R2, fp32, laid out as a dense R (see SECOND_PRODUCT)
  uint stride_l;      // elements between batch entries
  uint stride_r;
  uint stride_c;
  uint rows, cols, inner;
  uint ld_l, ld_r, ld_c;  // leading dimensions in elements
  float alpha, beta;
  uint group_rows;        // direct: row tiles per group in the tile order (see matmul_direct.glsl)
  float r_absmax_offset;  // quantized R: QuantWeight.absmax_offset (nf4 double quant)
  uint r_index_offset;    // quantized R: flattened-weight index of R's element (0, 0) in this dispatch
  uint cols2;             // SECOND_PRODUCT: columns of C2
  float alpha2;           // SECOND_PRODUCT: C2's alpha
} p;

layout(buffer_reference, std430, buffer_reference_align = 4) buffer F32 { float v[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) readonly buffer F32x4 { vec4 v[]; };
layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer U64 { uint64_t v[]; };
#ifdef STORAGE_16BIT
layout(buffer_reference, std430, buffer_reference_align = 2) buffer F16 { float16_t v[]; };
// store_dense's read-back of what it stored: volatile, so that the compiler cannot forward the
// stored value and fold the fp16 round trip away (Mesa 25's lavapipe did, through packHalf2x16 too).
layout(buffer_reference, std430, buffer_reference_align = 2) volatile buffer F16ReadBack { float16_t v[]; };
layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer F16x4 { f16vec4 v[]; };
layout(buffer_reference, std430, buffer_reference_align = 2) buffer U16 { uint16_t v[]; };
layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer U16x4 { u16vec4 v[]; };
#endif

const uint TYPE_F32 = 0, TYPE_F16 = 1, TYPE_BF16 = 2;

uint type_bytes(uint type) { return type == TYPE_F32 ? 4 : 2; }
float bf16_to_float(uint bits) { return uintBitsToFloat(bits << 16); }
vec4 bf16_to_float(uvec4 bits) { return uintBitsToFloat(bits << 16); }
// Round to nearest even, as engine/base/half.hpp; NaN stays NaN.
uint float_to_bf16(float value) {
  uint bits = floatBitsToUint(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (bits >> 16) | 0x40u;
  return (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
}

// One element of a dense tensor.
float load_dense(uint64_t base, uint type, uint index) {
#ifdef STORAGE_16BIT
  if (type == TYPE_F16) return float(F16(base).v[index]);
  if (type == TYPE_BF16) return bf16_to_float(uint(U16(base).v[index]));
#endif
  return F32(base).v[index];
}

// Four consecutive elements starting at `index` (a multiple of 4; the base is aligned to 4
// elements). The direct path reads them as 64-bit words: llvmpipe turns every load into one
// scalar access per lane and per component, so one uint64 carrying two fp32 (or four 16-bit)
// values costs what a single float does; a vec4 costs four.
vec4 load_dense4(uint64_t base, uint type, uint index) {
#ifdef MATMUL_DIRECT
  if (type == TYPE_F32) {
    U64 words = U64(base);
    return vec4(uintBitsToFloat(unpackUint2x32(words.v[index / 2])),
                uintBitsToFloat(unpackUint2x32(words.v[index / 2 + 1])));
  }
  uvec2 halves = unpackUint2x32(U64(base).v[index / 4]);
  if (type == TYPE_F16) return vec4(unpackHalf2x16(halves.x), unpackHalf2x16(halves.y));
  return bf16_to_float(uvec4(halves.x & 0xffffu, halves.x >> 16, halves.y & 0xffffu, halves.y >> 16));
#else
#ifdef STORAGE_16BIT
  if (type == TYPE_F16) return vec4(F16x4(base).v[index / 4]);
  if (type == TYPE_BF16) return bf16_to_float(uvec4(U16x4(base).v[index / 4]));
#endif
  return F32x4(base).v[index / 4];
#endif
}

// This workgroup's batch entry: the operands' base addresses.
uint64_t batch_base(uint64_t base, uint stride, uint type) { return base + uint64_t(gl_WorkGroupID.z) * stride * type_bytes(type); }

// The weight (R operand) load stage: `index` is the element's position in the flattened weight
// (row-major W[N,K] for nt/nn, B[M,K] for tn) relative to `base`, the value weight_batch_base()
// gave. load_weight4 reads elements index .. index+3 (index % 4 == 0).
#ifdef WEIGHT_QUANT
#include "quant.glsl"
#ifdef MATMUL_DIRECT
#include "nf4_pairs.glsl"
#endif
// A quantized weight is dequantized here, element by element as the tile is loaded, with the
// functions of quant.glsl (bit-identical to engine/quant dequantize()); nothing dequantized is
// ever written to memory. Codes and blocks are addressed by the position in the flattened weight,
// so `base` is an element offset (batch entry, inner split), not an address.
QuantWeight weight_r() {
  uint encoding = WEIGHT_FORMAT | (WEIGHT_BLOCK_SHIFT << 8) | (WEIGHT_DOUBLE_QUANT ? 1u << 16 : 0u);
  return QuantWeight(p.r, p.r_stats0, p.r_stats1, p.r_absmax_offset, encoding);
}
// Called once at the start of main().
void weight_stage_init() {
#ifdef MATMUL_DIRECT
  if (WEIGHT_FORMAT == QUANT_NF4) nf4_pairs_init();
#endif
}
uint64_t weight_batch_base() { return uint64_t(p.r_index_offset) + uint64_t(gl_WorkGroupID.z) * p.stride_r; }
float load_weight(uint64_t base, uint index) { return quant_weight(weight_r(), uint(base) + index); }
// Four aligned elements lie in one block (blocks are powers of two >= 8): one scale fetch and one
// 32-bit code word (nf4/int4: half of it), shared by every row of the tile that uses them.
vec4 load_weight4(uint64_t base, uint index) {
  if (WEIGHT_FORMAT >= QUANT_GGML_FIRST) return ggml_weight4(p.r, WEIGHT_FORMAT, uint(base) + index);
  QuantWeight w = weight_r();
  uint e = uint(base) + index;
  float scale = quant_block_scale(w, e >> WEIGHT_BLOCK_SHIFT);
  if (WEIGHT_FORMAT == QUANT_INT8) return int8_decode4(quant_load_word(p.r, e >> 2), scale);
  // Elements 8w..8w+3 are the word's low 16 bits, 8w+4..8w+7 its high 16 bits.
  uint word = quant_load_word(p.r, e >> 3) >> ((e & 4u) * 4u);
  vec4 lo, unused;
#ifdef MATMUL_DIRECT
  if (WEIGHT_FORMAT == QUANT_NF4) return vec4(nf4_pair(word & 0xffu), nf4_pair((word >> 8) & 0xffu)) * scale;
#else
  if (WEIGHT_FORMAT == QUANT_NF4) nf4_decode8(word, scale, lo, unused);
#endif
  if (WEIGHT_FORMAT != QUANT_NF4) int4_decode8(word, scale, quant_block_zero(w, e >> WEIGHT_BLOCK_SHIFT), lo, unused);
  return lo;
}
#else
// Dense weights: R_TYPE storage, advanced per batch entry by address.
void weight_stage_init() {}
uint64_t weight_batch_base() { return batch_base(p.r, p.stride_r, R_TYPE); }
float load_weight(uint64_t base, uint index) { return load_dense(base, R_TYPE, index); }
vec4 load_weight4(uint64_t base, uint index) { return load_dense4(base, R_TYPE, index); }
#endif

// The R load of either product: `second` is a constant at every call site (the bodies instantiate
// their sweep once per product), so each sweep carries only its own load code.
float load_r(bool second, uint64_t base, uint index) {
  return second ? load_dense(base, TYPE_F32, index) : load_weight(base, index);
}
vec4 load_r4(bool second, uint64_t base, uint index) {
  return second ? load_dense4(base, TYPE_F32, index) : load_weight4(base, index);
}

float load_left(uint64_t base, uint index) { return load_dense(base, L_TYPE, index); }
vec4 load_left4(uint64_t base, uint index) { return load_dense4(base, L_TYPE, index); }

// Stores `value` at `index` of a dense tensor (rounded to 16 bits for those types).
void store_dense(uint64_t base, uint type, uint index, float value) {
#ifdef STORAGE_16BIT
  if (type == TYPE_F16) {
    F16(base).v[index] = float16_t(value);
    return;
  }
  if (type == TYPE_BF16) {
    U16(base).v[index] = uint16_t(float_to_bf16(value));
    return;
  }
#endif
  F32(base).v[index] = value;
}

// What store_dense(base, type, index, value) left at `index`, as fp32. fp16 is read back from memory
// (F16ReadBack), as the unfused kernels load it; only the SwiGLU epilogue asks, so the volatile load
// costs nothing elsewhere.
float stored_dense(uint64_t base, uint type, uint index, float value) {
#ifdef STORAGE_16BIT
  if (type == TYPE_F16) return float(F16ReadBack(base).v[index]);
  if (type == TYPE_BF16) return bf16_to_float(float_to_bf16(value));
#endif
  return value;
}

// The R operand of either product (`second`: R2): its columns, leading dimension and base (see
// SECOND_PRODUCT; the base as weight_batch_base() gives it).
uint product_cols(bool second) { return second ? p.cols2 : p.cols; }
uint product_ld_r(bool second) { return second && !R_P_CONTIGUOUS ? p.cols2 : p.ld_r; }
uint64_t product_r_base(bool second) { return second ? p.r2 : weight_batch_base(); }

// Writes alpha2 * sum (+ C2) to C2[i, j]; i < rows, j < cols2.
void store_output2(uint i, uint j, float sum) {
  uint index = i * p.cols2 + j;
  float value = p.alpha2 * sum;
  if (ACCUMULATE2) value += load_dense(p.c2, C_TYPE, index);
  store_dense(p.c2, C_TYPE, index, value);
}

// Writes alpha * sum (+ beta * C) (+ bias) to C[i, j] of one batch entry; i < rows, j < cols.
void store_output(uint64_t c_base, uint i, uint j, float sum) {
  uint index = C_TRANSPOSED ? j * p.ld_c + i : i * p.ld_c + j;
  float value = p.alpha * sum;
  if (ACCUMULATE) value += p.beta * load_dense(c_base, C_TYPE, index);  // beta 0: C may hold NaN, unread
  if (HAS_BIAS) value += F32(p.bias).v[C_TRANSPOSED ? i : j];
  store_dense(c_base, C_TYPE, index, value);
  // As shaders/swiglu.comp computes it from the stored up value: the fused h is the unfused one.
  if (SWIGLU_EPILOGUE) {
    float stored = stored_dense(c_base, C_TYPE, index, value);
    store_dense(p.c2, C_TYPE, index, gate_activation(load_dense(p.bias, C_TYPE, index)) * stored);
  }
}

#ifdef MATMUL_DIRECT
#include "matmul_direct.glsl"
#else
#include "matmul_tiled.glsl"
#endif
