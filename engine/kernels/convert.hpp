#pragma once
// Storage-type conversions between fp32 and fp16 / bf16 (stored as uint16 bit patterns),
// bit-identical to engine/base/half.hpp: round to nearest even, NaN stays NaN (quiet),
// overflow to infinity, fp16 subnormals kept. The shaders convert with integer arithmetic
// (shaders/convert.glsl), not with the device's float16 casts, whose rounding and denormal
// handling Vulkan leaves to the implementation. Needs 16-bit storage (UserError otherwise).
#include "engine/kernels/dispatch.hpp"

namespace vkt::kernels {

// source: (n) fp32; destination: (n) fp16 bits.
void convert_f32_to_f16(Recorder& recorder, const BufferRange& source, const BufferRange& destination, uint32_t n);
// source: (n) fp16 bits; destination: (n) fp32.
void convert_f16_to_f32(Recorder& recorder, const BufferRange& source, const BufferRange& destination, uint32_t n);
// source: (n) fp32; destination: (n) bf16 bits.
void convert_f32_to_bf16(Recorder& recorder, const BufferRange& source, const BufferRange& destination, uint32_t n);
// source: (n) bf16 bits; destination: (n) fp32.
void convert_bf16_to_f32(Recorder& recorder, const BufferRange& source, const BufferRange& destination, uint32_t n);

}  // namespace vkt::kernels

namespace vkt::ref {
// The references are engine/base/half.hpp's functions applied element by element.
void convert_f32_to_f16(const float* source, uint16_t* destination, size_t n);
void convert_f16_to_f32(const uint16_t* source, float* destination, size_t n);
void convert_f32_to_bf16(const float* source, uint16_t* destination, size_t n);
void convert_bf16_to_f32(const uint16_t* source, float* destination, size_t n);
}  // namespace vkt::ref
