#pragma once
// A GGUF base kept in its own tensor types on the device (--quant gguf, the default for a .gguf
// model): which format each linear weight gets, and the upload of its raw blocks. The matmul
// dequantizes them in its load stage (shaders/ggml_blocks.glsl), bit-identical to the CPU's
// dequantize-on-load, so only fp32 summation order separates the two paths.
#include <filesystem>
#include <string>

#include "engine/model/buffers.hpp"
#include "engine/model/config.hpp"
#include "engine/model/tensor_source.hpp"
#include "engine/spec/run_settings.hpp"

namespace vkt::model {

// For a run on the GGUF file `path`: when the run asked for --quant gguf, or for no quantized
// format (none, which also follows --dtype), sets base_format = gguf and lists each linear
// weight's format in gguf_formats: its ggml block type as stored (Q8_0, Q4_K, Q6_K...), or for a
// dense stored type (F32/F16/BF16) the run's dense format. Another --quant (nf4, int8...) and full
// finetuning leave the settings alone: the tensors are then dequantized on load and converted, as
// they are by default with VKT_DISABLE_GGUF_BLOCKS=1.
// Logs the mix it keeps. UserError for --quant gguf with full finetuning.
void resolve_gguf_formats(const std::filesystem::path& path, const ModelConfig& config, spec::RunSettings& settings);

// Uploads layer `layer`'s `module` weight (rows, cols) as its raw GGUF blocks into the plan's
// buffer of that name (a fused weight's row block for Phi-3-style pieces). `source` must be the
// GgufTensorSource of the file.
void upload_gguf_blocks(vk::Context& context, BufferSet& buffers, const TensorSource& source,
                        const spec::ModelShape& shape, uint32_t layer, spec::Module module, uint32_t rows,
                        uint32_t cols);

}  // namespace vkt::model
