#include "engine/model/adapter.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/kernels/random.hpp"
#include "engine/model/dora.hpp"
#include "engine/model/ia3.hpp"
#include "engine/model/lora_init.hpp"
#include "engine/model/p_tuning.hpp"
#include "engine/model/prefix_tuning.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/model/soft_prompt.hpp"
#include "engine/spec/modules_to_save.hpp"

namespace vkt::model {

using spec::Module;

std::string peft_tensor_name(const spec::ModelShape& shape, uint32_t layer, Module module, bool a) {
  return "base_model.model.model.layers." + std::to_string(layer) + "." + spec::stored_module_path(shape, module) +
         (a ? ".lora_A.weight" : ".lora_B.weight");
}

const TensorView* find_peft_tensor(const SafetensorsFile& file, const spec::ModelShape& shape, uint32_t layer,
                                   Module module, bool a) {
  std::string name = peft_tensor_name(shape, layer, module, a);
  if (const TensorView* tensor = file.find(name)) return tensor;
  name.replace(name.rfind(".weight"), 7, ".default.weight");
  return file.find(name);
}

std::string lora_buffer_name(const spec::ModelShape& shape, uint32_t layer, Module module, bool a) {
  return "model.layers." + std::to_string(layer) + "." + spec::stored_module_path(shape, module) +
         (a ? ".lora_A" : ".lora_B");
}

namespace {

// The non-empty items of a comma list, trimmed.
std::vector<std::string> split_list(const std::string& list) {
  std::vector<std::string> items;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    std::string item = list.substr(start, end - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) items.push_back(item);
    start = end + 1;
  }
  return items;
}

}  // namespace

std::vector<Module> lora_owners(const spec::ModelShape& shape, const std::vector<Module>& targets) {
  std::vector<Module> owners;
  for (Module module : targets)
    if (spec::fused_owner(shape, module) == module) owners.push_back(module);
  return owners;
}

std::vector<std::string> peft_target_names(const spec::ModelShape& shape, const std::vector<Module>& targets) {
  std::vector<std::string> names;
  for (Module module : lora_owners(shape, targets)) names.push_back(spec::stored_module_name(shape, module));
  return names;
}

std::vector<Module> parse_target_modules(const std::string& given, const spec::ModelShape* model) {
  // PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING: q_proj,v_proj for the llama family,
  // qkv_proj for Phi-3, whose attention projections are fused.
  const std::string list = !given.empty() ? given : model && model->fused_projections ? "qkv_proj" : "q_proj,v_proj";
  std::vector<Module> modules;
  if (list == "all-linear" || list == "all_linear") {
    for (size_t m = 0; m < spec::module_count; m++) modules.push_back(Module(m));
    return modules;
  }
  for (std::string name : split_list(list)) {
    // PEFT saves a resolved "all-linear" as full module paths (model.layers.0.self_attn.q_proj);
    // it matches names by their last component, so do we (a layer it leaves out has no tensors,
    // and loading the weights says so).
    if (name.find('.') != std::string::npos) name = name.substr(name.rfind('.') + 1);
    if (name.empty()) continue;
    {
      const bool fused_name = name == "qkv_proj" || name == "gate_up_proj";
      if (model && !model->fused_projections && fused_name)
        throw UserError("unknown target module '" + name + "'",
                        "this model has q_proj, k_proj, v_proj, gate_proj and up_proj (qkv_proj and gate_up_proj are "
                        "Phi-3's fused ones)");
      auto piece = spec::module_from_name(name);
      if (model && model->fused_projections && piece &&
          spec::fused_out_features(*model, *piece) != spec::module_out_features(*model, *piece))
        throw UserError("unknown target module '" + name + "'",
                        std::string("this model fuses it into ") + spec::stored_module_name(*model, *piece) +
                            ": target that (PEFT's names here: qkv_proj, o_proj, gate_up_proj, down_proj)");
      std::vector<Module> named;
      if (name == "qkv_proj")
        named = {Module::q_proj, Module::k_proj, Module::v_proj};
      else if (name == "gate_up_proj")
        named = {Module::gate_proj, Module::up_proj};
      else if (auto module = spec::module_from_name(name))
        named = {*module};
      else
        throw UserError("unknown target module '" + name + "'",
                        "use q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (Phi-3: qkv_proj, o_proj, "
                        "gate_up_proj, down_proj), or all-linear");
      for (Module module : named)
        if (std::find(modules.begin(), modules.end(), module) == modules.end()) modules.push_back(module);
    }
  }
  if (modules.empty()) throw UserError("--target-modules is empty", "e.g. q_proj,v_proj or all-linear");
  return modules;
}

std::vector<std::pair<std::string, uint64_t>> norm_modules(const spec::ModelShape& shape) {
  std::vector<std::pair<std::string, uint64_t>> norms;
  for (uint32_t layer = 0; layer < shape.layers; layer++) {
    const std::string prefix = "model.layers." + std::to_string(layer) + ".";
    for (const char* norm : {"input_layernorm", "post_attention_layernorm"})
      norms.push_back({prefix + norm, shape.hidden});
    if (shape.gemma)
      for (const char* norm : {"pre_feedforward_layernorm", "post_feedforward_layernorm"})
        norms.push_back({prefix + norm, shape.hidden});
    if (shape.qk_norm)
      for (const char* norm : {"self_attn.q_norm", "self_attn.k_norm"})
        norms.push_back({prefix + norm, shape.head_dim});
  }
  norms.push_back({"model.norm", shape.hidden});
  return norms;
}

std::vector<AdapterExtraTensor> adapter_extra_tensors(const spec::ModelShape& shape, const LoraSettings& lora) {
  std::vector<AdapterExtraTensor> tensors;
  if (lora.save_embed_tokens)
    tensors.push_back(
        {"model.embed_tokens.weight", "base_model.model.model.embed_tokens.weight", {shape.vocab, shape.hidden}});
  if (lora.save_lm_head)
    tensors.push_back({"lm_head.weight", "base_model.model.lm_head.weight", {shape.vocab, shape.hidden}});
  for (const auto& [norm, features] : norm_modules(shape))  // LongLoRA's trainable norms
    if (spec::peft_saves_module(lora.saved_norms, norm))
      tensors.push_back({norm + ".weight", "base_model.model." + norm + ".weight", {features}});
  if (!lora.token_indices.empty())
    tensors.push_back({"model.embed_tokens.token_delta",
                       "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta",
                       {lora.token_indices.size(), shape.hidden}});
  if (lora.peft_type == spec::PeftType::bitfit && shape.qkv_bias)  // BitFit: q/k/v biases, the model's names
    for (uint32_t layer = 0; layer < shape.layers; layer++)
      for (Module module : {Module::q_proj, Module::k_proj, Module::v_proj})
        tensors.push_back({layer_tensor_name(layer, module, "bias"),
                           layer_tensor_name(layer, module, "bias"),
                           {spec::module_out_features(shape, module)}});
  if (lora.peft_type == spec::PeftType::dora)  // DoRA's magnitude vectors, beside each module's A and B
    for (uint32_t layer = 0; layer < shape.layers; layer++)
      for (Module module : lora_owners(shape, lora.targets))
        if (lora.adapts_layer(layer))
          tensors.push_back({dora_buffer_name(shape, layer, module),
                             dora_peft_name(shape, layer, module),
                             {spec::fused_out_features(shape, module)}});
  if (lora.peft_type == spec::PeftType::prompt_tuning ||
      lora.peft_type == spec::PeftType::p_tuning)  // soft_prompt.hpp; P-tuning: its encoder's output
    tensors.push_back({"prompt_embeddings", "prompt_embeddings", {lora.virtual_tokens, shape.hidden}});
  if (lora.peft_type == spec::PeftType::prefix_tuning)  // every layer's past keys/values (prefix_tuning.hpp)
    tensors.push_back({"prefix.key_values", "prompt_embeddings", {lora.prefix_tokens, prefix_width(shape)}});
  for (uint32_t layer = 0; layer < shape.layers; layer++)  // IA3's vectors
    for (Module module : lora.ia3_targets)
      if (lora.adapts_layer(layer))
        tensors.push_back({ia3_buffer_name(layer, module), ia3_peft_name(layer, module),
                           ia3_peft_shape(shape, module, ia3_is_feedforward(lora.ia3_feedforward, module))});
  return tensors;
}

namespace {

void add_module_to_save(const std::string& name, const std::string& where, LoraSettings& lora) {
  if (name == "embed_tokens")
    lora.save_embed_tokens = true;
  else if (name == "lm_head")
    lora.save_lm_head = true;
  else if (name.ends_with("norm"))  // input_layernorm, post_attention_layernorm, norm, q_norm, ...
    lora.saved_norms.push_back(name);
  else
    throw UserError(where + ": modules_to_save lists '" + name +
                        "'; vktune trains embed_tokens, lm_head and norms (input_layernorm, ..., norm)",
                    "valid names: embed_tokens, lm_head, input_layernorm, post_attention_layernorm, norm (Qwen3 and "
                    "Gemma 3 also q_norm, k_norm; Gemma also pre_feedforward_layernorm, post_feedforward_layernorm); "
                    "linear layers are trained through LoRA");
}

}  // namespace

void parse_modules_to_save(const std::string& list, LoraSettings& lora) {
  for (const std::string& name : split_list(list)) add_module_to_save(name, "--modules-to-save", lora);
}

void check_modules_to_save(const spec::ModelShape& shape, const std::vector<std::string>& saved_norms,
                           const std::string& where) {
  const std::vector<std::pair<std::string, uint64_t>> norms = norm_modules(shape);
  for (const std::string& entry : saved_norms) {
    if (std::any_of(norms.begin(), norms.end(),
                    [&](const auto& norm) { return spec::peft_saves_module({entry}, norm.first); }))
      continue;
    std::vector<std::string> names = {"embed_tokens", "lm_head"};
    for (const auto& norm : norms) {
      const std::string name = norm.first.substr(norm.first.rfind('.') + 1);
      if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    }
    std::string list;
    for (const std::string& name : names) list += (list.empty() ? "" : ", ") + name;
    throw UserError(where + ": modules_to_save entry '" + entry + "' matches no module of this model",
                    "valid names: " + list +
                        " (as PEFT, an entry names every module whose name ends with it: norm is every norm, "
                        "model.norm the final one only)");
  }
}

std::vector<uint32_t> parse_token_indices(const std::string& list) {
  std::vector<uint32_t> indices;
  for (const std::string& item : split_list(list)) {
    size_t used = 0;
    unsigned long long value = 0;
    try {
      value = std::stoull(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || item[0] == '-' || value > 0xffffffffull)
      throw UserError("--trainable-token-indices: '" + item + "' is not a token id",
                      "give a comma list of ids, e.g. 128000,128001 (vktune tokenize shows a text's ids)");
    indices.push_back(static_cast<uint32_t>(value));
  }
  return indices;
}

void check_token_indices(const std::vector<uint32_t>& indices, uint64_t vocab, const std::string& where) {
  std::vector<uint32_t> sorted = indices;
  std::sort(sorted.begin(), sorted.end());
  if (!sorted.empty() && sorted.back() >= vocab)
    throw UserError(where + ": token id " + std::to_string(sorted.back()) + " is not below the vocabulary size " +
                        std::to_string(vocab),
                    "add new tokens to the model (resize its embeddings) before training their rows");
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
    throw UserError(
        where + ": token id " + std::to_string(*std::adjacent_find(sorted.begin(), sorted.end())) + " is listed twice",
        "list each token once");
}

void parse_adapter_extras(const nlohmann::json& config, const std::string& where, LoraSettings& lora) {
  if (config.contains("modules_to_save") && !config["modules_to_save"].is_null())
    for (const auto& name : config["modules_to_save"]) add_module_to_save(name.get<std::string>(), where, lora);
  if (!config.contains("trainable_token_indices") || config["trainable_token_indices"].is_null()) return;
  const auto& indices = config["trainable_token_indices"];
  const nlohmann::json* list = &indices;
  if (indices.is_object()) {  // PEFT's dict form: {"embed_tokens": [...]}; other layers are not supported
    for (const auto& [layer, ids] : indices.items())
      if (layer != "embed_tokens")
        throw UserError(where + ": trainable_token_indices names '" + layer + "'; vktune trains embed_tokens rows",
                        "use a list of ids (PEFT's embed_tokens form)");
    list = &indices.at("embed_tokens");
  }
  for (const auto& id : *list) lora.token_indices.push_back(id.get<uint32_t>());
}

namespace {
// An IA3 adapter_config.json (peft_type "IA3"): target_modules and feedforward_modules.
AdapterFile load_ia3_adapter_config(const nlohmann::json& json, const std::string& path) {
  auto where = [&](const std::string& key) { return path + ": \"" + key + "\""; };
  if (json.value("fan_in_fan_out", false))
    throw UserError(where("fan_in_fan_out") + " is true (GPT-2 Conv1D layout)", "Llama-family adapters have it false");
  AdapterFile file;
  file.settings.peft_type = spec::PeftType::ia3;
  auto modules = [&](const char* key) {
    std::string list;
    const auto& value = json.at(key);
    if (value.is_string()) return parse_target_modules(value.get<std::string>());
    for (const auto& name : value) list += (list.empty() ? "" : ",") + name.get<std::string>();
    return list.empty() ? std::vector<Module>{} : parse_target_modules(list);
  };
  try {
    file.settings.ia3_targets = modules("target_modules");
    if (json.contains("feedforward_modules") && !json["feedforward_modules"].is_null())
      file.settings.ia3_feedforward = modules("feedforward_modules");
    else
      file.settings.ia3_feedforward = ia3_default_feedforward(file.settings.ia3_targets);
    parse_adapter_extras(json, path, file.settings);
  } catch (const nlohmann::json::exception& error) {
    throw UserError(path + ": missing or invalid field (" + error.what() + ")",
                    "an IA3 adapter_config.json needs target_modules (and feedforward_modules)");
  }
  for (Module module : file.settings.ia3_feedforward)
    if (!ia3_is_feedforward(file.settings.ia3_targets, module))
      throw UserError(
          where("feedforward_modules") + " lists " + spec::module_name(module) + ", which is not in target_modules",
          "feedforward_modules must be a subset of target_modules (as PEFT requires)");
  if (json.contains("base_model_name_or_path") && json["base_model_name_or_path"].is_string())
    file.base_model = json["base_model_name_or_path"].get<std::string>();
  return file;
}
}  // namespace

AdapterFile load_adapter_config(const std::filesystem::path& directory) {
  auto path = directory / "adapter_config.json";
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& error) {
    throw UserError(path.string() + ": not valid JSON (" + error.what() + ")", "is this a PEFT adapter folder?");
  }
  auto where = [&](const std::string& key) { return path.string() + ": \"" + key + "\""; };
  if (json.value("peft_type", std::string()) == "IA3") return load_ia3_adapter_config(json, path.string());
  if (json.value("peft_type", std::string()) == "PROMPT_TUNING" ||
      json.value("peft_type", std::string()) == "P_TUNING" ||
      json.value("peft_type", std::string()) == "PREFIX_TUNING") {
    AdapterFile file;
    if (json["peft_type"] == "PREFIX_TUNING")
      read_prefix_tuning_config(json, path.string(), file.settings);
    else
      read_prompt_tuning_config(json, path.string(), file.settings);
    if (json.contains("base_model_name_or_path") && json["base_model_name_or_path"].is_string())
      file.base_model = json["base_model_name_or_path"].get<std::string>();
    return file;
  }
  if (json.value("peft_type", std::string()) == bitfit_peft_type) {  // vktune's own: PEFT has no BitFit
    AdapterFile file;
    file.settings.peft_type = spec::PeftType::bitfit;
    if (json.contains("base_model_name_or_path") && json["base_model_name_or_path"].is_string())
      file.base_model = json["base_model_name_or_path"].get<std::string>();
    return file;
  }
  if (json.value("peft_type", std::string("LORA")) != "LORA")
    throw UserError(
        where("peft_type") + " is " + json.value("peft_type", std::string()) + ", vktune reads LORA adapters",
        "use a LoRA or IA3 adapter");
  if (json.value("fan_in_fan_out", false))
    throw UserError(where("fan_in_fan_out") + " is true (GPT-2 Conv1D layout)", "Llama-family adapters have it false");
  if (json.contains("bias") && json["bias"] != "none")
    throw UserError(where("bias") + " is not \"none\": LoRA biases are not supported", "train with bias none");
  AdapterFile file;
  try {
    file.settings.rank = json.at("r").get<uint32_t>();
    file.settings.alpha = json.value("lora_alpha", static_cast<float>(file.settings.rank));
    file.settings.dropout = json.value("lora_dropout", 0.0f);
    file.settings.rslora = json.value("use_rslora", false);
    if (json.value("use_dora", false)) file.settings.peft_type = spec::PeftType::dora;
    const auto& targets = json.at("target_modules");
    std::string list;
    if (targets.is_string())
      list = targets.get<std::string>();
    else
      for (const auto& t : targets) list += (list.empty() ? "" : ",") + t.get<std::string>();
    file.settings.targets = parse_target_modules(list);
    if (json.contains("layers_to_transform") && !json["layers_to_transform"].is_null()) {
      const auto& layers = json["layers_to_transform"];
      if (layers.is_number_integer())
        file.settings.layers = {layers.get<uint32_t>()};
      else
        file.settings.layers = layers.get<std::vector<uint32_t>>();
      std::sort(file.settings.layers.begin(), file.settings.layers.end());
    }
    if (json.contains("layers_pattern") && !json["layers_pattern"].is_null()) {
      const auto& pattern = json["layers_pattern"];
      const bool layers = pattern.is_string() ? pattern == "layers"
                                              : pattern.is_array() && pattern.size() == 1 && pattern[0] == "layers";
      if (!layers)
        throw UserError(
            where("layers_pattern") + " is " + pattern.dump() + ": only \"layers\" (model.layers.N) is known",
            "Llama-family models name their blocks model.layers");
    }
    parse_adapter_extras(json, path.string(), file.settings);
  } catch (const nlohmann::json::exception& error) {
    throw UserError(path.string() + ": missing or invalid field (" + error.what() + ")",
                    "adapter_config.json needs r, lora_alpha and target_modules");
  }
  // PiSSA/OLoRA (and PEFT's other base-changing inits) saved unconverted only work on the residual base.
  if (json.contains("init_lora_weights") && json["init_lora_weights"].is_string()) {
    std::string init = json["init_lora_weights"].get<std::string>();
    std::transform(init.begin(), init.end(), init.begin(), [](unsigned char c) { return std::tolower(c); });
    if (init.rfind("pissa", 0) == 0 || init == "olora" || init.rfind("corda", 0) == 0 || init == "loftq")
      throw UserError(where("init_lora_weights") + " is \"" + init +
                          "\": this adapter trains against a changed (residual) base, not the model's own",
                      "use the run's final adapter (vktune writes it converted to plain LoRA, as PEFT's "
                      "path_initial_model_for_weight_conversion), or resume the run from this checkpoint");
  }
  if (json.contains("rank_pattern") && !json["rank_pattern"].empty())
    throw UserError(where("rank_pattern") + " is set: per-module ranks are not supported", "use one rank");
  // PEFT writes null when the base model was built in code (from_config), not loaded by name.
  if (json.contains("base_model_name_or_path") && json["base_model_name_or_path"].is_string())
    file.base_model = json["base_model_name_or_path"].get<std::string>();
  return file;
}

void init_adapter(vk::Context& context, BufferSet& buffers, const spec::ModelShape& shape, const LoraSettings& lora,
                  uint64_t seed) {
  for (uint32_t layer = 0; layer < shape.layers; layer++)  // IA3: ones (init_ia3_weights), the identity
    for (Module module : lora.ia3_targets) {
      const auto length = ia3_vector_size(shape, module, ia3_is_feedforward(lora.ia3_feedforward, module));
      std::vector<float> ones(length, 1.0f);
      context.upload(buffers.buffer(ia3_buffer_name(layer, module)), ones.data());
    }
  for (uint32_t layer = 0; layer < shape.layers; layer++) {
    if (!lora.adapts_layer(layer)) continue;  // layers_to_transform leaves it out
    for (Module module : lora_owners(shape, lora.targets)) {
      const uint64_t in = spec::module_in_features(shape, module), out = spec::fused_out_features(shape, module);
      // kaiming_uniform_(a=sqrt(5)) on (r, in): bound = sqrt(6 / ((1 + 5) * in)) = 1/sqrt(in).
      const float bound = 1.0f / std::sqrt(static_cast<float>(in));
      std::vector<float> a(lora.rank * in);
      uint32_t key = layer * static_cast<uint32_t>(spec::module_count) + static_cast<uint32_t>(module);
      ref::random_uniform(a.data(), a.size(), static_cast<uint32_t>(seed), random::stream_init, 0, key, -bound, bound);
      context.upload(buffers.buffer(lora_buffer_name(shape, layer, module, true)), a.data());
      std::vector<float> b(out * lora.rank, 0.0f);
      context.upload(buffers.buffer(lora_buffer_name(shape, layer, module, false)), b.data());
    }
  }
}

void load_adapter_weights(vk::Context& context, BufferSet& buffers, const spec::ModelShape& shape,
                          const LoraSettings& lora, const std::filesystem::path& directory) {
  SafetensorsFile file(directory / "adapter_model.safetensors");
  for (uint32_t layer = 0; layer < shape.layers; layer++) {
    if (!lora.adapts_layer(layer)) continue;  // layers_to_transform leaves it out
    for (Module module : lora_owners(shape, lora.targets)) {
      const uint64_t in = spec::module_in_features(shape, module), out = spec::fused_out_features(shape, module);
      for (bool a : {true, false}) {
        const std::string name = peft_tensor_name(shape, layer, module, a);
        const TensorView* tensor = find_peft_tensor(file, shape, layer, module, a);
        if (!tensor)
          throw UserError(file.path().string() + ": no tensor " + name,
                          "the adapter's target_modules or layer count do not match this model");
        std::vector<uint64_t> expected =
            a ? std::vector<uint64_t>{lora.rank, in} : std::vector<uint64_t>{out, lora.rank};
        if (tensor->shape != expected)
          throw UserError(file.path().string() + ": tensor " + name +
                              " has the wrong shape for r=" + std::to_string(lora.rank) + " on this model",
                          "the adapter was trained for another base model");
        std::vector<float> values = to_fp32(*tensor);
        require_finite(values, file.path().string(), tensor->name);
        context.upload(buffers.buffer(lora_buffer_name(shape, layer, module, a)), values.data());
      }
    }
  }
  if (!lora.token_indices.empty())
    check_token_indices(lora.token_indices, shape.vocab, (directory / "adapter_config.json").string());
  // An entry PEFT would ignore (it matches no module of this model) is refused, as --modules-to-save's.
  check_modules_to_save(shape, lora.saved_norms, (directory / "adapter_config.json").string());
  for (const AdapterExtraTensor& extra : adapter_extra_tensors(shape, lora)) {
    const TensorView* tensor = file.find(extra.peft_name);
    if (!tensor)
      throw UserError(file.path().string() + ": no tensor " + extra.peft_name,
                      "adapter_config.json lists modules_to_save, trainable_token_indices or IA3 target_modules the "
                      "file does not hold");
    if (tensor->shape != extra.shape)
      throw UserError(file.path().string() + ": tensor " + extra.peft_name + " has the wrong shape for this model",
                      "the adapter was trained for another base model (or another vocabulary size)");
    std::vector<float> values = to_fp32(*tensor);
    context.upload(buffers.buffer(extra.buffer), values.data());
  }
}

nlohmann::json peft_lora_config(uint32_t rank, double alpha, double dropout, const std::vector<std::string>& targets,
                                bool rslora, const std::string& base_model) {
  return {{"peft_type", "LORA"},
          {"task_type", "CAUSAL_LM"},
          {"r", rank},
          {"lora_alpha", alpha},
          {"lora_dropout", dropout},
          {"target_modules", targets},
          {"use_rslora", rslora},
          {"bias", "none"},
          {"base_model_name_or_path", base_model},
          {"fan_in_fan_out", false},
          {"inference_mode", true},
          {"init_lora_weights", true},
          {"modules_to_save", nullptr},
          {"use_dora", false},
          {"revision", nullptr},
          {"layers_to_transform", nullptr},
          {"trainable_token_indices", nullptr}};
}

void save_adapter(vk::Context& context, const BufferSet& buffers, const spec::ModelShape& shape,
                  const LoraSettings& lora, const std::string& base_model, const std::filesystem::path& directory,
                  const std::string&, const InitialLora* initial, bool convert_to_lora) {
  std::filesystem::create_directories(directory);
  nlohmann::json config = lora.peft_type == spec::PeftType::ia3
                              ? peft_ia3_config(lora.ia3_targets, lora.ia3_feedforward, base_model)
                          : lora.peft_type == spec::PeftType::bitfit
                              ? nlohmann::json{{"peft_type", bitfit_peft_type}, {"base_model_name_or_path", base_model}}
                              : peft_lora_config(lora.rank, lora.alpha, lora.dropout,
                                                 peft_target_names(shape, lora.targets), lora.rslora, base_model);
  if (lora.peft_type == spec::PeftType::dora) config["use_dora"] = true;
  if (lora.peft_type == spec::PeftType::prompt_tuning) config = peft_prompt_tuning_config(shape, lora, base_model);
  if (lora.peft_type == spec::PeftType::p_tuning) config = peft_p_tuning_config(shape, lora, base_model);
  if (lora.peft_type == spec::PeftType::prefix_tuning) config = peft_prefix_tuning_config(shape, lora, base_model);
  std::vector<std::string> modules_to_save;
  if (lora.save_embed_tokens) modules_to_save.push_back("embed_tokens");
  if (lora.save_lm_head) modules_to_save.push_back("lm_head");
  modules_to_save.insert(modules_to_save.end(), lora.saved_norms.begin(), lora.saved_norms.end());
  if (!modules_to_save.empty()) config["modules_to_save"] = modules_to_save;
  if (!lora.token_indices.empty()) config["trainable_token_indices"] = lora.token_indices;
  if (!lora.layers.empty()) {  // PEFT writes both; "layers" is the Llama family's block list name
    config["layers_to_transform"] = lora.layers;
    config["layers_pattern"] = "layers";
  }
  const bool convert = convert_to_lora && initial && initial->init.changes_base();
  if (initial) record_lora_init(config, lora, *initial, convert);
  std::vector<TensorToWrite> tensors;
  for (uint32_t layer = 0; layer < shape.layers; layer++) {
    if (!lora.adapts_layer(layer)) continue;  // layers_to_transform leaves it out
    for (Module module : lora_owners(shape, lora.targets)) {
      const uint64_t in = spec::module_in_features(shape, module), out = spec::fused_out_features(shape, module);
      for (bool a : {true, false}) {
        if (convert) {
          tensors.push_back(converted_lora_tensor(context, buffers, shape, lora, *initial, layer, module, a));
          continue;
        }
        std::vector<uint64_t> dims = a ? std::vector<uint64_t>{lora.rank, in} : std::vector<uint64_t>{out, lora.rank};
        const vk::Buffer* buffer = &buffers.buffer(lora_buffer_name(shape, layer, module, a));
        tensors.push_back(
            {peft_tensor_name(shape, layer, module, a), FileDtype::F32, dims, [&context, buffer](TensorSink& sink) {
               std::vector<float> values(buffer->size() / 4);
               context.download(*buffer, values.data());
               sink.write(values.data(), values.size() * 4);
             }});
      }
    }
  }
  for (const AdapterExtraTensor& extra : adapter_extra_tensors(shape, lora)) {
    const vk::Buffer* buffer = &buffers.buffer(extra.buffer);
    tensors.push_back({extra.peft_name, FileDtype::F32, extra.shape, [&context, buffer](TensorSink& sink) {
                         std::vector<float> values(buffer->size() / 4);
                         context.download(*buffer, values.data());
                         sink.write(values.data(), values.size() * 4);
                       }});
  }
  write_safetensors(directory / "adapter_model.safetensors", std::move(tensors), {{"format", "pt"}});
  // base_model_name_or_path is a path, which need not be UTF-8: such bytes become U+FFFD.
  write_file_atomically(directory / "adapter_config.json",
                        config.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

}  // namespace vkt::model
