#include "engine/model/gguf_weights.hpp"

#include <cstdlib>

#include "engine/base/error.hpp"
#include "engine/base/log.hpp"
#include "engine/base/sizes.hpp"
#include "engine/model/gguf_model.hpp"
#include "engine/model/session.hpp"
#include "engine/model/transformer.hpp"
#include "engine/quant/ggml_device.hpp"

namespace vkt::model {

using kernels::WeightFormat;

namespace {

// The HF name of the tensor that stores `module` of `layer` (a fused owner for Phi-3's pieces).
std::string stored_weight_name(const spec::ModelShape& shape, uint32_t layer, spec::Module module) {
  return "model.layers." + std::to_string(layer) + "." + spec::stored_module_path(shape, module) + ".weight";
}

}  // namespace

void resolve_gguf_formats(const std::filesystem::path& path, const ModelConfig& config, spec::RunSettings& s) {
  const bool asked = s.base_format == WeightFormat::gguf;
  if (s.method == spec::Method::full && s.training) {
    if (asked)
      throw UserError(
          "--quant gguf keeps the frozen base in the GGUF file's types, but --method full trains every "
          "weight in fp32",
          "drop --quant gguf (full finetuning dequantizes " + path.string() + " on load) or use --method lora");
    return;
  }
  if (!asked && kernels::is_quantized(s.base_format)) return;  // another format asked for: requantized on load
  const size_t weights = static_cast<size_t>(config.num_hidden_layers) * spec::module_count;
  if (asked && s.gguf_formats.size() == weights) return;  // resolved already (the trainer's plan, then the session)
  // Kill switch of the fast path (CONVENTIONS.md): the previous behaviour, every tensor dequantized
  // on load to --dtype. An explicit --quant gguf still keeps the blocks.
  const char* disabled = std::getenv("VKT_DISABLE_GGUF_BLOCKS");
  if (!asked && disabled && *disabled && std::string(disabled) != "0") return;
  const WeightFormat dense = s.dtype == kernels::DType::f16    ? WeightFormat::f16
                             : s.dtype == kernels::DType::bf16 ? WeightFormat::bf16
                                                               : WeightFormat::f32;
  GgufTensorSource source(path, config);
  const spec::ModelShape shape = model_shape(config);
  s.gguf_formats.clear();
  for (uint32_t layer = 0; layer < static_cast<uint32_t>(config.num_hidden_layers); layer++)
    for (size_t m = 0; m < spec::module_count; m++) {
      const auto module = static_cast<spec::Module>(m);
      const std::string stored = stored_weight_name(shape, layer, module);
      WeightFormat format = dense;
      if (source.contains(stored)) {
        const WeightFormat device = quant::ggml_device_format(source.stored_type(stored));
        const uint64_t elements = spec::module_in_features(shape, module) * spec::fused_out_features(shape, module);
        if (kernels::is_ggml_block(device) && elements > (uint64_t{1} << 32))
          log::warn(source.where() + ": tensor " + gguf_tensor_name(stored) + " has more than 2^32 elements, which " +
                    "the matmul's block index cannot address: dequantized on load to " +
                    kernels::weight_format_name(dense) + " instead");
        else if (kernels::is_ggml_block(device))
          format = device;
      }
      s.gguf_formats.push_back(format);
    }
  s.base_format = WeightFormat::gguf;
  log::info("GGUF base kept on the device as stored: " + spec::base_format_text(s) +
            "; --quant nf4/int8/int4 requantizes it instead");
}

void upload_gguf_blocks(vk::Context& context, BufferSet& buffers, const TensorSource& source,
                        const spec::ModelShape& shape, uint32_t layer, spec::Module module, uint32_t rows,
                        uint32_t cols) {
  const auto* gguf = dynamic_cast<const GgufTensorSource*>(&source);
  VKT_ASSERT(gguf != nullptr, "GGUF blocks asked of a non-GGUF source");
  const std::string stored = stored_weight_name(shape, layer, module);
  const uint64_t total_rows = spec::fused_out_features(shape, module);
  const std::vector<uint64_t> stored_shape = gguf->shape(stored);
  if (stored_shape != std::vector<uint64_t>{total_rows, cols})
    throw UserError(gguf->where() + ": tensor " + gguf_tensor_name(stored) + " has shape " + shape_text(stored_shape) +
                        ", expected " + shape_text({total_rows, cols}),
                    "the file's metadata and its tensors disagree; re-convert the model");
  std::vector<uint8_t> bytes = gguf->read_raw_rows(stored, spec::fused_row_offset(shape, module), rows, cols);
  const WeightFormat format = quant::ggml_device_format(gguf->stored_type(stored));
  bytes.resize(quant::ggml_device_bytes(format, uint64_t{rows} * cols), 0);  // + the tail word shaders may read
  const std::string name = layer_tensor_name(layer, module);
  vk::Buffer& buffer = buffers.buffer(name);
  VKT_ASSERT(bytes.size() <= buffer.size(), "planned buffer too small for " + name);
  context.upload(buffer, bytes.data(), 0, bytes.size());
}

}  // namespace vkt::model
