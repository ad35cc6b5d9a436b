#include "engine/model/ia3.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>

#include "engine/base/error.hpp"
#include "engine/kernels/elementwise.hpp"
#include "engine/model/adapter.hpp"

namespace vkt::model {

using kernels::DType;
using spec::Module;

std::vector<Module> ia3_default_targets(const spec::ModelShape& shape) {
  if (shape.fused_projections)
    throw UserError("IA3 on a model with fused projections (Phi-3's qkv_proj, gate_up_proj) is not supported",
                    "use --peft-type lora, or a Llama/Mistral/Qwen/Gemma model");
  // peft/utils/constants.py: llama, mistral -> k_proj; gemma*, qwen2, qwen3 -> q_proj (Qwen2 is
  // the family with q/k/v biases, Qwen3 and Gemma 3 have q/k norms, Gemma its own layer).
  const bool q_family = shape.gemma || shape.qkv_bias || shape.qk_norm;
  return {q_family ? Module::q_proj : Module::k_proj, Module::v_proj, Module::down_proj};
}

std::vector<Module> ia3_default_feedforward(const std::vector<Module>& targets) {
  if (std::find(targets.begin(), targets.end(), Module::down_proj) == targets.end()) return {};
  return {Module::down_proj};
}

bool ia3_is_feedforward(const std::vector<Module>& feedforward, Module module) {
  return std::find(feedforward.begin(), feedforward.end(), module) != feedforward.end();
}

uint64_t ia3_vector_size(const spec::ModelShape& shape, Module module, bool feedforward) {
  return feedforward ? spec::module_in_features(shape, module) : spec::module_out_features(shape, module);
}

std::vector<uint64_t> ia3_peft_shape(const spec::ModelShape& shape, Module module, bool feedforward) {
  if (feedforward) return {1, spec::module_in_features(shape, module)};
  return {spec::module_out_features(shape, module), 1};
}

std::string ia3_buffer_name(uint32_t layer, Module module) {
  return "model.layers." + std::to_string(layer) + "." + spec::module_path(module) + ".ia3_l";
}

std::string ia3_peft_name(uint32_t layer, Module module) {
  return "base_model.model." + ia3_buffer_name(layer, module);
}

nlohmann::json peft_ia3_config(const std::vector<Module>& targets, const std::vector<Module>& feedforward,
                               const std::string& base_model) {
  auto names = [](const std::vector<Module>& modules) {
    std::vector<std::string> list;
    for (Module module : modules) list.push_back(spec::module_name(module));
    return list;
  };
  return {{"peft_type", "IA3"},
          {"task_type", "CAUSAL_LM"},
          {"target_modules", names(targets)},
          {"feedforward_modules", names(feedforward)},
          {"exclude_modules", nullptr},
          {"fan_in_fan_out", false},
          {"init_ia3_weights", true},
          {"modules_to_save", nullptr},
          {"base_model_name_or_path", base_model},
          {"revision", nullptr},
          {"inference_mode", true}};
}

void resolve_peft_targets(spec::RunSettings& settings, const std::string& target_list, const spec::ModelShape* model,
                          const std::string& model_name) {
  if (settings.peft_type == spec::PeftType::bitfit) {
    // BitFit trains the linear biases: of the supported families only Qwen2 has them (q/k/v).
    if (model && !model->qkv_bias)
      throw UserError("--peft-type bitfit: " + model_name +
                          " has no linear biases to train (Llama, Mistral, Gemma, Qwen3 and Phi-3 have none; Qwen2 "
                          "has q/k/v biases)",
                      "use --peft-type lora or ia3 with this model, or a Qwen2 model for BitFit");
    settings.target_modules.clear();
    return;
  }
  if (settings.peft_type == spec::PeftType::prompt_tuning ||
      settings.peft_type == spec::PeftType::p_tuning ||
      settings.peft_type == spec::PeftType::prefix_tuning) {  // the prompt (prefix) alone trains (P-tuning: its encoder)
    settings.target_modules.clear();
    return;
  }
  if (settings.peft_type != spec::PeftType::ia3) return;
  settings.ia3_targets = !target_list.empty() ? parse_target_modules(target_list, model)
                                              : ia3_default_targets(model ? *model : spec::ModelShape{});
  if (model && model->fused_projections) ia3_default_targets(*model);  // refused, with the reason
  settings.ia3_feedforward = ia3_default_feedforward(settings.ia3_targets);
  settings.target_modules.clear();
}

namespace {
// The (layer, module) whose weight (or, for an output-scaled module, bias) HF tensor `name` is.
std::optional<std::pair<uint32_t, Module>> ia3_owner(const spec::ModelShape& shape, const std::vector<Module>& targets,
                                                     const std::vector<Module>& feedforward, const std::string& name) {
  for (uint32_t layer = 0; layer < shape.layers; layer++)
    for (Module module : targets) {
      const std::string base = "model.layers." + std::to_string(layer) + "." + spec::module_path(module);
      if (name == base + ".weight" || (name == base + ".bias" && !ia3_is_feedforward(feedforward, module)))
        return std::pair{layer, module};
    }
  return std::nullopt;
}
}  // namespace

bool ia3_merges(const spec::ModelShape& shape, const std::vector<Module>& targets,
                const std::vector<Module>& feedforward, const std::string& name) {
  return ia3_owner(shape, targets, feedforward, name).has_value();
}

bool ia3_merge_tensor(const spec::ModelShape& shape, const std::vector<Module>& targets,
                      const std::vector<Module>& feedforward, const SafetensorsFile& adapter, const std::string& name,
                      std::vector<float>& values) {
  auto owner = ia3_owner(shape, targets, feedforward, name);
  if (!owner) return false;
  const auto [layer, module] = *owner;
  const bool ff = ia3_is_feedforward(feedforward, module);
  const TensorView* tensor = adapter.find(ia3_peft_name(layer, module));
  if (!tensor || tensor->shape != ia3_peft_shape(shape, module, ff))
    throw UserError(adapter.path().string() + ": no tensor " + ia3_peft_name(layer, module) + " of the model's shape",
                    "the adapter's target_modules or layer count do not match this model");
  std::vector<float> l = to_fp32(*tensor);
  require_finite(l, adapter.path().string(), tensor->name);
  const bool bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
  const uint64_t in = spec::module_in_features(shape, module);
  for (size_t i = 0; i < values.size(); i++)  // W (out, in): rows by l (out), or columns by l (in); b (out)
    values[i] *= bias ? l[i] : ff ? l[i % in] : l[i / in];
  return true;
}

namespace {
BufferRange rows_slice(const BufferRange& range, uint32_t rows, uint32_t cols, const char* what) {
  BufferRange slice = range;
  slice.bytes = static_cast<uint64_t>(rows) * cols * 4;
  VKT_ASSERT(slice.bytes <= range.bytes, std::string("IA3 scratch too small: ") + what);
  return slice;
}
}  // namespace

void ia3_linear_forward(Recorder& r, const Linear& layer, const BufferRange& x, const BufferRange& y, uint32_t rows,
                        const LinearScratch& scratch) {
  const Ia3Params& ia3 = *layer.ia3;
  const BufferRange* bias = layer.bias.bytes ? &layer.bias : nullptr;
  if (ia3.feedforward) {  // y = (x ⊙ l)·Wᵀ + b
    BufferRange scaled = rows_slice(scratch.ia3_scratch, rows, layer.in, "scaled input");
    kernels::scale_channels(r, x, ia3.l, scaled, rows, layer.in);
    kernels::matmul_nt(r, scaled, DType::f32, layer.weight, y, DType::f32, rows, layer.out, layer.in, 1.0f, 0.0f, bias);
    return;
  }
  // y = z ⊙ l, z = x·Wᵀ + b (PEFT scales the bias too); z kept for the backward when planned.
  BufferRange z = scratch.ia3_z.bytes ? rows_slice(scratch.ia3_z, rows, layer.out, "z") : y;
  kernels::matmul_nt(r, x, DType::f32, layer.weight, z, DType::f32, rows, layer.out, layer.in, 1.0f, 0.0f, bias);
  kernels::scale_channels(r, z, ia3.l, y, rows, layer.out);
}

void ia3_linear_intermediate(Recorder& r, const Linear& layer, const BufferRange& x, uint32_t rows,
                             const LinearScratch& scratch) {
  // Recomputation without the output: an output-scaled module's backward still needs z.
  if (layer.ia3->feedforward || !scratch.ia3_z.bytes) return;
  const BufferRange* bias = layer.bias.bytes ? &layer.bias : nullptr;
  kernels::matmul_nt(r, x, DType::f32, layer.weight, rows_slice(scratch.ia3_z, rows, layer.out, "z"), DType::f32, rows,
                     layer.out, layer.in, 1.0f, 0.0f, bias);
}

void ia3_linear_backward(Recorder& r, const Linear& layer, const BufferRange& x, const BufferRange& dy,
                         const BufferRange& dx, bool accumulate_dx, uint32_t rows, const LinearScratch& scratch) {
  const Ia3Params& ia3 = *layer.ia3;
  const bool want_dx = dx.bytes > 0;
  const BufferRange workspace = scratch.reduce_workspace;
  if (ia3.feedforward) {
    // g = dy·W (rows, in); dl += Σ_rows x ⊙ g; dx (+)= g ⊙ l.
    BufferRange g = rows_slice(scratch.ia3_grad, rows, layer.in, "d scaled input");
    BufferRange product = rows_slice(scratch.ia3_scratch, rows, layer.in, "product");
    kernels::matmul_nn(r, dy, DType::f32, layer.weight, g, DType::f32, rows, layer.out, layer.in, 1.0f, 0.0f);
    BufferRange d_input = !want_dx ? BufferRange{} : accumulate_dx ? g : dx;
    kernels::scale_channels_backward(r, g, x, ia3.l, d_input, ia3.grad_l, product, workspace, rows, layer.in, true);
    if (want_dx && accumulate_dx) kernels::axpby(r, g, dx, rows * layer.in, 1.0f, 1.0f);
    return;
  }
  // dl += Σ_rows dy ⊙ z; dz = dy ⊙ l; dx (+)= dz·W.
  BufferRange z = rows_slice(scratch.ia3_z, rows, layer.out, "z");
  BufferRange dz = rows_slice(scratch.ia3_grad, rows, layer.out, "dz");
  BufferRange product = rows_slice(scratch.ia3_scratch, rows, layer.out, "product");
  kernels::scale_channels_backward(r, dy, z, ia3.l, dz, ia3.grad_l, product, workspace, rows, layer.out, true);
  if (want_dx)
    kernels::matmul_nn(r, dz, DType::f32, layer.weight, dx, DType::f32, rows, layer.out, layer.in, 1.0f,
                       accumulate_dx ? 1.0f : 0.0f);
}

}  // namespace vkt::model
