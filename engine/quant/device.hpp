#pragma once
// Quantized weights on the device: upload a QuantizedWeight into buffers and get the
// kernels::WeightRef the matmul takes, read one back, or quantize an fp32 device tensor with the
// GPU kernels (engine/kernels/quantize.hpp).
#include <string>

#include "engine/kernels/types.hpp"
#include "engine/quant/quantize.hpp"
#include "engine/vk/context.hpp"

namespace vkt::quant {

// The buffers of one weight (category quantized_weights, or base_weights for dense formats) and
// the WeightRef over them. Arrays a format does not use stay empty (invalid Buffer, empty range).
struct DeviceWeight {
  vk::Buffer data;           // codes or dense values
  vk::Buffer scales;         // (blocks) fp32
  vk::Buffer zeros;          // (blocks) uint8
  vk::Buffer absmax_codes;   // (blocks) uint8
  vk::Buffer absmax_scales;  // (ceil(blocks/256)) fp32
  kernels::WeightRef ref;
  uint32_t rows = 0, cols = 0;
};

// Buffers sized for a weight of this shape and format (contents undefined).
DeviceWeight allocate_weight(vk::Context& context, WeightFormat format, uint32_t rows, uint32_t cols,
                             const QuantOptions& options, const std::string& name);
DeviceWeight upload(vk::Context& context, const QuantizedWeight& weight, const std::string& name);
QuantizedWeight download(vk::Context& context, const DeviceWeight& weight);

// Quantizes w: (rows, cols) fp32 on the device with the GPU kernels (codes and statistics equal
// quantize() on the CPU) and waits; for nf4 with double quant it reads the 4-byte offset back
// into ref.absmax_offset. Non-finite inputs are not checked here.
DeviceWeight quantize_on_device(vk::Context& context, const vk::BufferRange& w, uint32_t rows, uint32_t cols,
                                WeightFormat format, const QuantOptions& options, const std::string& name);

}  // namespace vkt::quant
