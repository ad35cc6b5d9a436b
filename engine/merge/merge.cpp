#include "engine/merge/merge.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <set>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/log.hpp"
#include "engine/base/progress.hpp"
#include "engine/merge/merger.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/session.hpp"

namespace vkt::merge {

namespace fs = std::filesystem;

uint64_t current_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;  // "VmRSS:   1234 kB"
  return 0;
}

size_t Merger::source_index(const ModelRef& ref) {
  for (size_t i = 0; i < sources_.size(); i++)
    if (sources_[i]->ref().same_as(ref)) return i;
  sources_.push_back(std::make_unique<ModelSource>(&context_, ref));
  return sources_.size() - 1;
}

// mergekit's normalize_config: `models:` -> one slice over all layers of each model, with the
// base model added when it is not listed.
void Merger::normalize() {
  if (config_.uses_slices()) {
    slices_ = config_.slices;
    for (const auto& slice : slices_)
      for (const auto& source : slice.sources) source_index(source.model);
    return;
  }
  OutputSlice slice;
  bool base_included = false;
  for (const auto& model : config_.models) {
    InputSlice input;
    input.model = model.model;
    input.parameters = model.parameters;
    input.line = model.line;
    input.layer_begin = 0;
    input.layer_end = sources_[source_index(model.model)]->config().num_hidden_layers;
    base_included = base_included || (config_.base_model && model.model.same_as(*config_.base_model));
    slice.sources.push_back(std::move(input));
  }
  if (config_.base_model && !base_included) {
    InputSlice input;
    input.model = *config_.base_model;
    input.layer_begin = 0;
    input.layer_end = sources_[source_index(*config_.base_model)]->config().num_hidden_layers;
    slice.sources.push_back(std::move(input));
  }
  // mergekit: "All inputs to a slice must contain the same number of layers".
  for (const auto& input : slice.sources)
    if (input.layer_end != slice.sources.front().layer_end)
      throw UserError(config_.path + ":" + std::to_string(input.line) + ": key 'model': " + input.model.text + " has " +
                          std::to_string(input.layer_end) + " layers, " + slice.sources.front().model.text + " has " +
                          std::to_string(slice.sources.front().layer_end),
                      "models merged layer by layer need the same depth; use `slices:` to pick layer ranges");
  slices_.push_back(std::move(slice));
}

void Merger::plan_tensor(const std::string& output_name, const OutputSlice& slice,
                         const std::vector<std::string>& input_names, double t) {
  TensorPlan tensor;
  tensor.name = output_name;
  tensor.slice = &slice;
  tensor.t = t;
  tensor.input_names = input_names;
  const auto base = base_of(slice);
  for (size_t i = 0; i < slice.sources.size(); i++) {
    size_t index = source_index(slice.sources[i].model);
    tensor.sources.push_back(index);
    if (base && slice.sources[i].model.same_as(*base)) tensor.base = i;
  }
  tensors_.push_back(std::move(tensor));
}

void Merger::plan() {
  normalize();
  const MergeMethod method = config_.method;
  // The output config comes from the base model, else the first model (mergekit).
  output_config_source_ =
      config_.base_model ? source_index(*config_.base_model) : source_index(slices_.front().sources.front().model);
  const model::ModelConfig& out_config = sources_[output_config_source_]->config();
  for (const auto& source : sources_) {
    if (source->config().tie_word_embeddings != out_config.tie_word_embeddings)
      throw UserError(config_.path + ": " + source->ref().text + " and " + sources_[output_config_source_]->ref().text +
                          " differ in tie_word_embeddings",
                      "merge models that share the embedding layout");
  }
  for (const auto& slice : slices_) {
    const auto base = base_of(slice);
    if (is_task_arithmetic_family(method) || method == MergeMethod::slerp) {
      if (!base)
        throw UserError(config_.path + ":" + std::to_string(config_.line_of_method) +
                            ": key 'merge_method': " + merge_method_name(method) + " needs a base_model",
                        "add `base_model: PATH` (for slerp one of the two models; t = 0 gives the base)");
      bool found = std::any_of(slice.sources.begin(), slice.sources.end(),
                               [&](const InputSlice& s) { return s.model.same_as(*base); });
      if (!found)
        throw UserError(config_.path + ":" + std::to_string(slice.line) + ": key 'sources': the base model " +
                            base->text + " is not among this slice's sources",
                        "list the base model in the slice with the same layer_range as the others");
    }
    if (method == MergeMethod::passthrough && slice.sources.size() != 1)
      throw UserError(config_.path + ":" + std::to_string(slice.line) +
                          ": key 'sources': passthrough takes exactly one "
                          "source per slice, this one has " +
                          std::to_string(slice.sources.size()),
                      "stack layers with one slice per source (each slice's layers are appended)");
    if (method == MergeMethod::slerp && slice.sources.size() > 2)
      throw UserError(config_.path + ":" + std::to_string(slice.line) + ": slerp merges exactly two models, not " +
                          std::to_string(slice.sources.size()),
                      "use linear or task_arithmetic for more models");
    for (const auto& source : slice.sources) {
      const int64_t layers = sources_[source_index(source.model)]->config().num_hidden_layers;
      if (source.layer_end > layers)
        throw UserError(config_.path + ":" + std::to_string(source.line) + ": key 'layer_range': [" +
                            std::to_string(source.layer_begin) + ", " + std::to_string(source.layer_end) +
                            ") goes past " + source.model.text + "'s " + std::to_string(layers) + " layers",
                        "layer ranges are [begin, end) with end <= num_hidden_layers");
    }
  }
  // Embeddings from the first slice's sources, layers slice by slice, then norm and lm_head from
  // the last slice's sources (t = 0 outside the layers).
  auto same_name = [&](const OutputSlice& slice, const std::string& name) {
    return std::vector<std::string>(slice.sources.size(), name);
  };
  for (const auto& name : pre_layer_tensors(out_config))
    plan_tensor(name, slices_.front(), same_name(slices_.front(), name), 0);
  const std::vector<std::string> suffixes = layer_tensor_suffixes(out_config);
  for (const auto& slice : slices_) {
    const int64_t length = slice.sources.front().layer_end - slice.sources.front().layer_begin;
    for (int64_t i = 0; i < length; i++) {
      double t = length > 1 ? static_cast<double>(i) / static_cast<double>(length - 1) : 1.0;
      for (const auto& suffix : suffixes) {
        std::vector<std::string> inputs;
        for (const auto& source : slice.sources)
          inputs.push_back("model.layers." + std::to_string(source.layer_begin + i) + "." + suffix);
        plan_tensor("model.layers." + std::to_string(output_layers_) + "." + suffix, slice, inputs, t);
      }
      output_layers_++;
    }
  }
  for (const auto& name : post_layer_tensors(out_config))
    plan_tensor(name, slices_.back(), same_name(slices_.back(), name), 0);

  // Every input exists with one shape per output tensor.
  for (auto& tensor : tensors_) {
    const TensorInfo& first = sources_[tensor.sources[0]]->info(tensor.input_names[0]);
    for (size_t i = 1; i < tensor.sources.size(); i++) {
      const TensorInfo& other = sources_[tensor.sources[i]]->info(tensor.input_names[i]);
      if (other.shape != first.shape)
        throw UserError(sources_[tensor.sources[i]]->ref().text + ": tensor " + tensor.input_names[i] +
                            " has another shape than in " + sources_[tensor.sources[0]]->ref().text,
                        "merged models must have the same architecture and vocabulary size");
    }
    largest_ = std::max(largest_, first.elements() * 4);
  }
  if (auto dtype = config_.out_dtype ? config_.out_dtype : config_.dtype)
    out_dtype_ = model::file_dtype(*dtype);
  else
    out_dtype_ = model::file_dtype_from_torch(out_config.torch_dtype);
  check_parameters();
}

// Evaluates every parameter the method reads for every tensor before any data is touched, so a
// missing or mistyped value fails the merge up front (naming the model and tensor); warns about
// parameters the method does not use.
void Merger::check_parameters() {
  const MergeMethod method = config_.method;
  std::vector<std::string> used;
  if (method == MergeMethod::linear)
    used = {"weight", "normalize"};
  else if (method == MergeMethod::slerp)
    used = {"t"};
  else if (method == MergeMethod::passthrough)
    used = {"scale"};
  else
    used = {"weight", "density", "normalize", "lambda", "int8_mask", "rescale"};
  std::set<std::string> present;
  auto collect = [&](const ParameterSet& set) {
    for (const auto& [name, setting] : set) present.insert(name);
  };
  collect(config_.parameters);
  for (const auto& slice : slices_) {
    collect(slice.parameters);
    for (const auto& source : slice.sources) collect(source.parameters);
  }
  for (const auto& name : present)
    if (std::find(used.begin(), used.end(), name) == used.end())
      log::warn(config_.path + ": parameter '" + name + "' is not used by " + merge_method_name(method) + " (ignored)");
  for (const auto& tensor : tensors_) {
    const size_t count = tensor.sources.size();
    if (method == MergeMethod::linear) {
      for (size_t i = 0; i < count; i++) number("weight", tensor, i, 0, true);
      flag("normalize", tensor, true);
    } else if (method == MergeMethod::slerp) {
      if (count == 2) number("t", tensor, std::nullopt, 0, true);
    } else if (method == MergeMethod::passthrough) {
      if (auto scale = parameter("scale", tensor, size_t{0})) scale->as_number("scale", where(tensor, 0));
    } else {
      flag("normalize", tensor, false);
      flag("rescale", tensor, false);
      number("lambda", tensor, std::nullopt, 1.0, false);
      for (size_t i = 0; i < count; i++) {
        if (tensor.base && i == *tensor.base) continue;
        number("weight", tensor, i, 0, true);
        double density = number("density", tensor, i, 1.0, false);
        if (density <= 0)
          throw UserError(where(tensor, i) + ": density " + std::to_string(density) + " keeps nothing",
                          "density is the fraction kept, in (0, 1]");
      }
    }
  }
}

// mergekit's ConfigReader.parameter: the source's parameters (when `position` names a model),
// then the slice's, then the top-level ones; a level whose conditionals all miss passes on.
std::optional<ParameterValue> Merger::parameter(const std::string& name, const TensorPlan& tensor,
                                                std::optional<size_t> position) const {
  const std::string& tensor_name = position ? tensor.input_names[*position] : tensor.name;
  if (position) {
    const ModelRef& model = tensor.slice->sources[*position].model;
    for (const auto& source : tensor.slice->sources) {
      if (!source.model.same_as(model)) continue;
      auto it = source.parameters.find(name);
      if (it == source.parameters.end()) continue;
      if (auto value = evaluate_setting(it->second, tensor_name, tensor.t)) return value;
    }
  }
  for (const ParameterSet* set : {&tensor.slice->parameters, &config_.parameters}) {
    auto it = set->find(name);
    if (it == set->end()) continue;
    if (auto value = evaluate_setting(it->second, tensor_name, tensor.t)) return value;
  }
  return std::nullopt;
}

std::string Merger::where(const TensorPlan& tensor, std::optional<size_t> position) const {
  std::string text = config_.path;
  if (position) {
    const InputSlice& source = tensor.slice->sources[*position];
    if (source.line > 0) text += ":" + std::to_string(source.line);
    text += ": model " + source.model.text;
  }
  return text + ", tensor " + (position ? tensor.input_names[*position] : tensor.name);
}

double Merger::number(const std::string& name, const TensorPlan& tensor, std::optional<size_t> position,
                      double fallback, bool required) const {
  auto value = parameter(name, tensor, position);
  if (!value) {
    if (required)
      throw UserError(where(tensor, position) + ": missing required parameter '" + name + "' for " +
                          merge_method_name(config_.method),
                      "set it for this model (parameters: {" + name + ": ...}) or globally under `parameters:`");
    return fallback;
  }
  return value->as_number(name, where(tensor, position));
}

bool Merger::flag(const std::string& name, const TensorPlan& tensor, bool fallback) const {
  auto value = parameter(name, tensor, std::nullopt);
  return value ? value->as_bool(name, where(tensor, std::nullopt)) : fallback;
}

void Merger::produce(const TensorPlan& tensor, model::TensorSink& sink) {
  const MergeMethod method = config_.method;
  const size_t count = tensor.sources.size();
  auto source = [&](size_t i) -> ModelSource& { return *sources_[tensor.sources[i]]; };
  auto write_chunk = [&](const float* values, uint64_t, uint64_t n) { write_as(sink, values, n, out_dtype_); };
  auto release_all = [&] {
    for (size_t i = 0; i < count; i++) source(i).release(tensor.input_names[i]);
  };

  if (method == MergeMethod::passthrough) {
    ModelSource& only = source(0);
    const std::string& input = tensor.input_names[0];
    auto scale = parameter("scale", tensor, size_t{0});
    if (!scale && only.is_plain(input) && only.info(input).dtype == out_dtype_) {
      const model::TensorView& view = only.view(input);  // same bytes: copy without converting
      sink.write(view.bytes.data(), view.bytes.size());
    } else {
      std::vector<float> values = only.read(input);
      if (scale) {
        device_.linear({values.data()}, {static_cast<float>(scale->as_number("scale", where(tensor, 0)))}, 1.0f,
                       values.size(), write_chunk);
      } else {
        write_as(sink, values.data(), values.size(), out_dtype_);
      }
    }
    release_all();
    return;
  }

  std::vector<std::vector<float>> values(count);
  for (size_t i = 0; i < count; i++) {
    values[i] = source(i).read(tensor.input_names[i]);
    source(i).release(tensor.input_names[i]);  // the fp32 copy is all that is needed now
  }
  const uint64_t n = values[0].size();

  if (method == MergeMethod::linear) {
    std::vector<const float*> inputs;
    std::vector<float> weights;
    double sum = 0;
    for (size_t i = 0; i < count; i++) {
      double weight = number("weight", tensor, i, 0, true);
      inputs.push_back(values[i].data());
      weights.push_back(static_cast<float>(weight));
      sum += weights.back();
    }
    bool normalize = flag("normalize", tensor, true);
    if (normalize && sum == 0)
      throw UserError(where(tensor, std::nullopt) + ": the weights sum to 0, normalizing would divide by zero",
                      "give weights with a nonzero sum, or set normalize: false");
    device_.linear(inputs, weights, normalize ? static_cast<float>(sum) : 1.0f, n, write_chunk);
  } else if (method == MergeMethod::slerp) {
    double t = number("t", tensor, std::nullopt, 0, true);
    if (count == 1) {
      write_as(sink, values[0].data(), n, out_dtype_);
    } else {
      const size_t base = *tensor.base, other = 1 - base;
      double sums[3];
      device_.dot_sums(values[base].data(), values[other].data(), n, sums);
      // mergekit slerp(): normalize copies by their norms when above eps, dot of the directions;
      // |dot| > DOT_THRESHOLD -> lerp of the originals, else the slerp weights on the originals.
      constexpr double dot_threshold = 0.9995, eps = 1e-8;
      double norm0 = std::sqrt(sums[0]), norm1 = std::sqrt(sums[1]);
      double dot = sums[2] / (norm0 > eps ? norm0 : 1.0) / (norm1 > eps ? norm1 : 1.0);
      double s0, s1;
      if (std::fabs(dot) > dot_threshold) {
        s0 = 1 - t;
        s1 = t;
      } else {
        double theta0 = std::acos(dot), sin_theta0 = std::sin(theta0);
        double theta_t = theta0 * t;
        s0 = std::sin(theta0 - theta_t) / sin_theta0;
        s1 = std::sin(theta_t) / sin_theta0;
      }
      device_.linear({values[base].data(), values[other].data()}, {static_cast<float>(s0), static_cast<float>(s1)},
                     1.0f, n, write_chunk);
    }
  } else {
    task_arithmetic(tensor, values, n, write_chunk);
  }
  release_all();
}

// The task-arithmetic family on the inputs' values (the base's among them): parameters as mergekit
// evaluates them, magnitude cuts on the host, the element-wise work on the device.
void Merger::task_arithmetic(const TensorPlan& tensor, const std::vector<std::vector<float>>& values, uint64_t n,
                             const ChunkSink& sink) {
  const MergeMethod method = config_.method;
  VKT_ASSERT(is_task_arithmetic_family(method),
             std::string("not a task-arithmetic method: ") + merge_method_name(method));
  const size_t base = *tensor.base, count = values.size();
  const bool dare = method == MergeMethod::dare_linear || method == MergeMethod::dare_ties;
  kernels::TaskArithmeticSettings settings;
  settings.consensus = method == MergeMethod::ties || method == MergeMethod::dare_ties;
  settings.sparsify = method == MergeMethod::ties ? kernels::Sparsify::magnitude
                      : dare                      ? kernels::Sparsify::random
                                                  : kernels::Sparsify::none;
  settings.normalize = flag("normalize", tensor, method == MergeMethod::ties);
  const bool rescale = flag("rescale", tensor, dare);
  if (rescale && method == MergeMethod::ties)
    throw UserError(where(tensor, std::nullopt) + ": rescale with ties (mergekit's L1-norm rescaling) is not supported",
                    "remove `rescale`, or use dare_ties whose rescale is 1/density");
  settings.lambda = static_cast<float>(number("lambda", tensor, std::nullopt, 1.0, false));
  settings.seed = options_.random_seed;
  settings.tensor_key = kernels::tensor_key(tensor.name);
  std::vector<const float*> models;
  std::vector<kernels::MergeModelParams> params;
  double weight_sum = 0;
  for (size_t i = 0; i < count; i++) {
    if (i == base) continue;
    kernels::MergeModelParams p;
    p.weight = static_cast<float>(number("weight", tensor, i, 0, true));
    double density = number("density", tensor, i, 1.0, false);
    p.model_key = static_cast<uint32_t>(i);
    if (settings.sparsify == kernels::Sparsify::magnitude) {
      p.threshold = -1.0f;  // keeps every |delta| >= 0
      if (density < 1) {
        uint64_t k = kernels::magnitude_keep_count(density, n);
        if (k == 0)
          throw UserError(
              where(tensor, i) + ": density " + std::to_string(density) + " keeps no element of " + std::to_string(n),
              "raise density (mergekit refuses this too)");
        // |θ_i − θ_base| in fp32, the same rounding as the shader's.
        const float* model = values[i].data();
        const float* base_values = values[base].data();
        kernels::MagnitudeCut cut =
            kernels::magnitude_cut([&](uint64_t e) { return std::fabs(model[e] - base_values[e]); }, n, k);
        p.threshold = cut.threshold;
        p.tie_cutoff = cut.tie_cutoff;
      }
    } else if (settings.sparsify == kernels::Sparsify::random) {
      p.density = density < 1 ? static_cast<float>(density) : 2.0f;  // >= 1: every uniform in [0,1) is kept
      p.keep_scale = density < 1 && rescale ? 1.0f / static_cast<float>(density) : 1.0f;
    }
    models.push_back(values[i].data());
    params.push_back(p);
    weight_sum += p.weight;
  }
  if (models.empty()) {
    sink(values[base].data(), 0, n);  // mergekit: no task vectors -> the base
    return;
  }
  settings.divisor = std::fabs(weight_sum) < 1e-8 ? 1.0f : static_cast<float>(weight_sum);
  device_.task_arithmetic(values[base].data(), models, params, settings, n, sink);
}

MergeSummary Merger::run() {
  MergeSummary summary;
  summary.rss_before = current_rss_bytes();
  auto started = std::chrono::steady_clock::now();
  plan();
  summary.method = config_.method;
  summary.layers = output_layers_;
  summary.out_dtype = torch_dtype_name(out_dtype_);
  summary.largest_tensor_bytes = largest_;
  summary.tensors = static_cast<int64_t>(tensors_.size());
  for (const auto& source : sources_)
    for (const auto& name : source->tensor_names())
      summary.input_bytes += source->info(name).elements() * model::file_dtype_size(source->info(name).dtype);
  for (const auto& source : sources_) {
    std::string quant = source->quantization();
    log::info(
        "merge input " + source->ref().text + ": " + std::to_string(source->config().num_hidden_layers) + " layers" +
        (quant.empty() ? "" : ", " + quant + " (dequantized)") +
        (source->has_adapter() ? ", LoRA r=" + std::to_string(source->adapter()->settings.rank) + " merged in" : ""));
  }
  fs::create_directories(options_.output);
  ProgressBar progress("merge", static_cast<int64_t>(tensors_.size()));
  int64_t done = 0;
  std::vector<model::TensorToWrite> writes;
  for (const TensorPlan& tensor : tensors_) {
    const TensorInfo& info = sources_[tensor.sources[0]]->info(tensor.input_names[0]);
    const TensorPlan* plan = &tensor;
    writes.push_back({tensor.name, out_dtype_, info.shape, [this, plan, &progress, &done](model::TensorSink& sink) {
                        produce(*plan, sink);
                        if (options_.show_progress) progress.update(++done, plan->name);
                      }});
    summary.bytes_written += info.elements() * model::file_dtype_size(out_dtype_);
  }
  auto result = model::write_safetensors_sharded(options_.output, std::move(writes), options_.max_shard_bytes);
  if (options_.show_progress) progress.finish();
  summary.files = result.files;
  if (result.index) summary.files.push_back(*result.index);

  const ModelSource& config_source = *sources_[output_config_source_];
  write_config(options_.output, output_config(config_source.config(), output_layers_, summary.out_dtype));
  // The recipe next to the result, under the name mergekit gives it.
  if (fs::is_regular_file(config_.path))
    write_file_atomically(options_.output / "mergekit_config.yml", read_text_file(config_.path));
  if (options_.copy_tokenizer) {
    fs::path tokenizer_dir = config_source.model_dir();
    if (config_.tokenizer_source && *config_.tokenizer_source != "base") {
      tokenizer_dir = parse_model_ref(*config_.tokenizer_source, fs::path(config_.path).parent_path(),
                                      config_.path + ": key 'tokenizer_source'")
                          .model;
    }
    summary.tokenizer_files = copy_tokenizer_files(tokenizer_dir, options_.output);
  }
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  summary.peak_rss = peak_rss_bytes();
  return summary;
}

MergeSummary run_merge(vk::Context& context, const MergeConfig& config, const MergeOptions& options) {
  Merger merger(context, config, options);
  return merger.run();
}

}  // namespace vkt::merge
