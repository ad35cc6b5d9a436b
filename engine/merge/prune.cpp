#include "engine/merge/prune.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>

#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/merge/output.hpp"
#include "engine/merge/source.hpp"

namespace vkt::merge {

namespace fs = std::filesystem;

PruneMethod prune_method_from_flag(const std::string& value) {
  if (value == "magnitude") return PruneMethod::magnitude;
  if (value == "wanda") return PruneMethod::wanda;
  if (value == "2:4") return PruneMethod::two_four;
  throw UserError("--method " + value + " is unknown", "use magnitude, wanda or 2:4");
}

const char* prune_method_name(PruneMethod method) {
  switch (method) {
    case PruneMethod::magnitude:
      return "magnitude";
    case PruneMethod::wanda:
      return "wanda";
    case PruneMethod::two_four:
      return "2:4";
  }
  return "?";
}

namespace {
// The `count` lowest of scores[first .. first + n) (ties: the lower index first) cleared in `mask`.
void clear_lowest(const std::vector<double>& scores, size_t first, size_t n, size_t count, std::vector<uint8_t>& mask) {
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), first);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  for (size_t i = 0; i < count; i++) mask[order[i]] = 0;
}
}  // namespace

std::vector<uint8_t> prune_mask(std::span<const float> weight, int64_t rows, int64_t cols, PruneMethod method,
                                double sparsity, std::span<const float> column_norms) {
  VKT_ASSERT(rows > 0 && cols > 0 && weight.size() == static_cast<size_t>(rows * cols), "prune_mask: weight shape");
  if (!(sparsity >= 0 && sparsity < 1)) throw UserError("--sparsity must be in [0, 1)", "e.g. --sparsity 0.5");
  if (method == PruneMethod::wanda && column_norms.empty())
    throw UserError("--method wanda needs calibration activations", "give --calibration-data FILE.jsonl");
  VKT_ASSERT(column_norms.empty() || column_norms.size() == static_cast<size_t>(cols), "prune_mask: norms size");
  // Scores in double: |W| · ‖X_j‖ as fp32 products would tie more often than the fp32 inputs do.
  std::vector<double> scores(weight.size());
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) {
      const size_t i = static_cast<size_t>(r * cols + c);
      scores[i] = std::fabs(static_cast<double>(weight[i])) *
                  (column_norms.empty() ? 1.0 : static_cast<double>(column_norms[static_cast<size_t>(c)]));
    }
  std::vector<uint8_t> mask(weight.size(), 1);
  const size_t n_rows = static_cast<size_t>(rows), n_cols = static_cast<size_t>(cols);
  switch (method) {
    case PruneMethod::magnitude:  // one threshold for the whole tensor
      clear_lowest(scores, 0, scores.size(), static_cast<size_t>(static_cast<double>(scores.size()) * sparsity), mask);
      break;
    case PruneMethod::wanda:  // per output row: W_mask[:, sorted_idx[:, :int(cols * sparsity)]]
      for (size_t r = 0; r < n_rows; r++)
        clear_lowest(scores, r * n_cols, n_cols, static_cast<size_t>(static_cast<double>(n_cols) * sparsity), mask);
      break;
    case PruneMethod::two_four:
      if (n_cols % 4 != 0)
        throw UserError("2:4 pruning needs in-features divisible by 4 (got " + std::to_string(cols) + ")",
                        "use --method wanda or magnitude for this model");
      for (size_t r = 0; r < n_rows; r++)
        for (size_t c = 0; c < n_cols; c += 4) clear_lowest(scores, r * n_cols + c, 4, 2, mask);
      break;
  }
  return mask;
}

PruneSummary prune_model(const PruneOptions& options, const ColumnNorms& norms) {
  ModelSource source(nullptr, options.model);
  if (!source.quantization().empty())
    throw UserError("--model " + options.model.string() + " is quantized (" + source.quantization() + ")",
                    "prune the unquantized model, then quantize the pruned one");
  if (options.method == PruneMethod::two_four && options.sparsity != 0.5)
    throw UserError("--method 2:4 prunes exactly half of the weights; --sparsity " + std::to_string(options.sparsity) +
                        " contradicts it",
                    "drop --sparsity (or give 0.5) with 2:4");
  const bool needs_norms = options.method == PruneMethod::wanda;
  AtomicDirectory directory(options.output);
  PruneSummary summary;
  std::vector<model::TensorToWrite> writes;
  nlohmann::json per_tensor = nlohmann::json::object();
  for (const std::string& name : source.tensor_names()) {
    const TensorInfo& info = source.info(name);
    const bool pruned = parse_linear_name(name).has_value() && info.shape.size() == 2;
    if (!pruned) {
      writes.push_back({name, info.dtype, info.shape, [&source, name](model::TensorSink& sink) {
                          const model::TensorView& view = source.view(name);
                          sink.write(view.bytes.data(), view.bytes.size());
                          source.release(name);
                        }});
      continue;
    }
    const auto norm = norms.find(name);
    if (needs_norms && norm == norms.end())
      throw UserError("no calibration activations for " + name, "this model's layers were not all calibrated");
    std::vector<float> values = source.read(name);
    source.release(name);
    const int64_t rows = static_cast<int64_t>(info.shape[0]), cols = static_cast<int64_t>(info.shape[1]);
    std::span<const float> column_norms;
    if (norm != norms.end() && options.method != PruneMethod::magnitude) column_norms = norm->second;
    const std::vector<uint8_t> mask = prune_mask(values, rows, cols, options.method, options.sparsity, column_norms);
    PrunedTensor tensor{name, 0, values.size()};
    for (size_t i = 0; i < values.size(); i++)
      if (!mask[i]) values[i] = 0.0f;
    for (float value : values) tensor.zeros += value == 0.0f;
    summary.zeros += tensor.zeros;
    summary.elements += tensor.elements;
    per_tensor[name] = {{"zeros", tensor.zeros}, {"elements", tensor.elements}};
    summary.tensors.push_back(tensor);
    auto shared = std::make_shared<std::vector<float>>(std::move(values));
    const model::FileDtype dtype = info.dtype;
    writes.push_back({name, dtype, info.shape, [shared, dtype](model::TensorSink& sink) {
                        write_as(sink, shared->data(), shared->size(), dtype);
                      }});
  }
  model::write_safetensors_sharded(directory.path(), std::move(writes), default_max_shard_bytes);
  write_config(directory.path(),
               output_config(source.config(), source.config().num_hidden_layers, source.config().torch_dtype));
  copy_tokenizer_files(options.model, directory.path());
  const nlohmann::json record = {{"method", prune_method_name(options.method)},
                                 {"sparsity", options.method == PruneMethod::two_four ? 0.5 : options.sparsity},
                                 {"scores", norms.empty() ? "|W|" : "|W| * ||X_j||_2 (calibration)"},
                                 {"mask", "a pruned weight is exactly 0 in model.safetensors (the mask is W != 0)"},
                                 {"tensors", per_tensor}};
  write_file_atomically(directory.path() / "pruning.json", record.dump(2) + "\n");
  directory.commit();
  return summary;
}

}  // namespace vkt::merge
