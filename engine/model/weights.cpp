#include "engine/model/weights.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/half.hpp"
#include "engine/base/log.hpp"
#include "engine/base/sizes.hpp"
#include "engine/model/gguf_weights.hpp"
#include "engine/model/transformer.hpp"
#include "engine/quant/bitsandbytes.hpp"
#include "engine/quant/quantize.hpp"

namespace vkt::model {

using kernels::DType;
using kernels::WeightFormat;

namespace {

std::string folder_name(const SafetensorsFolder& folder) { return folder.path().string(); }

// A float tensor of the model as fp32, refused when it holds NaN/Inf (naming its shard file).
std::vector<float> finite_fp32(const SafetensorsFolder& folder, const TensorView& tensor) {
  std::vector<float> values = to_fp32(tensor);
  require_finite(values, folder.file_of(tensor.name).path().string(), tensor.name);
  return values;
}

// The tensor's shape must be exactly what config.json implies: the same element count is not
// enough (a transposed k_proj would load as garbage).
void check_shape(const TensorSource& source, const std::string& name, const std::vector<uint64_t>& expected) {
  const std::vector<uint64_t> found = source.shape(name);
  if (found != expected)
    throw UserError(source.where() + ": tensor " + name + " has shape " + shape_text(found) + ", config.json implies " +
                        shape_text(expected),
                    "the weights do not belong to this config.json");
}

// The whole tensor as fp32, its shape checked (the source refuses NaN/Inf).
std::vector<float> dense_tensor(const TensorSource& source, const std::string& name,
                                const std::vector<uint64_t>& expected) {
  check_shape(source, name, expected);
  return source.read(name);
}

// Rows [first_row, first_row + rows) of a (total_rows, cols) tensor: one piece of Phi-3's fused
// qkv_proj / gate_up_proj.
std::vector<float> dense_rows(const TensorSource& source, const std::string& name, uint64_t total_rows, uint64_t cols,
                              uint64_t first_row, uint64_t rows) {
  check_shape(source, name, {total_rows, cols});
  std::vector<float> values(rows * cols);
  source.read_rows(name, first_row, cols, values);
  return values;
}

// Embeddings and lm_head (1 GB and more at real sizes) go to the device in row chunks converted
// straight from the mapping, so no whole fp32 or packed copy of the tensor is ever held.
// `buffer_name` defaults to `name`; a tied model untied by modules_to_save fills lm_head.weight from
// the embedding tensor.
// Narrowing to fp16 turns values beyond ±65504 into Inf: say which tensor, how many and how large
// (bf16 keeps fp32's range). `overflowed` carries the count and the largest |x| across chunks.
void count_fp16_overflow(const std::vector<float>& values, uint64_t& overflowed, float& largest) {
  for (float value : values)
    if (std::isfinite(value) && std::fabs(value) > 65504.0f) {
      overflowed++;
      largest = std::max(largest, std::fabs(value));
    }
}
void warn_fp16_overflow(const std::string& name, uint64_t overflowed, float largest) {
  if (overflowed == 0) return;
  log::warn(name + ": " + std::to_string(overflowed) + " values beyond fp16's ±65504 (largest |x| " +
            std::to_string(largest) + ") become Inf in --dtype fp16; use --dtype bf16 or fp32 for this model");
}

void upload_dense_streamed(vk::Context& context, BufferSet& buffers, const TensorSource& source,
                           const std::string& name, uint64_t rows, uint64_t cols, DType type,
                           const std::string& buffer_name = "") {
  check_shape(source, name, {rows, cols});
  const std::string target = buffer_name.empty() ? name : buffer_name;
  vk::Buffer& buffer = buffers.buffer(target);
  // A 16-bit trained weight's fp32 master copy starts from the file's values, not the rounded ones.
  vk::Buffer* master =
      type != DType::f32 && buffers.has("master." + target) ? &buffers.buffer("master." + target) : nullptr;
  const uint64_t out_bytes = type == DType::f32 ? 4 : 2;
  const uint64_t chunk_rows = std::max<uint64_t>(1, (16ull << 20) / (cols * 4));  // 16 MiB of fp32 per chunk
  std::vector<float> values;
  std::vector<uint16_t> packed;
  uint64_t overflowed = 0;
  float largest = 0;
  for (uint64_t row = 0; row < rows; row += chunk_rows) {
    const uint64_t count = std::min(chunk_rows, rows - row) * cols;
    values.resize(count);
    source.read_rows(name, row, cols, values);
    if (master) context.upload(*master, values.data(), row * cols * 4, count * 4);
    if (type == DType::f32) {
      context.upload(buffer, values.data(), row * cols * out_bytes, count * out_bytes);
      continue;
    }
    if (type == DType::f16) count_fp16_overflow(values, overflowed, largest);
    packed.resize(count);
    for (size_t i = 0; i < count; i++)
      packed[i] = type == DType::f16 ? float_to_half(values[i]) : float_to_bf16(values[i]);
    context.upload(buffer, packed.data(), row * cols * out_bytes, count * out_bytes);
  }
  warn_fp16_overflow(name, overflowed, largest);
}

void upload_dense(vk::Context& context, BufferSet& buffers, const std::string& name, const std::vector<float>& values,
                  DType type) {
  vk::Buffer& buffer = buffers.buffer(name);
  if (type == DType::f32) {
    context.upload(buffer, values.data(), 0, values.size() * 4);
    return;
  }
  if (type == DType::f16) {
    uint64_t overflowed = 0;
    float largest = 0;
    count_fp16_overflow(values, overflowed, largest);
    warn_fp16_overflow(name, overflowed, largest);
  }
  if (buffers.has("master." + name))  // a 16-bit trained weight's fp32 master copy: the file's values
    context.upload(buffers.buffer("master." + name), values.data(), 0, values.size() * 4);
  std::vector<uint16_t> packed(values.size());
  for (size_t i = 0; i < values.size(); i++)
    packed[i] = type == DType::f16 ? float_to_half(values[i]) : float_to_bf16(values[i]);
  context.upload(buffer, packed.data(), 0, packed.size() * 2);
}

template <class T>
void upload_vector(vk::Context& context, BufferSet& buffers, const std::string& name, const std::vector<T>& values) {
  vk::Buffer& buffer = buffers.buffer(name);
  VKT_ASSERT(values.size() * sizeof(T) <= buffer.size(), "planned buffer too small for " + name);
  context.upload(buffer, values.data(), 0, values.size() * sizeof(T));
}

// Puts a quantized weight into the plan's buffers for `name` (codes, scales, ...).
void upload_quantized(vk::Context& context, BufferSet& buffers, const std::string& name,
                      const quant::QuantizedWeight& weight, LoadedWeights& loaded) {
  upload_vector(context, buffers, name, weight.data);
  if (weight.format == WeightFormat::nf4 && weight.double_quant) {
    upload_vector(context, buffers, name + ".absmax_codes", weight.absmax_codes);
    upload_vector(context, buffers, name + ".absmax_scales", weight.absmax_scales);
    loaded.absmax_offsets[name] = weight.absmax_offset;
    return;
  }
  upload_vector(context, buffers, name + ".scales", weight.scales);
  if (weight.format == WeightFormat::int4_asym) upload_vector(context, buffers, name + ".zeros", weight.zeros);
}

}  // namespace

quant::QuantizedWeight read_bitsandbytes_nf4(const SafetensorsFolder& folder, const std::string& name, uint32_t rows,
                                             uint32_t cols) {
  const TensorView& state_view = folder.tensor(name + ".quant_state.bitsandbytes__nf4");
  nlohmann::json state;
  try {
    state = nlohmann::json::parse(std::string(state_view.bytes.begin(), state_view.bytes.end()));
  } catch (const nlohmann::json::exception&) {
    throw UserError(folder_name(folder) + ": " + name + ".quant_state.bitsandbytes__nf4 is not valid JSON",
                    "the checkpoint is damaged; re-save it with transformers");
  }
  const TensorView& packed = folder.tensor(name);
  quant::BitsandbytesNf4 source;
  source.rows = rows;
  source.cols = cols;
  source.blocksize = state.value("blocksize", 64u);
  source.packed = packed.bytes.data();
  source.packed_bytes = packed.bytes.size();
  std::vector<float> quant_map, absmax_f32, nested_absmax, nested_map;
  if (const TensorView* map = folder.find(name + ".quant_map")) {
    quant_map = finite_fp32(folder, *map);
    source.quant_map = quant_map.data();
  }
  const TensorView& absmax = folder.tensor(name + ".absmax");
  if (const TensorView* nested = folder.find(name + ".nested_absmax")) {
    source.absmax_codes = absmax.bytes.data();
    nested_absmax = finite_fp32(folder, *nested);
    source.nested_absmax = nested_absmax.data();
    if (const TensorView* nested_map_view = folder.find(name + ".nested_quant_map")) {
      nested_map = finite_fp32(folder, *nested_map_view);
      source.nested_quant_map = nested_map.data();
    }
    source.nested_offset = state.value("nested_offset", 0.0f);
    source.nested_blocksize = state.value("nested_blocksize", 256u);
  } else {
    absmax_f32 = finite_fp32(folder, absmax);
    source.absmax = absmax_f32.data();
  }
  return quant::from_bitsandbytes_nf4(source, name);
}

std::optional<kernels::WeightFormat> quantized_format_from_name(const std::string& name) {
  std::optional<WeightFormat> format = kernels::weight_format_from_quant_name(name);
  if (format == WeightFormat::f32 || format == WeightFormat::nf4 || format == WeightFormat::gguf) return std::nullopt;
  return format;
}

std::string quantized_format_name(kernels::WeightFormat format) { return kernels::weight_format_name(format); }

std::optional<VktuneQuantization> vktune_quantization(const ModelConfig& config, const std::string& where) {
  const nlohmann::json& document = config.original;
  if (!document.is_object() || !document.contains("quantization_config")) return std::nullopt;
  const nlohmann::json& q = document["quantization_config"];
  if (!q.is_object() || q.value("quant_method", std::string()) != "vktune") return std::nullopt;
  VktuneQuantization result;
  std::string format = q.value("format", std::string());
  auto parsed = quantized_format_from_name(format);
  if (!parsed)
    throw UserError(where + ": quantization_config.format is \"" + format + "\", not one vktune writes",
                    "expected int8, int4 or int4-asym; re-run `vktune quantize` on the original model");
  result.format = *parsed;
  if (!q.contains("block_size") || !q["block_size"].is_number_unsigned())
    throw UserError(where + ": quantization_config.block_size is missing or not a positive integer",
                    "re-run `vktune quantize` on the original model");
  result.block_size = q["block_size"].get<uint32_t>();
  quant::check_block_size(result.format, result.block_size, where + " quantization_config");
  result.original_dtype = q.value("original_dtype", std::string());
  return result;
}

nlohmann::json vktune_quantization_json(const VktuneQuantization& quantization) {
  nlohmann::json json = {{"quant_method", "vktune"},
                         {"format", quantized_format_name(quantization.format)},
                         {"block_size", quantization.block_size}};
  if (!quantization.original_dtype.empty()) json["original_dtype"] = quantization.original_dtype;
  return json;
}

quant::QuantizedWeight read_vktune_quantized(const SafetensorsFolder& folder, const std::string& name, uint32_t rows,
                                             uint32_t cols, const VktuneQuantization& quantization) {
  quant::QuantizedWeight q;
  q.format = quantization.format;
  q.rows = rows;
  q.cols = cols;
  q.block_size = quantization.block_size;
  const uint64_t n = q.elements(), blocks = q.blocks();
  const bool int8 = q.format == WeightFormat::int8;
  auto expect = [&](const TensorView& tensor, FileDtype dtype, uint64_t elements) {
    if (tensor.dtype != dtype || tensor.element_count() != elements)
      throw UserError(folder_name(folder) + ": tensor " + tensor.name + " should be " + file_dtype_name(dtype) + " [" +
                          std::to_string(elements) + "] for a " + quantized_format_name(q.format) +
                          " weight of shape [" + std::to_string(rows) + ", " + std::to_string(cols) +
                          "] in blocks of " + std::to_string(q.block_size),
                      "the weights do not match config.json's quantization_config; re-run `vktune quantize`");
  };
  const TensorView& codes = folder.tensor(name);
  expect(codes, int8 ? FileDtype::I8 : FileDtype::U8, int8 ? n : (n + 1) / 2);
  const TensorView& scales = folder.tensor(name + ".scales");
  expect(scales, FileDtype::F32, blocks);
  q.scales = finite_fp32(folder, scales);
  if (q.format == WeightFormat::int4_asym) {
    const TensorView& zeros = folder.tensor(name + ".zeros");
    expect(zeros, FileDtype::U8, blocks);
    q.zeros.assign(zeros.bytes.begin(), zeros.bytes.end());
  }
  // The padding of the last block holds the code of 0.0, as quant::quantize_int writes it.
  const uint64_t padded = q.padded_elements();
  if (int8) {
    q.data.assign(padded, 0);
    std::memcpy(q.data.data(), codes.bytes.data(), n);
    return q;
  }
  uint8_t pad = q.format == WeightFormat::int4 ? 8 : q.zeros.back();
  q.data.assign(padded / 2, static_cast<uint8_t>(pad << 4 | pad));
  std::memcpy(q.data.data(), codes.bytes.data(), codes.bytes.size());
  if (n % 2) q.data[n / 2] = static_cast<uint8_t>((q.data[n / 2] & 0xf0) | pad);  // the low nibble past the end
  return q;
}

bool is_bitsandbytes_nf4(const SafetensorsFolder& folder, const ModelConfig& config) {
  if (config.num_hidden_layers <= 0) return false;
  if (config.fused_projections())
    return folder.contains("model.layers.0.self_attn.qkv_proj.weight.quant_state.bitsandbytes__nf4");
  return folder.contains(layer_tensor_name(0, spec::Module::q_proj, "weight.quant_state.bitsandbytes__nf4"));
}

bool bitsandbytes_keeps_double_quant(const SafetensorsFolder& folder, const ModelConfig& config) {
  auto rows = static_cast<uint32_t>(config.q_size()), cols = static_cast<uint32_t>(config.hidden_size);
  return read_bitsandbytes_nf4(folder, layer_tensor_name(0, spec::Module::q_proj), rows, cols).double_quant;
}

LoadedWeights load_weights(vk::Context& context, const TensorSource& source, const ModelConfig& config,
                           const plan::MemoryPlan& plan, BufferSet& buffers, ProgressBar* progress) {
  const auto& s = plan.settings;
  const bool full = s.method == spec::Method::full && s.training;
  const DType dense = s.dtype;  // full finetuning: the run's type (fp32, or 16-bit with --bf16/--fp16)
  LoadedWeights loaded;
  // bitsandbytes and vktune-quantized checkpoints are safetensors folders only.
  const SafetensorsFolder* folder_pointer = source.safetensors();
  loaded.bitsandbytes_nf4 = folder_pointer && is_bitsandbytes_nf4(*folder_pointer, config);
  if (loaded.bitsandbytes_nf4 && s.base_format != WeightFormat::nf4)
    throw UserError(source.where() + " is a bitsandbytes 4-bit (NF4) checkpoint",
                    "train it with --method qlora (or --quant nf4); full finetuning needs an unquantized model");
  const std::optional<VktuneQuantization> prequantized =
      folder_pointer ? vktune_quantization(config, source.where() + "/config.json") : std::nullopt;
  const spec::ModelShape& shape = plan.shape;
  if (shape.fused_projections && (loaded.bitsandbytes_nf4 || prequantized))
    throw UserError(source.where() + " is a quantized checkpoint of a model with fused projections (Phi-3)",
                    "load its unquantized weights and train with --method qlora: vktune quantizes them on load");
  const uint64_t hidden = static_cast<uint64_t>(config.hidden_size), vocab = static_cast<uint64_t>(config.vocab_size);
  int64_t done = 0;
  auto step = [&](const std::string& what) {
    if (progress) progress->update(++done, what);
  };

  // modules_to_save copies of embed_tokens / lm_head start from the base weights, in fp32.
  auto table_type = [&](const std::string& name) {
    return plan.find(name).category == vk::Category::adapter_params ? DType::f32 : dense;
  };
  upload_dense_streamed(context, buffers, source, "model.embed_tokens.weight", vocab, hidden,
                        table_type("model.embed_tokens.weight"));
  step("embeddings");
  for (uint32_t layer = 0; layer < static_cast<uint32_t>(config.num_hidden_layers); layer++) {
    std::string prefix = "model.layers." + std::to_string(layer) + ".";
    for (const char* norm : {"input_layernorm.weight", "post_attention_layernorm.weight"})
      upload_dense(context, buffers, prefix + norm, dense_tensor(source, prefix + norm, {hidden}), DType::f32);
    if (config.gemma)
      for (const char* norm : {"pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight"})
        upload_dense(context, buffers, prefix + norm, dense_tensor(source, prefix + norm, {hidden}), DType::f32);
    if (config.qk_norm)
      for (const char* norm : {"self_attn.q_norm.weight", "self_attn.k_norm.weight"})
        upload_dense(context, buffers, prefix + norm, dense_tensor(source, prefix + norm, {plan.shape.head_dim}),
                     DType::f32);
    for (size_t m = 0; m < spec::module_count; m++) {
      auto module = static_cast<spec::Module>(m);
      auto rows = static_cast<uint32_t>(spec::module_out_features(plan.shape, module));
      auto cols = static_cast<uint32_t>(spec::module_in_features(plan.shape, module));
      std::string name = layer_tensor_name(layer, module);
      std::string bias = layer_tensor_name(layer, module, "bias");
      if (buffers.has(bias)) upload_dense(context, buffers, bias, dense_tensor(source, bias, {rows}), DType::f32);
      if (loaded.bitsandbytes_nf4) {
        quant::QuantizedWeight weight = read_bitsandbytes_nf4(*folder_pointer, name, rows, cols);
        if (weight.double_quant != s.double_quant) {
          // The checkpoint's double quantization does not match the run's (or its nested map is
          // not ours): requantize only the absmax statistics, the 4-bit codes stay as they are.
          std::vector<float> absmax = weight.block_absmax();
          weight.double_quant = s.double_quant;
          if (s.double_quant) {
            quant::DoubleQuantized dq = quant::double_quantize(absmax.data(), absmax.size());
            weight.absmax_codes = std::move(dq.codes);
            weight.absmax_scales = std::move(dq.scales);
            weight.absmax_offset = dq.offset;
            weight.scales.clear();
          } else {
            weight.scales = std::move(absmax);
            weight.absmax_codes.clear();
            weight.absmax_scales.clear();
          }
        }
        upload_quantized(context, buffers, name, weight, loaded);
      } else {
        const WeightFormat stored_format = spec::linear_weight_format(s, layer, module);
        if (!full && kernels::is_ggml_block(stored_format)) {  // a GGUF base's blocks, as stored
          upload_gguf_blocks(context, buffers, source, shape, layer, module, rows, cols);
          step(prefix + spec::module_name(module));
          continue;
        }
        std::vector<float> values;
        if (prequantized) {
          quant::QuantizedWeight weight = read_vktune_quantized(*folder_pointer, name, rows, cols, *prequantized);
          if (!full && s.base_format == weight.format && s.quant_block == weight.block_size) {
            upload_quantized(context, buffers, name, weight, loaded);  // as stored: no requantization
            step(prefix + spec::module_name(module));
            continue;
          }
          values = quant::dequantize(weight);  // another format was asked for: convert from the stored values
        } else if (spec::fused_out_features(shape, module) != rows) {
          // A piece of a fused weight: its row block. Each piece is quantized on its own below.
          const std::string stored =
              "model.layers." + std::to_string(layer) + "." + spec::stored_module_path(shape, module) + ".weight";
          values = dense_rows(source, stored, spec::fused_out_features(shape, module), cols,
                              spec::fused_row_offset(shape, module), rows);
        } else {
          values = dense_tensor(source, name, {rows, cols});
        }
        if (full || !kernels::is_quantized(s.base_format)) {
          DType type = full                                  ? s.dtype
                       : stored_format == WeightFormat::f16  ? DType::f16
                       : stored_format == WeightFormat::bf16 ? DType::bf16
                                                             : DType::f32;
          upload_dense(context, buffers, name, values, type);
        } else {
          quant::QuantOptions options;
          options.block_size = s.quant_block;
          options.double_quant = s.double_quant;
          upload_quantized(context, buffers, name,
                           quant::quantize(values.data(), rows, cols, s.base_format, options, name), loaded);
        }
      }
      step(prefix + spec::module_name(module));
    }
  }
  upload_dense(context, buffers, "model.norm.weight", dense_tensor(source, "model.norm.weight", {hidden}), DType::f32);
  if (!config.tie_word_embeddings) {
    if (!source.contains("lm_head.weight"))
      throw UserError(source.where() + " has no lm_head.weight and config.json says tie_word_embeddings is false",
                      "set tie_word_embeddings: true if the model shares its embeddings");
    upload_dense_streamed(context, buffers, source, "lm_head.weight", vocab, hidden, table_type("lm_head.weight"));
  } else if (plan.contains("lm_head.weight")) {  // tied, untied by modules_to_save (as PEFT does)
    upload_dense_streamed(context, buffers, source, "model.embed_tokens.weight", vocab, hidden,
                          table_type("lm_head.weight"), "lm_head.weight");
  }
  step("lm_head");
  return loaded;
}

}  // namespace vkt::model
