#include "engine/merge/export.hpp"

#include <chrono>
#include <memory>

#include "engine/base/error.hpp"
#include "engine/base/progress.hpp"
#include "engine/merge/source.hpp"

namespace vkt::merge {

namespace fs = std::filesystem;

kernels::DType dtype_from_flag(const std::string& value, const std::string& flag) {
  if (auto dtype = kernels::dtype_from_name(value)) return *dtype;
  if (auto dtype = enum_from_name(kernels::torch_dtype_names(), value)) return *dtype;
  return enum_from_flag(kernels::dtype_names(), value, flag);  // the error listing our names
}

ExportSummary export_merged(vk::Context& context, const ExportOptions& options) {
  auto started = std::chrono::steady_clock::now();
  ModelSource source(&context, options.model, options.adapter);
  // A pruned base (`vktune prune` wrote pruning.json): the merged weights keep its zeros, as the
  // dense LoRA product would otherwise fill them.
  std::unique_ptr<ModelSource> pruned_base;
  if (options.adapter && fs::exists(options.model / "pruning.json"))
    pruned_base = std::make_unique<ModelSource>(nullptr, options.model);
  ExportSummary summary;
  summary.base_quantization = source.quantization();
  const model::FileDtype out_dtype =
      options.dtype ? model::file_dtype(*options.dtype) : model::file_dtype_from_torch(source.config().torch_dtype);
  summary.out_dtype = model::torch_dtype_name(out_dtype);
  fs::create_directories(options.output);

  ProgressBar progress("export", static_cast<int64_t>(source.tensor_names().size()));
  int64_t done = 0;
  std::vector<model::TensorToWrite> writes;
  for (const std::string& name : source.tensor_names()) {
    const TensorInfo& info = source.info(name);
    const bool floating = info.dtype == model::FileDtype::F32 || info.dtype == model::FileDtype::F16 ||
                          info.dtype == model::FileDtype::BF16;
    // Non-float tensors (none in Llama-family checkpoints, but kept if present) are copied as they are.
    const model::FileDtype dtype = floating ? out_dtype : info.dtype;
    writes.push_back({name, dtype, info.shape, [&, name, dtype](model::TensorSink& sink) {
                        if (source.is_plain(name) && source.info(name).dtype == dtype) {
                          const model::TensorView& view = source.view(name);
                          sink.write(view.bytes.data(), view.bytes.size());
                        } else {
                          std::vector<float> values = source.read(name);
                          if (pruned_base && parse_linear_name(name)) {
                            const std::vector<float> base = pruned_base->read(name);
                            for (size_t i = 0; i < values.size(); i++)
                              if (base[i] == 0.0f) values[i] = 0.0f;
                            pruned_base->release(name);
                          }
                          write_as(sink, values.data(), values.size(), dtype);
                        }
                        source.release(name);
                        if (options.show_progress) progress.update(++done, name);
                      }});
    summary.bytes_written += info.elements() * model::file_dtype_size(dtype);
  }
  summary.tensors = static_cast<int64_t>(writes.size());
  auto result = model::write_safetensors_sharded(options.output, std::move(writes), options.max_shard_bytes);
  if (options.show_progress) progress.finish();
  summary.files = result.files;
  if (result.index) summary.files.push_back(*result.index);
  write_config(options.output, output_config(source.config(), source.config().num_hidden_layers, summary.out_dtype));
  copy_tokenizer_files(options.model, options.output);
  summary.adapted = source.adapted_tensors();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  summary.peak_rss = peak_rss_bytes();
  return summary;
}

}  // namespace vkt::merge
