#pragma once
// GGUF tensors kept in their own type on the device: which kernels::WeightFormat holds each ggml
// type (the block formats as raw blocks, F32/F16/BF16 as dense weights), and the upload of a
// tensor's raw bytes into a weight the matmul dequantizes in its load stage
// (shaders/ggml_blocks.glsl, bit-identical to dequantize_ggml).
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "engine/kernels/types.hpp"
#include "engine/quant/device.hpp"
#include "engine/quant/ggml_blocks.hpp"

namespace vkt::quant {

// The device format of a ggml type: F32 -> f32, F16 -> f16, BF16 -> bf16, Q8_0 -> ggml_q8_0, ...
// Every type vktune reads has one.
kernels::WeightFormat ggml_device_format(GgmlType type);
// The ggml type of a device format (nullopt for nf4/int formats).
std::optional<GgmlType> ggml_type_of_format(kernels::WeightFormat format);

// Bytes the device holds for an n-element weight in `format` (a ggml block or dense format): the
// blocks (+ kernels::ggml_tail_bytes for the block formats) or n * 2 / n * 4.
uint64_t ggml_device_bytes(kernels::WeightFormat format, uint64_t elements);

// A (rows, cols) weight of ggml type `type` from its raw bytes (row-major ggml rows, cols a
// multiple of the block), uploaded as is; category quantized_weights (base_weights for dense types).
DeviceWeight upload_ggml(vk::Context& context, GgmlType type, uint32_t rows, uint32_t cols,
                         std::span<const uint8_t> bytes, const std::string& name);

}  // namespace vkt::quant
