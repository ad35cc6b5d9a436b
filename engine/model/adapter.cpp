#include "engine/model/adapter.hpp"

#include <cmath>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/kernels/random.hpp"
#include "engine/model/safetensors.hpp"

namespace vkt::model {

using spec::Module;

std::string peft_tensor_name(uint32_t layer, Module module, bool a) {
  return "base_model.model.model.layers." + std::to_string(layer) + "." + spec::module_path(module) +
         (a ? ".lora_A.weight" : ".lora_B.weight");
}

const TensorView* find_peft_tensor(const SafetensorsFile& file, uint32_t layer, Module module, bool a) {
  std::string name = peft_tensor_name(layer, module, a);
  if (const TensorView* tensor = file.find(name)) return tensor;
  name.replace(name.rfind(".weight"), 7, ".default.weight");
  return file.find(name);
}

std::string lora_buffer_name(uint32_t layer, Module module, bool a) {
  return "model.layers." + std::to_string(layer) + "." + spec::module_path(module) + (a ? ".lora_A" : ".lora_B");
}

std::vector<Module> parse_target_modules(const std::string& list) {
  std::vector<Module> modules;
  if (list == "all-linear" || list == "all_linear") {
    for (size_t m = 0; m < spec::module_count; m++) modules.push_back(Module(m));
    return modules;
  }
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    std::string name = list.substr(start, end - start);
    name.erase(0, name.find_first_not_of(" \t"));
    name.erase(name.find_last_not_of(" \t") + 1);
    // PEFT saves a resolved "all-linear" as full module paths (model.layers.0.self_attn.q_proj);
    // it matches names by their last component, so do we (a layer it leaves out has no tensors,
    // and loading the weights says so).
    if (name.find('.') != std::string::npos) name = name.substr(name.rfind('.') + 1);
    if (!name.empty()) {
      auto module = spec::module_from_name(name);
      if (!module)
        throw UserError("unknown target module '" + name + "'",
                        "use q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, or all-linear");
      if (std::find(modules.begin(), modules.end(), *module) == modules.end()) modules.push_back(*module);
    }
    start = end + 1;
  }
  if (modules.empty()) throw UserError("--target-modules is empty", "e.g. q_proj,v_proj or all-linear");
  return modules;
}

AdapterFile load_adapter_config(const std::filesystem::path& directory) {
  auto path = directory / "adapter_config.json";
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& error) {
    throw UserError(path.string() + ": not valid JSON (" + error.what() + ")", "is this a PEFT adapter folder?");
  }
  auto where = [&](const std::string& key) { return path.string() + ": \"" + key + "\""; };
  if (json.value("peft_type", std::string("LORA")) != "LORA")
    throw UserError(
        where("peft_type") + " is " + json.value("peft_type", std::string()) + ", vktune reads LORA adapters",
        "use a LoRA adapter");
  if (json.value("use_dora", false))
    throw UserError(where("use_dora") + " is true: DoRA is not supported", "use plain LoRA");
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
    const auto& targets = json.at("target_modules");
    std::string list;
    if (targets.is_string())
      list = targets.get<std::string>();
    else
      for (const auto& t : targets) list += (list.empty() ? "" : ",") + t.get<std::string>();
    file.settings.targets = parse_target_modules(list);
  } catch (const nlohmann::json::exception& error) {
    throw UserError(path.string() + ": missing or invalid field (" + error.what() + ")",
                    "adapter_config.json needs r, lora_alpha and target_modules");
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
  for (uint32_t layer = 0; layer < shape.layers; layer++) {
    for (Module module : lora.targets) {
      const uint64_t in = spec::module_in_features(shape, module), out = spec::module_out_features(shape, module);
      // kaiming_uniform_(a=sqrt(5)) on (r, in): bound = sqrt(6 / ((1 + 5) * in)) = 1/sqrt(in).
      const float bound = 1.0f / std::sqrt(static_cast<float>(in));
      std::vector<float> a(lora.rank * in);
      uint32_t key = layer * static_cast<uint32_t>(spec::module_count) + static_cast<uint32_t>(module);
      ref::random_uniform(a.data(), a.size(), static_cast<uint32_t>(seed), random::stream_init, 0, key, -bound, bound);
      context.upload(buffers.buffer(lora_buffer_name(layer, module, true)), a.data());
      std::vector<float> b(out * lora.rank, 0.0f);
      context.upload(buffers.buffer(lora_buffer_name(layer, module, false)), b.data());
    }
  }
}

void load_adapter_weights(vk::Context& context, BufferSet& buffers, const spec::ModelShape& shape,
                          const LoraSettings& lora, const std::filesystem::path& directory) {
  SafetensorsFile file(directory / "adapter_model.safetensors");
  for (uint32_t layer = 0; layer < shape.layers; layer++) {
    for (Module module : lora.targets) {
      const uint64_t in = spec::module_in_features(shape, module), out = spec::module_out_features(shape, module);
      for (bool a : {true, false}) {
        const std::string name = peft_tensor_name(layer, module, a);
        const TensorView* tensor = find_peft_tensor(file, layer, module, a);
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
        context.upload(buffers.buffer(lora_buffer_name(layer, module, a)), values.data());
      }
    }
  }
}

nlohmann::json peft_lora_config(uint32_t rank, double alpha, double dropout, const std::vector<std::string>& targets,
                                bool rslora, const std::string& base_model) {
  return {{"peft_type", "LORA"},           {"task_type", "CAUSAL_LM"}, {"r", rank},
          {"lora_alpha", alpha},           {"lora_dropout", dropout},  {"target_modules", targets},
          {"use_rslora", rslora},          {"bias", "none"},           {"base_model_name_or_path", base_model},
          {"fan_in_fan_out", false},       {"inference_mode", true},   {"init_lora_weights", true},
          {"modules_to_save", nullptr},    {"use_dora", false},        {"revision", nullptr},
          {"layers_to_transform", nullptr}};
}

void save_adapter(vk::Context& context, const BufferSet& buffers, const spec::ModelShape& shape,
                  const LoraSettings& lora, const std::string& base_model, const std::filesystem::path& directory,
                  const std::string&) {
  std::filesystem::create_directories(directory);
  std::vector<std::string> target_names;
  for (Module module : lora.targets) target_names.push_back(spec::module_name(module));
  nlohmann::json config = peft_lora_config(lora.rank, lora.alpha, lora.dropout, target_names, lora.rslora, base_model);
  std::vector<TensorToWrite> tensors;
  for (uint32_t layer = 0; layer < shape.layers; layer++) {
    for (Module module : lora.targets) {
      const uint64_t in = spec::module_in_features(shape, module), out = spec::module_out_features(shape, module);
      for (bool a : {true, false}) {
        std::vector<uint64_t> dims = a ? std::vector<uint64_t>{lora.rank, in} : std::vector<uint64_t>{out, lora.rank};
        const vk::Buffer* buffer = &buffers.buffer(lora_buffer_name(layer, module, a));
        tensors.push_back(
            {peft_tensor_name(layer, module, a), FileDtype::F32, dims, [&context, buffer](TensorSink& sink) {
               std::vector<float> values(buffer->size() / 4);
               context.download(*buffer, values.data());
               sink.write(values.data(), values.size() * 4);
             }});
      }
    }
  }
  write_safetensors(directory / "adapter_model.safetensors", std::move(tensors), {{"format", "pt"}});
  // base_model_name_or_path is a path, which need not be UTF-8: such bytes become U+FFFD.
  write_file_atomically(directory / "adapter_config.json",
                        config.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

}  // namespace vkt::model
