#pragma once
// ggml's reference quantizers of the K-quant super-blocks the exporter writes for Q4_K_M files
// (ggml-quants.c quantize_row_q4_K_ref / quantize_row_q6_K_ref, what llama-quantize runs without
// an importance matrix), bit-exact: the same fp32 operations in the same order, nearest_int's
// magic-number rounding, compiled with -ffp-contract=off (see ggml_blocks.hpp).
// Layouts: Q4_K 256 values / 144 bytes, Q6_K 256 values / 210 bytes (ggml_blocks.hpp).
#include <cstdint>

namespace vkt::quant {

void quantize_q4_k_block(const float* values, uint8_t* block);  // values[256] -> block[144]
void quantize_q6_k_block(const float* values, uint8_t* block);  // values[256] -> block[210]

}  // namespace vkt::quant
