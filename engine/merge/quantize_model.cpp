#include "engine/merge/quantize_model.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>

#include "engine/base/error.hpp"
#include "engine/base/progress.hpp"
#include "engine/merge/source.hpp"
#include "engine/model/weights.hpp"
#include "engine/quant/device.hpp"
#include "engine/quant/formats.hpp"

namespace vkt::merge {

namespace fs = std::filesystem;
using kernels::WeightFormat;
using model::FileDtype;

kernels::WeightFormat parse_quantize_format(const std::string& text) {
  // The --quant names less "none": quantize always changes the format.
  std::optional<WeightFormat> format = kernels::weight_format_from_quant_name(text);
  if (format && *format != WeightFormat::f32 && *format != WeightFormat::gguf) return *format;
  throw UserError("--format '" + text + "' is not supported", "use nf4, int8, int4 or int4-asym");
}

double quantization_error_bound(WeightFormat format, double absmax, double lo, double hi) {
  switch (format) {
    case WeightFormat::int8:
      return absmax / 127.0 / 2.0;
    case WeightFormat::int4:
      return absmax / 7.0 / 2.0;
    case WeightFormat::int4_asym:
      return (std::max(hi, 0.0) - std::min(lo, 0.0)) / 15.0 / 2.0;
    case WeightFormat::nf4: {
      const auto& table = quant::nf4_table();
      double widest = 0;
      for (size_t i = 1; i < table.size(); i++) widest = std::max(widest, double(table[i]) - table[i - 1]);
      return widest / 2.0 * absmax;
    }
    default:
      return 0;
  }
}

namespace {

// The bitsandbytes quant_state JSON, spelled as Python's json.dumps writes QuantState.as_dict.
std::string bitsandbytes_state(const quant::QuantizedWeight& q, const std::string& torch_dtype) {
  std::string text = "{\"quant_type\": \"nf4\", \"blocksize\": " + std::to_string(q.block_size) + ", \"dtype\": \"" +
                     torch_dtype + "\", \"shape\": [" + std::to_string(q.rows) + ", " + std::to_string(q.cols) + "]";
  if (q.double_quant) {
    text += ", \"nested_blocksize\": " + std::to_string(quant::double_quant_group) +
            ", \"nested_dtype\": \"float32\", \"nested_offset\": " +
            nlohmann::json(static_cast<double>(q.absmax_offset)).dump();  // shortest round trip, as Python's repr
  }
  return text + "}";
}

nlohmann::json bitsandbytes_config(const std::string& torch_dtype, bool double_quant) {
  // What transformers' BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4").to_dict() saves.
  return {{"_load_in_4bit", true},
          {"_load_in_8bit", false},
          {"bnb_4bit_compute_dtype", torch_dtype},
          {"bnb_4bit_quant_storage", "uint8"},
          {"bnb_4bit_quant_type", "nf4"},
          {"bnb_4bit_use_double_quant", double_quant},
          {"llm_int8_enable_fp32_cpu_offload", false},
          {"llm_int8_has_fp16_weight", false},
          {"llm_int8_skip_modules", nullptr},
          {"llm_int8_threshold", 6.0},
          {"load_in_4bit", true},
          {"load_in_8bit", false},
          {"quant_method", "bitsandbytes"}};
}

template <class T>
std::span<const uint8_t> bytes_of(const std::vector<T>& values, size_t count) {
  return {reinterpret_cast<const uint8_t*>(values.data()), count * sizeof(T)};
}

// The weight whose tensors are being written. The writer orders a file's tensors by dtype size,
// then name, so a weight's 4-byte statistics are written in one run and its 1-byte codes (and
// 8-bit statistics) in another: the weight is quantized again when the second run reaches it
// (the device quantizer is deterministic, so both give the same bits). Only one weight is held at
// a time, at the cost of quantizing each twice.
struct CurrentWeight {
  std::string name;
  quant::QuantizedWeight weight;
};

}  // namespace

QuantizeSummary quantize_model(vk::Context& context, const QuantizeOptions& options) {
  auto started = std::chrono::steady_clock::now();
  if (!kernels::is_quantized(options.format))
    throw UserError("--format must be a quantized format", "use nf4, int8, int4 or int4-asym");
  quant::check_block_size(options.format, options.block_size, "--block-size");
  ModelSource source(&context, options.model);
  if (!source.quantization().empty())
    throw UserError(options.model.string() + " is already quantized (" + source.quantization() + ")",
                    "quantize the original model; `vktune export` writes a dense copy of this one if needed");
  const model::ModelConfig& config = source.config();
  if (config.fused_projections())  // its fused qkv_proj / gate_up_proj would load only split, quantized apart
    throw UserError(options.model.string() + ": quantizing a model with fused projections (Phi-3) is not supported yet",
                    "train it with --method qlora on the unquantized model: vktune quantizes it on load");
  const std::string torch_dtype = model::torch_dtype_name(model::file_dtype_from_torch(config.torch_dtype));
  QuantizeSummary summary;
  for (const auto& name : source.tensor_names())
    summary.bytes_before += source.info(name).elements() * model::file_dtype_size(source.info(name).dtype);

  quant::QuantOptions quant_options;
  quant_options.block_size = options.block_size;
  quant_options.double_quant = options.double_quant;
  const bool nf4 = options.format == WeightFormat::nf4;

  std::vector<model::TensorToWrite> writes;
  auto current = std::make_shared<CurrentWeight>();
  const size_t linear_count = std::count_if(source.tensor_names().begin(), source.tensor_names().end(),
                                            [](const std::string& n) { return parse_linear_name(n).has_value(); });
  ProgressBar progress("quantize", static_cast<int64_t>(linear_count));
  int64_t done = 0;
  summary.tensors.reserve(linear_count);
  std::vector<bool> measured(linear_count, false);
  for (const std::string& name : source.tensor_names()) {
    const TensorInfo& info = source.info(name);
    if (!parse_linear_name(name)) {
      writes.push_back({name, info.dtype, info.shape, [&, name](model::TensorSink& sink) {
                          const model::TensorView& view = source.view(name);
                          sink.write(view.bytes.data(), view.bytes.size());
                          source.release(name);
                        }});
      continue;
    }
    const auto rows = static_cast<uint32_t>(info.shape[0]), cols = static_cast<uint32_t>(info.shape[1]);
    const uint64_t n = uint64_t{rows} * cols;
    const uint64_t blocks = (n + options.block_size - 1) / options.block_size;
    summary.tensors.push_back({});
    const size_t report_index = summary.tensors.size() - 1;
    summary.tensors[report_index].name = name;
    summary.tensors[report_index].elements = n;
    summary.tensors[report_index].bytes_before = n * model::file_dtype_size(info.dtype);
    // Quantizes `name` into `current` unless it is there already; measures the error the first time.
    auto ensure = [&, name, rows, cols, n, report_index] {
      if (current->name == name) return;
      current->name.clear();
      current->weight = {};
      std::vector<float> w = source.read(name);
      source.release(name);
      vk::Buffer buffer = context.allocate(n * 4, vk::Category::workspace, "quantize.weight");
      context.upload(buffer, w.data(), 0, n * 4);
      quant::DeviceWeight device =
          quant::quantize_on_device(context, buffer.range(0, n * 4), rows, cols, options.format, quant_options, name);
      current->weight = quant::download(context, device);
      current->name = name;
      if (measured[report_index]) return;
      measured[report_index] = true;
      std::vector<float> back = quant::dequantize(current->weight);
      QuantizedTensorReport& report = summary.tensors[report_index];
      std::vector<float> decoded_absmax = nf4 ? current->weight.block_absmax() : std::vector<float>();
      double squares = 0;
      for (uint64_t b = 0; b < current->weight.blocks(); b++) {
        uint64_t begin = b * options.block_size, end = std::min<uint64_t>(begin + options.block_size, n);
        double absmax = 0, lo = 0, hi = 0;
        for (uint64_t i = begin; i < end; i++) {
          absmax = std::max(absmax, std::fabs(double(w[i])));
          lo = std::min(lo, double(w[i]));
          hi = std::max(hi, double(w[i]));
          double error = std::fabs(double(w[i]) - back[i]);
          squares += error * error;
          report.max_error = std::max(report.max_error, error);
        }
        double bound = quantization_error_bound(options.format, absmax, lo, hi);
        if (nf4) bound += std::fabs(double(decoded_absmax[b]) - absmax);  // double quantization's absmax error
        report.bound = std::max(report.bound, bound);
        report.max_abs_weight = std::max(report.max_abs_weight, absmax);
      }
      report.rmse = std::sqrt(squares / double(n));
      if (options.show_progress) progress.update(++done, name);
    };
    // A tensor of this weight: `bytes` picks its bytes out of the quantized weight.
    auto add = [&](std::string tensor_name, FileDtype dtype, std::vector<uint64_t> shape,
                   std::function<std::span<const uint8_t>(const quant::QuantizedWeight&)> bytes) {
      uint64_t size = 1;
      for (uint64_t d : shape) size *= d;
      summary.tensors[report_index].bytes_after += size * model::file_dtype_size(dtype);
      writes.push_back(
          {std::move(tensor_name), dtype, std::move(shape), [ensure, bytes, current](model::TensorSink& sink) {
             ensure();
             std::span<const uint8_t> data = bytes(current->weight);
             sink.write(data.data(), data.size());
           }});
    };
    auto table_bytes = [](const float* values, size_t count) {
      return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(values), count * 4);
    };
    const uint64_t groups = (blocks + quant::double_quant_group - 1) / quant::double_quant_group;
    if (nf4) {
      add(name, FileDtype::U8, {(n + 1) / 2, 1}, [n](const auto& q) { return bytes_of(q.data, (n + 1) / 2); });
      if (options.double_quant) {
        add(name + ".absmax", FileDtype::U8, {blocks},
            [blocks](const auto& q) { return bytes_of(q.absmax_codes, blocks); });
        add(name + ".nested_absmax", FileDtype::F32, {groups},
            [groups](const auto& q) { return bytes_of(q.absmax_scales, groups); });
        add(name + ".nested_quant_map", FileDtype::F32, {256},
            [table_bytes](const auto&) { return table_bytes(quant::dynamic_map().data(), 256); });
      } else {
        add(name + ".absmax", FileDtype::F32, {blocks}, [blocks](const auto& q) { return bytes_of(q.scales, blocks); });
      }
      add(name + ".quant_map", FileDtype::F32, {16},
          [table_bytes](const auto&) { return table_bytes(quant::nf4_table().data(), 16); });
      // The quant state spells the double-quantization offset (the mean of the block absmax
      // values), so its length is known only from the weight: a first pass computes the offsets
      // (the same exact mean the quantizer takes) before the file header is written.
      quant::QuantizedWeight state_source;
      state_source.rows = rows;
      state_source.cols = cols;
      state_source.block_size = options.block_size;
      state_source.double_quant = options.double_quant;
      if (options.double_quant) {
        std::vector<float> w = source.read(name);
        source.release(name);
        std::vector<float> absmax(blocks, 0.0f);
        for (uint64_t i = 0; i < n; i++)
          absmax[i / options.block_size] = std::max(absmax[i / options.block_size], std::fabs(w[i]));
        state_source.absmax_offset = quant::absmax_mean(absmax.data(), absmax.size());
      }
      auto state_text = std::make_shared<std::string>(bitsandbytes_state(state_source, torch_dtype));
      add(name + ".quant_state.bitsandbytes__nf4", FileDtype::U8, {state_text->size()},
          [state_text, torch_dtype](const quant::QuantizedWeight& q) {
            VKT_ASSERT(*state_text == bitsandbytes_state(q, torch_dtype),
                       "the quant state differs from the planned one");
            return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(state_text->data()), state_text->size());
          });
    } else {
      const bool int8 = options.format == WeightFormat::int8;
      add(name, int8 ? FileDtype::I8 : FileDtype::U8, {int8 ? n : (n + 1) / 2},
          [n, int8](const auto& q) { return bytes_of(q.data, int8 ? n : (n + 1) / 2); });
      add(name + ".scales", FileDtype::F32, {blocks}, [blocks](const auto& q) { return bytes_of(q.scales, blocks); });
      if (options.format == WeightFormat::int4_asym)
        add(name + ".zeros", FileDtype::U8, {blocks}, [blocks](const auto& q) { return bytes_of(q.zeros, blocks); });
    }
  }
  for (const auto& write : writes) summary.bytes_after += write.byte_size();

  fs::create_directories(options.output);
  auto result = model::write_safetensors_sharded(options.output, std::move(writes), options.max_shard_bytes);
  if (options.show_progress) progress.finish();
  summary.files = result.files;
  if (result.index) summary.files.push_back(*result.index);
  nlohmann::json quantization;
  if (nf4) {
    quantization = bitsandbytes_config(torch_dtype, options.double_quant);
  } else {
    model::VktuneQuantization q;
    q.format = options.format;
    q.block_size = options.block_size;
    q.original_dtype = torch_dtype;
    quantization = model::vktune_quantization_json(q);
  }
  write_config(options.output, output_config(config, config.num_hidden_layers, torch_dtype, quantization));
  copy_tokenizer_files(options.model, options.output);
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return summary;
}

}  // namespace vkt::merge
