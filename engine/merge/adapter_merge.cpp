#include "engine/merge/adapter_merge.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/progress.hpp"
#include "engine/kernels/matmul.hpp"
#include "engine/merge/merger.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/session.hpp"
#include "engine/vk/recorder.hpp"

namespace vkt::merge {

namespace fs = std::filesystem;

namespace {

// s · B · A (out × in) computed on the device: the dense update of one adapted module.
std::vector<float> dense_update(vk::Context& context, const ModelSource::LoraFactors& f, uint32_t out, uint32_t in) {
  std::vector<float> delta(uint64_t(out) * in);
  vk::Buffer a = context.allocate(f.a.size() * 4, vk::Category::workspace, "merge.lora.a");
  vk::Buffer b = context.allocate(f.b.size() * 4, vk::Category::workspace, "merge.lora.b");
  vk::Buffer d = context.allocate(delta.size() * 4, vk::Category::workspace, "merge.lora.delta");
  context.upload(a, f.a.data(), 0, f.a.size() * 4);
  context.upload(b, f.b.data(), 0, f.b.size() * 4);
  context.run([&](vk::Recorder& r) {
    kernels::matmul_nn(r, b.range(), kernels::DType::f32, kernels::dense_f32(a.range()), d.range(0, delta.size() * 4),
                       kernels::DType::f32, out, f.rank, in, f.scale, 0.0f);
  });
  context.download(d, delta.data(), 0, delta.size() * 4);
  return delta;
}

// The factors side by side, coefficients and scales folded into B: B_cat = [c_1 s_1 B_1, ...]
// (out × inner), A_cat = [A_1; A_2; ...] (inner × in), inner = Σ r_i (the returned value).
uint32_t concatenate_factors(const std::vector<std::optional<ModelSource::LoraFactors>>& factors,
                             const std::vector<double>& c, uint32_t out, uint32_t in, std::vector<double>& b_cat,
                             std::vector<double>& a_cat) {
  uint32_t inner = 0;
  for (const auto& f : factors) inner += f ? f->rank : 0;
  b_cat.assign(uint64_t(out) * inner, 0.0);
  a_cat.assign(uint64_t(inner) * in, 0.0);
  uint32_t column = 0;
  for (size_t i = 0; i < factors.size(); i++) {
    if (!factors[i]) continue;
    const auto& f = *factors[i];
    double scale = c[i] * f.scale;
    for (uint32_t row = 0; row < out; row++)
      for (uint32_t k = 0; k < f.rank; k++)
        b_cat[uint64_t(row) * inner + column + k] = scale * f.b[uint64_t(row) * f.rank + k];
    for (uint32_t k = 0; k < f.rank; k++)
      for (uint32_t col = 0; col < in; col++) a_cat[uint64_t(column + k) * in + col] = f.a[uint64_t(k) * in + col];
    column += f.rank;
  }
  return inner;
}

// The concatenated factors themselves, zero-padded to `rank` (all zeros when inner = 0).
LowRank zero_padded(const std::vector<double>& b_cat, const std::vector<double>& a_cat, uint32_t out, uint32_t in,
                    uint32_t inner, uint32_t rank) {
  LowRank exact;
  exact.rows = out;
  exact.cols = in;
  exact.rank = rank;
  exact.b.assign(uint64_t(out) * rank, 0.0f);
  exact.a.assign(uint64_t(rank) * in, 0.0f);
  for (uint32_t row = 0; row < out; row++)
    for (uint32_t k = 0; k < inner; k++)
      exact.b[uint64_t(row) * rank + k] = static_cast<float>(b_cat[uint64_t(row) * inner + k]);
  for (uint32_t k = 0; k < inner; k++)
    for (uint32_t col = 0; col < in; col++)
      exact.a[uint64_t(k) * in + col] = static_cast<float>(a_cat[uint64_t(k) * in + col]);
  return exact;
}

// PEFT's adapter_config.json for the merged adapter: lora_alpha = r, so the scale is 1.
void write_adapter_config(const fs::path& output, uint32_t rank, const std::vector<std::string>& targets,
                          const fs::path& base_dir) {
  nlohmann::json adapter = model::peft_lora_config(rank, rank, 0.0, targets, false, base_dir.string());
  write_file_atomically(output / "adapter_config.json", adapter.dump(2) + "\n");
}

}  // namespace

// What the configuration must be before anything is read.
void Merger::check_adapter_space(const AdapterMergeOptions& adapter_options) const {
  const MergeMethod method = config_.method;
  const std::string at_method = config_.path + ":" + std::to_string(config_.line_of_method) + ": key 'merge_method': ";
  if (config_.uses_slices())
    throw UserError(config_.path + ": an adapter-space merge takes a `models:` list, not slices",
                    "layer slices change the architecture, which an adapter cannot; merge in weight space");
  if (method == MergeMethod::slerp || method == MergeMethod::passthrough)
    throw UserError(at_method + merge_method_name(method) + " has no adapter-space form",
                    "use linear, task_arithmetic, ties, dare_linear or dare_ties (or merge in weight space)");
  const bool factored = method == MergeMethod::linear || method == MergeMethod::task_arithmetic;
  if (adapter_options.concatenate && !factored)
    throw UserError(at_method + "concatenation is exact only for linear and task_arithmetic",
                    "use --adapter-space svd with " + std::string(merge_method_name(method)) +
                        " (its element-wise steps give a full-rank update)");
  if (config_.base_model && config_.base_model->lora)
    throw UserError(config_.path + ": key 'base_model': an adapter-space merge needs the plain base as base_model",
                    "write base_model: BASE (without +ADAPTER)");
}

// Every model must be the same base (+ an adapter); the targets are the union of the adapters'.
Merger::AdapterInputs Merger::adapter_inputs() const {
  AdapterInputs inputs;
  inputs.base_dir = sources_.front()->model_dir();
  std::error_code ignored;
  for (const auto& source : sources_) {
    if (fs::weakly_canonical(source->model_dir(), ignored) != fs::weakly_canonical(inputs.base_dir, ignored))
      throw UserError(config_.path + ": " + source->ref().text + " is not an adapter of " + inputs.base_dir.string(),
                      "an adapter-space merge needs every model to be the same BASE (+ADAPTER)");
    if (!source->has_adapter()) continue;
    const model::LoraSettings& lora = source->adapter()->settings;
    if (lora.peft_type == spec::PeftType::dora)
      throw UserError(config_.path + ": " + source->ref().text +
                          " is a DoRA adapter: its magnitude vectors scale whole weight rows, which concatenated LoRA "
                          "factors cannot express",
                      "merge in weight space (without --adapter-space), or `vktune export` it first");
    if (lora.peft_type != spec::PeftType::lora)
      throw UserError(config_.path + ": " + source->ref().text + " is a --peft-type " +
                          spec::peft_type_name(lora.peft_type) +
                          " adapter: an adapter-space merge concatenates LoRA factors, which it has none of",
                      "merge in weight space (without --adapter-space), or `vktune export` it first");
    if (lora.save_embed_tokens || lora.save_lm_head || !lora.saved_norms.empty() || !lora.token_indices.empty())
      throw UserError(config_.path + ": " + source->ref().text +
                          " has modules_to_save or trainable_token_indices, which have no low-rank form",
                      "merge in weight space (without --adapter-space), or export each adapter first");
    inputs.rank_sum += source->adapter()->settings.rank;
    for (spec::Module module : source->adapter()->settings.targets)
      if (std::find(inputs.targets.begin(), inputs.targets.end(), module) == inputs.targets.end())
        inputs.targets.push_back(module);
  }
  if (inputs.targets.empty())
    throw UserError(config_.path + ": no model has an adapter", "write the models as BASE+ADAPTER_FOLDER");
  std::sort(inputs.targets.begin(), inputs.targets.end());
  return inputs;
}

// linear / task_arithmetic: the coefficients c_i of ΔW = Σ c_i s_i B_i A_i, as the weight-space
// merge would weigh the models.
std::vector<double> Merger::adapter_coefficients(const TensorPlan& tensor) const {
  const size_t count = tensor.sources.size();
  std::vector<double> c(count, 0.0);
  if (config_.method == MergeMethod::linear) {
    double sum = 0;
    for (size_t i = 0; i < count; i++) sum += (c[i] = number("weight", tensor, i, 0, true));
    if (flag("normalize", tensor, true)) {
      if (sum == 0)
        throw UserError(where(tensor, std::nullopt) + ": the weights sum to 0", "give weights with a nonzero sum");
      for (double& ci : c) ci /= sum;
    } else if (std::fabs(sum - 1) > 1e-6) {
      throw UserError(where(tensor, std::nullopt) + ": linear without normalize scales the base by Σ weight = " +
                          std::to_string(sum) + ", which an adapter cannot express",
                      "use weights that sum to 1, or normalize: true");
    }
    return c;
  }
  const size_t base = *tensor.base;
  double sum = 0;
  for (size_t i = 0; i < count; i++)
    if (i != base) sum += (c[i] = number("weight", tensor, i, 0, true));
  double divisor = flag("normalize", tensor, false) ? (std::fabs(sum) < 1e-8 ? 1.0 : sum) : 1.0;
  double lambda = number("lambda", tensor, std::nullopt, 1.0, false);
  for (size_t i = 0; i < count; i++) c[i] = i == base ? 0.0 : c[i] * lambda / divisor;
  return c;
}

// ties / dare: the element-wise method on the dense updates with a zero base, then a truncated SVD.
LowRank Merger::elementwise_update(const TensorPlan& tensor,
                                   const std::vector<std::optional<ModelSource::LoraFactors>>& factors, uint32_t out,
                                   uint32_t in, uint32_t out_rank, uint32_t seed) {
  const uint64_t n = uint64_t(out) * in;
  std::vector<std::vector<float>> values(factors.size());
  for (size_t i = 0; i < factors.size(); i++)
    values[i] = factors[i] ? dense_update(context_, *factors[i], out, in) : std::vector<float>(n, 0.0f);
  std::vector<float> merged(n);
  task_arithmetic(tensor, values, n, [&](const float* chunk, uint64_t first, uint64_t elements) {
    std::copy(chunk, chunk + elements, merged.begin() + static_cast<std::ptrdiff_t>(first));
  });
  values.clear();
  double frobenius_squared = 0;
  for (float v : merged) frobenius_squared += double(v) * v;
  vk::Buffer buffer = context_.allocate(n * 4, vk::Category::workspace, "merge.adapter.delta");
  context_.upload(buffer, merged.data(), 0, n * 4);
  return truncate_dense(context_, buffer.range(0, n * 4), out, in, out_rank, frobenius_squared,
                        seed ^ kernels::tensor_key(tensor.name));
}

// One module's merged update as LoRA factors (B: out × out_rank, A: out_rank × in).
LowRank Merger::adapter_update(const TensorPlan& tensor, const spec::ModelShape& shape, uint32_t out_rank,
                               const AdapterMergeOptions& adapter_options) {
  const LinearName linear = *parse_linear_name(tensor.name);
  const auto out = static_cast<uint32_t>(spec::fused_out_features(shape, linear.module));
  const auto in = static_cast<uint32_t>(spec::module_in_features(shape, linear.module));
  std::vector<std::optional<ModelSource::LoraFactors>> factors(tensor.sources.size());
  for (size_t i = 0; i < factors.size(); i++)
    factors[i] = sources_[tensor.sources[i]]->lora_factors(linear.layer, linear.module);
  if (config_.method != MergeMethod::linear && config_.method != MergeMethod::task_arithmetic)
    return elementwise_update(tensor, factors, out, in, out_rank, adapter_options.random_seed);
  std::vector<double> b_cat, a_cat;
  const uint32_t inner = concatenate_factors(factors, adapter_coefficients(tensor), out, in, b_cat, a_cat);
  if (adapter_options.concatenate || inner == 0) return zero_padded(b_cat, a_cat, out, in, inner, out_rank);
  return truncate_factored(b_cat, a_cat, out, in, inner, out_rank);
}

// Written module by module in the file's order (lora_A and lora_B of a module are neighbours, so
// each module's update is computed once, when its lora_A is written). Returns each module's
// relative residual.
std::vector<double> Merger::write_adapter_weights(const std::vector<const TensorPlan*>& modules,
                                                  const spec::ModelShape& shape, uint32_t out_rank,
                                                  const AdapterMergeOptions& adapter_options) {
  ProgressBar progress("merge adapters", static_cast<int64_t>(modules.size()));
  int64_t done = 0;
  struct Current {
    const TensorPlan* tensor = nullptr;
    LowRank factors;
  };
  auto current = std::make_shared<Current>();
  std::vector<double> residuals;
  std::vector<model::TensorToWrite> writes;
  for (const TensorPlan* tensor : modules) {
    const LinearName linear = *parse_linear_name(tensor->name);
    const uint64_t out = spec::fused_out_features(shape, linear.module),
                   in = spec::module_in_features(shape, linear.module);
    auto ensure = [&, tensor] {
      if (current->tensor == tensor) return;
      current->factors = adapter_update(*tensor, shape, out_rank, adapter_options);
      current->tensor = tensor;
      residuals.push_back(current->factors.relative_residual());
      if (adapter_options.show_progress) progress.update(++done, tensor->name);
    };
    writes.push_back({model::peft_tensor_name(shape, linear.layer, linear.module, true),
                      model::FileDtype::F32,
                      {out_rank, in},
                      [ensure, current](model::TensorSink& sink) {
                        ensure();
                        sink.write(current->factors.a.data(), current->factors.a.size() * 4);
                      }});
    writes.push_back({model::peft_tensor_name(shape, linear.layer, linear.module, false),
                      model::FileDtype::F32,
                      {out, out_rank},
                      [ensure, current](model::TensorSink& sink) {
                        ensure();
                        sink.write(current->factors.b.data(), current->factors.b.size() * 4);
                      }});
  }
  model::write_safetensors(adapter_options.output / "adapter_model.safetensors", std::move(writes), {{"format", "pt"}});
  if (adapter_options.show_progress) progress.finish();
  return residuals;
}

AdapterMergeSummary Merger::run_adapter_space(const AdapterMergeOptions& adapter_options) {
  auto started = std::chrono::steady_clock::now();
  check_adapter_space(adapter_options);
  plan();
  const AdapterInputs inputs = adapter_inputs();
  const uint32_t out_rank = adapter_options.concatenate ? inputs.rank_sum
                            : adapter_options.rank      ? adapter_options.rank
                                                        : inputs.rank_sum;
  const spec::ModelShape shape = model::model_shape(sources_.front()->config());

  // The modules to write: every adapted linear weight, with its plan (parameters, base position).
  std::vector<const TensorPlan*> modules;
  for (const auto& tensor : tensors_) {
    auto linear = parse_linear_name(tensor.name);
    if (linear && std::find(inputs.targets.begin(), inputs.targets.end(), linear->module) != inputs.targets.end())
      modules.push_back(&tensor);
  }
  AdapterMergeSummary summary;
  summary.method = config_.method;
  summary.rank = out_rank;
  summary.base = inputs.base_dir;
  summary.targets = model::peft_target_names(shape, inputs.targets);
  summary.modules = static_cast<int64_t>(modules.size());

  fs::create_directories(adapter_options.output);
  std::vector<double> residuals = write_adapter_weights(modules, shape, out_rank, adapter_options);
  write_adapter_config(adapter_options.output, out_rank, summary.targets, inputs.base_dir);
  for (double r : residuals) {
    summary.max_relative_residual = std::max(summary.max_relative_residual, r);
    summary.mean_relative_residual += r / static_cast<double>(residuals.size());
  }
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return summary;
}

AdapterMergeSummary run_adapter_merge(vk::Context& context, const MergeConfig& config,
                                      const AdapterMergeOptions& options) {
  MergeOptions merge_options;
  merge_options.output = options.output;
  merge_options.random_seed = options.random_seed;
  merge_options.chunk_elements = options.chunk_elements;
  merge_options.show_progress = options.show_progress;
  Merger merger(context, config, merge_options);
  return merger.run_adapter_space(options);
}

}  // namespace vkt::merge
