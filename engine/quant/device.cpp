#include "engine/quant/device.hpp"

#include "engine/base/error.hpp"
#include "engine/kernels/quantize.hpp"
#include "engine/vk/recorder.hpp"

namespace vkt::quant {

namespace {

vk::BufferRange range_of(const vk::Buffer& buffer) { return buffer.valid() ? buffer.range() : vk::BufferRange{}; }

// Array sizes of a weight, from its shape and format (what quantize() produces).
QuantizedWeight shape_only(WeightFormat format, uint32_t rows, uint32_t cols, const QuantOptions& options) {
  QuantizedWeight shape;
  shape.format = format;
  shape.rows = rows;
  shape.cols = cols;
  shape.block_size = options.block_size;
  shape.double_quant = format == WeightFormat::nf4 && options.double_quant;
  return shape;
}

struct ArrayBytes {
  uint64_t data = 0, scales = 0, zeros = 0, absmax_codes = 0, absmax_scales = 0;
};

ArrayBytes array_bytes(const QuantizedWeight& w) {
  ArrayBytes bytes;
  switch (w.format) {
    case WeightFormat::f32:
      bytes.data = w.elements() * 4;
      break;
    case WeightFormat::f16:
    case WeightFormat::bf16:
      bytes.data = w.elements() * 2;
      break;
    case WeightFormat::int8:
      bytes.data = w.padded_elements();
      break;
    default:
      bytes.data = w.padded_elements() / 2;
      break;
  }
  if (!kernels::is_quantized(w.format)) return bytes;
  if (w.format == WeightFormat::nf4 && w.double_quant) {
    bytes.absmax_codes = w.blocks();
    bytes.absmax_scales = w.groups() * 4;
  } else {
    bytes.scales = w.blocks() * 4;
  }
  if (w.format == WeightFormat::int4_asym) bytes.zeros = w.blocks();
  return bytes;
}

}  // namespace

DeviceWeight allocate_weight(vk::Context& context, WeightFormat format, uint32_t rows, uint32_t cols,
                             const QuantOptions& options, const std::string& name) {
  check_block_size(format, options.block_size, name);
  QuantizedWeight shape = shape_only(format, rows, cols, options);
  ArrayBytes bytes = array_bytes(shape);
  vk::Category category = kernels::is_quantized(format) ? vk::Category::quantized_weights : vk::Category::base_weights;
  auto allocate = [&](uint64_t size, const char* suffix) {
    return size == 0 ? vk::Buffer() : context.allocate(size, category, name + suffix);
  };
  DeviceWeight weight;
  weight.rows = rows;
  weight.cols = cols;
  weight.data = allocate(bytes.data, "");
  weight.scales = allocate(bytes.scales, ".scales");
  weight.zeros = allocate(bytes.zeros, ".zeros");
  weight.absmax_codes = allocate(bytes.absmax_codes, ".absmax_codes");
  weight.absmax_scales = allocate(bytes.absmax_scales, ".absmax_scales");
  weight.ref.format = format;
  weight.ref.block_size = options.block_size;
  weight.ref.double_quant = shape.double_quant;
  weight.ref.data = range_of(weight.data);
  weight.ref.scales = range_of(weight.scales);
  weight.ref.zeros = range_of(weight.zeros);
  weight.ref.absmax_codes = range_of(weight.absmax_codes);
  weight.ref.absmax_scales = range_of(weight.absmax_scales);
  return weight;
}

DeviceWeight upload(vk::Context& context, const QuantizedWeight& q, const std::string& name) {
  QuantOptions options{q.block_size, q.double_quant};
  DeviceWeight weight = allocate_weight(context, q.format, q.rows, q.cols, options, name);
  ArrayBytes bytes = array_bytes(q);
  VKT_ASSERT(q.data.size() == bytes.data && q.scales.size() * 4 == bytes.scales && q.zeros.size() == bytes.zeros &&
                 q.absmax_codes.size() == bytes.absmax_codes && q.absmax_scales.size() * 4 == bytes.absmax_scales,
             name + ": QuantizedWeight arrays do not match its shape and format");
  if (weight.data.valid()) context.upload(weight.data, q.data.data());
  if (weight.scales.valid()) context.upload(weight.scales, q.scales.data());
  if (weight.zeros.valid()) context.upload(weight.zeros, q.zeros.data());
  if (weight.absmax_codes.valid()) context.upload(weight.absmax_codes, q.absmax_codes.data());
  if (weight.absmax_scales.valid()) context.upload(weight.absmax_scales, q.absmax_scales.data());
  weight.ref.absmax_offset = q.absmax_offset;
  return weight;
}

QuantizedWeight download(vk::Context& context, const DeviceWeight& weight) {
  QuantizedWeight q = shape_only(weight.ref.format, weight.rows, weight.cols,
                                 QuantOptions{weight.ref.block_size, weight.ref.double_quant});
  ArrayBytes bytes = array_bytes(q);
  q.data.resize(bytes.data);
  q.scales.resize(bytes.scales / 4);
  q.zeros.resize(bytes.zeros);
  q.absmax_codes.resize(bytes.absmax_codes);
  q.absmax_scales.resize(bytes.absmax_scales / 4);
  if (weight.data.valid()) context.download(weight.data, q.data.data(), 0, bytes.data);
  if (weight.scales.valid()) context.download(weight.scales, q.scales.data(), 0, bytes.scales);
  if (weight.zeros.valid()) context.download(weight.zeros, q.zeros.data(), 0, bytes.zeros);
  if (weight.absmax_codes.valid()) context.download(weight.absmax_codes, q.absmax_codes.data(), 0, bytes.absmax_codes);
  if (weight.absmax_scales.valid())
    context.download(weight.absmax_scales, q.absmax_scales.data(), 0, bytes.absmax_scales);
  q.absmax_offset = weight.ref.absmax_offset;
  return q;
}

DeviceWeight quantize_on_device(vk::Context& context, const vk::BufferRange& w, uint32_t rows, uint32_t cols,
                                WeightFormat format, const QuantOptions& options, const std::string& name) {
  VKT_ASSERT(kernels::is_quantized(format), name + ": quantize_on_device needs a quantized format");
  DeviceWeight weight = allocate_weight(context, format, rows, cols, options, name);
  uint64_t n = uint64_t{rows} * cols;
  uint64_t workspace_bytes = kernels::quantize_workspace_bytes(weight.ref, n);
  vk::Buffer workspace, offset;
  if (workspace_bytes > 0) {
    workspace = context.allocate(workspace_bytes, vk::Category::workspace, name + ".raw_absmax");
    offset = context.allocate(4, vk::Category::workspace, name + ".absmax_offset");
  }
  context.run([&](vk::Recorder& recorder) {
    kernels::quantize_weight(recorder, w, n, weight.ref, range_of(workspace), range_of(offset));
  });
  if (offset.valid()) context.download(offset, &weight.ref.absmax_offset, 0, 4);
  return weight;
}

}  // namespace vkt::quant
