#include "engine/kernels/convert.hpp"

#include <string>

#include "engine/base/half.hpp"
#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {

namespace {
void convert(Recorder& recorder, const char* shader, const BufferRange& source, uint32_t source_bytes,
             const BufferRange& destination, uint32_t destination_bytes, uint32_t n) {
  if (!recorder.context().caps().storage_16bit)
    throw UserError(
        std::string(shader) + ": device " + recorder.context().caps().name + " cannot read or write 16-bit buffers",
        "keep tensors in fp32 on this device");
  require_bytes(source, uint64_t(n) * source_bytes, shader, "source");
  require_bytes(destination, uint64_t(n) * destination_bytes, shader, "destination");
  struct {
    uint64_t source, destination;
    uint32_t n;
  } push{source.address, destination.address, n};
  record_dispatch(
      recorder, {.shader = shader, .push = push, .grid = grid_1d(n, 256), .reads = {source}, .writes = {destination}});
}
}  // namespace

void convert_f32_to_f16(Recorder& recorder, const BufferRange& source, const BufferRange& destination, uint32_t n) {
  convert(recorder, "convert_f32_to_f16", source, 4, destination, 2, n);
}
void convert_f16_to_f32(Recorder& recorder, const BufferRange& source, const BufferRange& destination, uint32_t n) {
  convert(recorder, "convert_f16_to_f32", source, 2, destination, 4, n);
}
void convert_f32_to_bf16(Recorder& recorder, const BufferRange& source, const BufferRange& destination, uint32_t n) {
  convert(recorder, "convert_f32_to_bf16", source, 4, destination, 2, n);
}
void convert_bf16_to_f32(Recorder& recorder, const BufferRange& source, const BufferRange& destination, uint32_t n) {
  convert(recorder, "convert_bf16_to_f32", source, 2, destination, 4, n);
}

}  // namespace vkt::kernels

namespace vkt::ref {
void convert_f32_to_f16(const float* source, uint16_t* destination, size_t n) {
  for (size_t i = 0; i < n; i++) destination[i] = float_to_half(source[i]);
}
void convert_f16_to_f32(const uint16_t* source, float* destination, size_t n) {
  for (size_t i = 0; i < n; i++) destination[i] = half_to_float(source[i]);
}
void convert_f32_to_bf16(const float* source, uint16_t* destination, size_t n) {
  for (size_t i = 0; i < n; i++) destination[i] = float_to_bf16(source[i]);
}
void convert_bf16_to_f32(const uint16_t* source, float* destination, size_t n) {
  for (size_t i = 0; i < n; i++) destination[i] = bf16_to_float(source[i]);
}
}  // namespace vkt::ref
