#include "engine/merge/source.hpp"

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/kernels/matmul.hpp"
#include "engine/model/dora.hpp"
#include "engine/model/gguf_model.hpp"
#include "engine/model/ia3.hpp"
#include "engine/model/session.hpp"
#include "engine/model/soft_prompt.hpp"
#include "engine/model/transformer.hpp"
#include "engine/quant/quantize.hpp"
#include "engine/spec/modules_to_save.hpp"
#include "engine/vk/recorder.hpp"

namespace vkt::merge {

namespace fs = std::filesystem;
using model::FileDtype;
using spec::Module;

namespace {

// Suffixes of the tensors that make up one bitsandbytes 4-bit weight besides its codes.
const char* const bitsandbytes_parts[] = {".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map",
                                          ".quant_state.bitsandbytes__nf4"};
const char* const vktune_parts[] = {".scales", ".zeros"};

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::optional<LinearName> parse_linear_name(const std::string& name) {
  const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) != 0 || !ends_with(name, ".weight")) return std::nullopt;
  size_t dot = name.find('.', prefix.size());
  if (dot == std::string::npos) return std::nullopt;
  std::string digits = name.substr(prefix.size(), dot - prefix.size());
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), ::isdigit)) return std::nullopt;
  std::string path = name.substr(dot + 1, name.size() - 7 - dot - 1);  // "self_attn.q_proj"
  for (size_t m = 0; m < spec::module_count; m++) {
    if (spec::module_path(Module(m)) == path) return LinearName{static_cast<uint32_t>(std::stoul(digits)), Module(m)};
  }
  // Phi-3's fused weights stand for their first piece, which owns the fused LoRA (spec::fused_owner).
  if (path == "self_attn.qkv_proj") return LinearName{static_cast<uint32_t>(std::stoul(digits)), Module::q_proj};
  if (path == "mlp.gate_up_proj") return LinearName{static_cast<uint32_t>(std::stoul(digits)), Module::gate_proj};
  return std::nullopt;
}

std::vector<std::string> layer_tensor_suffixes(const model::ModelConfig& config) {
  std::vector<std::string> suffixes = {"input_layernorm.weight"};
  const spec::ModelShape shape = model::model_shape(config);
  for (size_t m = 0; m < spec::module_count; m++) {
    if (m == static_cast<size_t>(Module::gate_proj)) suffixes.push_back("post_attention_layernorm.weight");
    if (spec::fused_owner(shape, Module(m)) != Module(m)) continue;  // stored inside qkv_proj / gate_up_proj
    suffixes.push_back(spec::stored_module_path(shape, Module(m)) + ".weight");
    if (config.qkv_bias && Module(m) <= Module::v_proj) suffixes.push_back(spec::module_path(Module(m)) + ".bias");
  }
  if (config.qk_norm) suffixes.insert(suffixes.end(), {"self_attn.q_norm.weight", "self_attn.k_norm.weight"});
  return suffixes;
}

std::vector<std::string> pre_layer_tensors(const model::ModelConfig&) { return {"model.embed_tokens.weight"}; }

std::vector<std::string> post_layer_tensors(const model::ModelConfig& config) {
  std::vector<std::string> names = {"model.norm.weight"};
  if (!config.tie_word_embeddings) names.push_back("lm_head.weight");
  return names;
}

uint64_t TensorInfo::elements() const {
  uint64_t count = 1;
  for (uint64_t d : shape) count *= d;
  return count;
}

void release_pages(const model::TensorView& view) {
  if (view.bytes.empty()) return;
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  uintptr_t begin = reinterpret_cast<uintptr_t>(view.bytes.data()) & ~(page - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(view.bytes.data()) + view.bytes.size() + page - 1) & ~(page - 1);
  // Safe on the read-only private mapping: a later access reads the page from the file again.
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

uint64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<uint64_t>(usage.ru_maxrss) * 1024;  // kilobytes on Linux
}

ModelSource::ModelSource(vk::Context* context, const fs::path& model, const std::optional<fs::path>& adapter)
    : ModelSource(context, [&] {
        ModelRef ref;
        ref.model = model;
        ref.lora = adapter;
        ref.text = model.string() + (adapter ? "+" + adapter->string() : "");
        return ref;
      }()) {}

ModelSource::ModelSource(vk::Context* context, const ModelRef& ref) : context_(context), ref_(ref) {
  if (model::is_gguf_file(ref.model)) {
    config_ = model::load_model_config(ref.model);
    gguf_ = std::make_unique<model::GgufTensorSource>(ref.model, config_);
    std::vector<std::string> names = pre_layer_tensors(config_);
    for (int64_t layer = 0; layer < config_.num_hidden_layers; layer++)
      for (const std::string& suffix : layer_tensor_suffixes(config_))
        names.push_back("model.layers." + std::to_string(layer) + "." + suffix);
    for (const std::string& name : post_layer_tensors(config_)) names.push_back(name);
    for (const std::string& name : names) {
      names_.push_back(name);
      info_[name] = TensorInfo{gguf_->shape(name), model::file_dtype_from_torch(config_.torch_dtype)};
      quantized_[name] = true;  // never copied as stored bytes
    }
  } else {
    if (!fs::is_directory(ref.model))
      throw UserError("model " + ref.model.string() + " is not a folder",
                      "give an HF model folder with config.json and *.safetensors, or a .gguf file");
    config_ = model::load_model_config(ref.model);
    open_folder();
  }
  if (ref.lora) open_adapter(*ref.lora);
}

void ModelSource::open_folder() {
  folder_ = std::make_unique<model::SafetensorsFolder>(ref_.model);
  bitsandbytes_ = model::is_bitsandbytes_nf4(*folder_, config_);
  vktune_ = model::vktune_quantization(config_, (ref_.model / "config.json").string());
  const FileDtype weight_dtype = vktune_ && !vktune_->original_dtype.empty()
                                     ? model::file_dtype_from_torch(vktune_->original_dtype)
                                     : model::file_dtype_from_torch(config_.torch_dtype);
  // Logical tensors in file order (shard by shard), quantized parts folded into their weight.
  for (const auto& file : folder_->files()) {
    for (const auto& view : file->tensors()) {
      if (folder_->find(view.name) != &view) continue;  // a name repeated in another shard: the index wins
      const std::string& name = view.name;
      bool part = false;
      if (bitsandbytes_)
        for (const char* suffix : bitsandbytes_parts) part = part || ends_with(name, suffix);
      if (vktune_)
        for (const char* suffix : vktune_parts)
          part = part || (ends_with(name, suffix) &&
                          parse_linear_name(name.substr(0, name.size() - std::string(suffix).size())));
      if (part) continue;
      TensorInfo info;
      info.shape = view.shape;
      info.dtype = view.dtype;
      bool quantized = false;
      if (auto linear = parse_linear_name(name)) {
        const spec::ModelShape shape = model::model_shape(config_);
        bool bnb_weight = bitsandbytes_ && folder_->contains(name + ".quant_state.bitsandbytes__nf4");
        if (bnb_weight || vktune_) {
          quantized = true;
          info.shape = {spec::fused_out_features(shape, linear->module),
                        spec::module_in_features(shape, linear->module)};
          info.dtype = weight_dtype;
        }
      }
      names_.push_back(name);
      info_[name] = info;
      quantized_[name] = quantized;
    }
  }
}

void ModelSource::open_adapter(const fs::path& directory) {
  if (!context_) throw UserError("merging an adapter needs a Vulkan device", "run on a machine with a Vulkan driver");
  adapter_ = std::make_unique<Adapter>();
  adapter_->file = model::load_adapter_config(directory);
  if (model::is_soft_prompt(adapter_->file.settings.peft_type))  // PEFT's merge_and_unload refuses them too
    throw UserError(directory.string() + " is a " + spec::peft_type_name(adapter_->file.settings.peft_type) +
                        " adapter: a soft prompt changes the model's input, not its weights, so it cannot be merged",
                    "use it unmerged: vktune generate / evaluate --adapter " + directory.string());
  fs::path weights = directory / "adapter_model.safetensors";
  if (!fs::exists(weights))
    throw UserError(directory.string() + " has no adapter_model.safetensors", "is this a PEFT adapter folder?");
  adapter_->weights = std::make_unique<model::SafetensorsFile>(weights);
  // Every adapted module must exist in the model, with A and B of the right shapes.
  for (uint32_t layer = 0; layer < static_cast<uint32_t>(config_.num_hidden_layers); layer++)
    for (Module module : adapter_->file.settings.targets) (void)lora_tensor(layer, module, true);
  const model::LoraSettings& lora = adapter_->file.settings;
  if (config_.tie_word_embeddings && (lora.save_embed_tokens || lora.save_lm_head))
    throw UserError(directory.string() +
                        ": modules_to_save trained embed_tokens and lm_head of a tied model apart; "
                        "merged, the model would have to be untied (PEFT warns about the same)",
                    "use the adapter unmerged (vktune generate --adapter), or train with --trainable-token-indices");
  if (!lora.token_indices.empty())
    model::check_token_indices(lora.token_indices, static_cast<uint64_t>(config_.vocab_size),
                               (directory / "adapter_config.json").string());
  model::check_modules_to_save(model::model_shape(config_), lora.saved_norms,
                               (directory / "adapter_config.json").string());
  for (const auto& extra : model::adapter_extra_tensors(model::model_shape(config_), lora)) {
    const model::TensorView* tensor = adapter_->weights->find(extra.peft_name);
    if (!tensor || tensor->shape != extra.shape)
      throw UserError(weights.string() + ": no tensor " + extra.peft_name + " of the model's shape",
                      "adapter_config.json lists modules_to_save or trainable_token_indices the file does not hold");
  }
}

bool ModelSource::replaced_by_extras(const std::string& name) const {
  if (!adapter_) return false;
  const model::LoraSettings& lora = adapter_->file.settings;
  if (model::ia3_merges(model::model_shape(config_), lora.ia3_targets, lora.ia3_feedforward, name)) return true;
  if (lora.peft_type == spec::PeftType::bitfit)  // the trained biases replace the model's
    for (const auto& extra : model::adapter_extra_tensors(model::model_shape(config_), lora))
      if (extra.buffer == name) return true;
  if (name.ends_with("norm.weight") && spec::peft_saves_module(lora.saved_norms, name.substr(0, name.size() - 7)))
    return true;  // a trained norm (modules_to_save) replaces the model's
  if (name == "model.embed_tokens.weight") return lora.save_embed_tokens || !lora.token_indices.empty();
  return name == "lm_head.weight" && lora.save_lm_head;
}

void ModelSource::apply_extras(const std::string& name, std::vector<float>& values) const {
  if (!replaced_by_extras(name)) return;
  const model::LoraSettings& lora = adapter_->file.settings;
  for (const auto& extra : model::adapter_extra_tensors(model::model_shape(config_), lora)) {
    std::vector<float> trained = model::to_fp32(adapter_->weights->tensor(extra.peft_name));
    if (extra.buffer == name) {
      values = std::move(trained);  // a modules_to_save copy: the module itself
    } else if (name == "model.embed_tokens.weight" && extra.buffer == "model.embed_tokens.token_delta") {
      const uint64_t hidden = extra.shape[1];
      for (size_t i = 0; i < lora.token_indices.size(); i++)
        std::copy_n(trained.begin() + i * hidden, hidden, values.begin() + lora.token_indices[i] * hidden);
    }
  }
}

ModelSource::~ModelSource() = default;

std::string ModelSource::quantization() const {
  if (bitsandbytes_) return "bitsandbytes nf4";
  if (vktune_) return "vktune " + model::quantized_format_name(vktune_->format);
  return "";
}

const TensorInfo& ModelSource::info(const std::string& name) const {
  auto it = info_.find(name);
  if (it == info_.end())
    throw UserError(ref_.model.string() + " has no tensor " + name,
                    "the models of a merge must share the architecture (and the layer ranges must exist)");
  return it->second;
}

bool ModelSource::is_plain(const std::string& name) const {
  (void)info(name);
  if (quantized_.at(name) || replaced_by_extras(name)) return false;
  if (adapter_) {
    if (auto linear = parse_linear_name(name)) {
      const auto& targets = adapter_->file.settings.targets;
      if (std::find(targets.begin(), targets.end(), linear->module) != targets.end() &&
          adapter_->file.settings.adapts_layer(linear->layer))
        return false;
    }
  }
  return true;
}

const model::TensorView& ModelSource::view(const std::string& name) const {
  VKT_ASSERT(is_plain(name), "view() of a quantized or adapted tensor " + name);
  return folder_->tensor(name);
}

const model::TensorView& ModelSource::lora_tensor(uint32_t layer, Module module, bool a) const {
  const model::SafetensorsFile& file = *adapter_->weights;
  const spec::ModelShape shape = model::model_shape(config_);
  const std::string name = model::peft_tensor_name(shape, layer, module, a);
  const model::TensorView* tensor = model::find_peft_tensor(file, shape, layer, module, a);
  if (!tensor)
    throw UserError(file.path().string() + ": no tensor " + name,
                    "the adapter's target_modules or layer count do not match " + ref_.model.string());
  const uint64_t rank = adapter_->file.settings.rank;
  std::vector<uint64_t> expected = a ? std::vector<uint64_t>{rank, spec::module_in_features(shape, module)}
                                     : std::vector<uint64_t>{spec::fused_out_features(shape, module), rank};
  if (tensor->shape != expected)
    throw UserError(file.path().string() + ": tensor " + tensor->name +
                        " has the wrong shape for r=" + std::to_string(rank) + " on " + ref_.model.string(),
                    "the adapter was trained for another base model");
  if (auto bad = model::first_non_finite(tensor->dtype, tensor->bytes))
    throw UserError(
        file.path().string() + ": tensor " + tensor->name + " holds NaN or Inf (element " + std::to_string(*bad) + ")",
        "the adapter comes from a diverged run: use an earlier checkpoint of it");
  return *tensor;
}

std::optional<ModelSource::LoraFactors> ModelSource::lora_factors(uint32_t layer, Module module) const {
  if (!adapter_) return std::nullopt;
  const auto& targets = adapter_->file.settings.targets;
  if (std::find(targets.begin(), targets.end(), module) == targets.end()) return std::nullopt;
  LoraFactors factors;
  factors.a = model::to_fp32(lora_tensor(layer, module, true));
  factors.b = model::to_fp32(lora_tensor(layer, module, false));
  factors.rank = adapter_->file.settings.rank;
  factors.scale = adapter_->file.settings.scale();
  return factors;
}

void ModelSource::add_adapter_product(const LinearName& linear, std::vector<float>& weight) {
  const model::TensorView& a_view = lora_tensor(linear.layer, linear.module, true);
  const model::TensorView& b_view = lora_tensor(linear.layer, linear.module, false);
  const uint32_t rank = adapter_->file.settings.rank;
  const uint32_t in = static_cast<uint32_t>(a_view.shape[1]), out = static_cast<uint32_t>(b_view.shape[0]);
  VKT_ASSERT(weight.size() == uint64_t(out) * in, "adapter product: weight size");
  std::vector<float> a = model::to_fp32(a_view), b = model::to_fp32(b_view);
  vk::Context& context = *context_;
  vk::Buffer w_buffer = context.allocate(weight.size() * 4, vk::Category::workspace, "merge.adapter.w");
  vk::Buffer a_buffer = context.allocate(a.size() * 4, vk::Category::workspace, "merge.adapter.a");
  vk::Buffer b_buffer = context.allocate(b.size() * 4, vk::Category::workspace, "merge.adapter.b");
  context.upload(w_buffer, weight.data(), 0, weight.size() * 4);
  context.upload(a_buffer, a.data(), 0, a.size() * 4);
  context.upload(b_buffer, b.data(), 0, b.size() * 4);
  // W (out, in) += s · B (out, r) · A (r, in): matmul_nn with M = out, N = r, K = in, beta = 1.
  const float scale = adapter_->file.settings.scale();
  context.run([&](vk::Recorder& r) {
    kernels::matmul_nn(r, b_buffer.range(), kernels::DType::f32, kernels::dense_f32(a_buffer.range()),
                       w_buffer.range(0, weight.size() * 4), kernels::DType::f32, out, rank, in, scale, 1.0f);
  });
  context.download(w_buffer, weight.data(), 0, weight.size() * 4);
  adapted_++;
}

std::vector<float> ModelSource::read(const std::string& name) {
  const TensorInfo& tensor = info(name);
  std::vector<float> values;
  if (gguf_) {
    values = gguf_->read(name);
  } else if (quantized_.at(name)) {
    auto linear = parse_linear_name(name);
    VKT_ASSERT(linear.has_value(), "quantized tensor that is not a linear weight: " + name);
    auto rows = static_cast<uint32_t>(tensor.shape[0]), cols = static_cast<uint32_t>(tensor.shape[1]);
    quant::QuantizedWeight weight = bitsandbytes_ ? model::read_bitsandbytes_nf4(*folder_, name, rows, cols)
                                                  : model::read_vktune_quantized(*folder_, name, rows, cols, *vktune_);
    values = quant::dequantize(weight);
  } else {
    values = model::to_fp32(folder_->tensor(name));
    model::require_finite(values, folder_->file_of(name).path().string(), name);
  }
  if (adapter_) {
    if (auto linear = parse_linear_name(name)) {
      const auto& targets = adapter_->file.settings.targets;
      if (std::find(targets.begin(), targets.end(), linear->module) != targets.end()) {
        add_adapter_product(*linear, values);
        if (adapter_->file.settings.peft_type == spec::PeftType::dora) {  // PEFT's merge: rows by m / ‖W + s·B·A‖
          const std::string magnitude =
              model::dora_peft_name(model::model_shape(config_), linear->layer, linear->module);
          model::dora_merge_rows(values, model::to_fp32(adapter_->weights->tensor(magnitude)), info(name).shape[1]);
        }
      }
    }
    const model::LoraSettings& settings = adapter_->file.settings;  // IA3: W's rows (and b) or columns scaled
    if (model::ia3_merge_tensor(model::model_shape(config_), settings.ia3_targets, settings.ia3_feedforward,
                                *adapter_->weights, name, values))
      adapted_++;
  }
  apply_extras(name, values);
  return values;
}

void ModelSource::release(const std::string& name) {
  if (!folder_) return;  // a GGUF base keeps no pages of a tensor after read()
  if (const model::TensorView* view = folder_->find(name)) release_pages(*view);
  const char* const* parts = bitsandbytes_ ? bitsandbytes_parts : vktune_parts;
  size_t count = bitsandbytes_ ? std::size(bitsandbytes_parts) : std::size(vktune_parts);
  for (size_t i = 0; i < count; i++)
    if (const model::TensorView* view = folder_->find(name + parts[i])) release_pages(*view);
}

}  // namespace vkt::merge
