#pragma once
// PEFT LoRA adapters: adapter_config.json + adapter_model.safetensors with PEFT's tensor names
// (base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight (r, in), ...lora_B.weight
// (out, r)), PEFT's initialisation (A ~ U(±1/√in) as kaiming_uniform(a=√5) gives, B = 0).
#include <filesystem>
#include <string>

#include "engine/model/buffers.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/model/transformer.hpp"

namespace vkt::model {

// The layout of the adapters vktune writes; bumped with tests/reference/peft_extras_golden.py's
// ADAPTER_FORMAT_VERSION whenever it changes (PEFT's load check is then rerun).
constexpr int adapter_format_version = 1;
// BitFit has no PEFT type: vktune writes adapter_config.json {"peft_type": "BITFIT",
// "base_model_name_or_path": ...} and the trained biases in adapter_model.safetensors under the
// full model's names ("model.layers.0.self_attn.q_proj.bias" (out)), which load_state_dict(strict=False)
// of the transformers model takes as they are.
constexpr const char* bitfit_peft_type = "BITFIT";

// PEFT's name of a LoRA tensor: "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"
// (a fused module's pieces share their owner's: "...self_attn.qkv_proj.lora_A.weight" for q/k/v).
std::string peft_tensor_name(const spec::ModelShape& shape, uint32_t layer, spec::Module module, bool a);
// That tensor in an adapter file, also under the name with PEFT's adapter name
// ("lora_A.default.weight") that some PEFT versions write; nullptr when absent.
const TensorView* find_peft_tensor(const SafetensorsFile& file, const spec::ModelShape& shape, uint32_t layer,
                                   spec::Module module, bool a);
// Our buffer name of the same tensor: "model.layers.3.self_attn.q_proj.lora_A".
std::string lora_buffer_name(const spec::ModelShape& shape, uint32_t layer, spec::Module module, bool a);
// The modules of `targets` that own LoRA tensors (all of them, except the later pieces of a fused module).
std::vector<spec::Module> lora_owners(const spec::ModelShape& shape, const std::vector<spec::Module>& targets);
// PEFT's target_modules names of `targets` ("qkv_proj" once for q/k/v when fused).
std::vector<std::string> peft_target_names(const spec::ModelShape& shape, const std::vector<spec::Module>& targets);

// The tensors an adapter holds beside LoRA, in PEFT 0.21's layout: modules_to_save copies
// ("base_model.model.model.embed_tokens.weight" (vocab, hidden), "base_model.model.lm_head.weight"
// (vocab, hidden)) and trainable tokens' rows
// ("base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta" (tokens, hidden): the
// rows' new values, not differences, despite the name).
struct AdapterExtraTensor {
  std::string buffer;     // our buffer: "model.embed_tokens.weight", "model.embed_tokens.token_delta"
  std::string peft_name;  // its name in adapter_model.safetensors
  std::vector<uint64_t> shape;
};
std::vector<AdapterExtraTensor> adapter_extra_tensors(const spec::ModelShape& shape, const LoraSettings& lora);
// Every RMSNorm of the model as (module name "model.layers.0.input_layernorm" / "model.norm", features):
// what a norm entry of modules_to_save may match (adapter_extra_tensors: "base_model.model.<name>.weight").
std::vector<std::pair<std::string, uint64_t>> norm_modules(const spec::ModelShape& shape);

// "modules_to_save" (embed_tokens, lm_head) and "trainable_token_indices" (a list of ids, or
// {"embed_tokens": [...]}) of adapter_config.json into `lora`; UserError naming `where` otherwise.
void parse_adapter_extras(const nlohmann::json& config, const std::string& where, LoraSettings& lora);
// "embed_tokens,lm_head" (the --modules-to-save flag) and "5,9,12" (--trainable-token-indices).
void parse_modules_to_save(const std::string& list, LoraSettings& lora);
// A UserError for a norm entry of modules_to_save (saved_norms) that matches none of the model's norms
// by PEFT's rule (engine/spec/modules_to_save.hpp; PEFT itself skips such an entry silently): it names
// the entry, `where` (the flag or file) and the names that do match.
void check_modules_to_save(const spec::ModelShape& shape, const std::vector<std::string>& saved_norms,
                           const std::string& where);
std::vector<uint32_t> parse_token_indices(const std::string& list);
// UserError unless every index is below `vocab` and none repeats.
void check_token_indices(const std::vector<uint32_t>& indices, uint64_t vocab, const std::string& where);

// "all-linear" or a comma list of module names; UserError naming the unknown module. Phi-3's fused
// "qkv_proj" and "gate_up_proj" stand for their pieces (q, k, v and gate, up). With the model's shape,
// names it does not have (as PEFT would find no such module) are unknown too: qkv_proj on Llama,
// q_proj on Phi-3.
std::vector<spec::Module> parse_target_modules(const std::string& list, const spec::ModelShape* model = nullptr);

struct AdapterFile {
  LoraSettings settings;
  std::string base_model;  // base_model_name_or_path
};
// Reads DIR/adapter_config.json; UserError (naming the file) unless it is a LoRA adapter we can use.
AdapterFile load_adapter_config(const std::filesystem::path& directory);

// Fresh adapter: A uniform in ±1/√in from (seed, layer, module), B zero.
void init_adapter(vk::Context& context, BufferSet& buffers, const spec::ModelShape& shape, const LoraSettings& lora,
                  uint64_t seed);
// Loads DIR/adapter_model.safetensors into the adapter buffers (shapes checked against r).
void load_adapter_weights(vk::Context& context, BufferSet& buffers, const spec::ModelShape& shape,
                          const LoraSettings& lora, const std::filesystem::path& directory);
// PEFT's adapter_config.json for a LoRA adapter (LoraConfig's keys as PEFT writes them).
nlohmann::json peft_lora_config(uint32_t rank, double alpha, double dropout, const std::vector<std::string>& targets,
                                bool rslora, const std::string& base_model);

// Writes adapter_config.json and adapter_model.safetensors into `directory` (created; each file
// written atomically).
void save_adapter(vk::Context& context, const BufferSet& buffers, const spec::ModelShape& shape,
                  const LoraSettings& lora, const std::string& base_model, const std::filesystem::path& directory,
                  const std::string& prefix = "");

}  // namespace vkt::model
