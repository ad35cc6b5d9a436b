#pragma once
// IA3 (PEFT's IA3Config / IA3Layer, peft 0.21): one learned vector per adapted linear layer, no
// other weights. A module scales its output, y = (x·Wᵀ + b) ⊙ l with l (out), or, listed in
// feedforward_modules, its input, y = (x ⊙ l)·Wᵀ + b with l (in). PEFT's defaults for the Llama
// family: target k_proj, v_proj, down_proj (Gemma, Qwen2, Qwen3: q_proj, v_proj, down_proj),
// feedforward down_proj; every vector starts at ones (init_ia3_weights). Saved as
// "base_model.model.model.layers.{i}.self_attn.k_proj.ia3_l" of shape (out, 1), or (1, in) for a
// feedforward module. Merging scales W's rows (and b) or W's columns.
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "engine/model/linear.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/spec/model_shape.hpp"
#include "engine/spec/run_settings.hpp"

namespace vkt::model {

// PEFT's TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING for this family; UserError for Phi-3
// (fused projections: PEFT has no IA3 default there, vktune no fused IA3).
std::vector<spec::Module> ia3_default_targets(const spec::ModelShape& shape);
// PEFT's feedforward mapping (down_proj for every supported family), restricted to `targets`.
std::vector<spec::Module> ia3_default_feedforward(const std::vector<spec::Module>& targets);
bool ia3_is_feedforward(const std::vector<spec::Module>& feedforward, spec::Module module);
// Values in the vector: in_features for a feedforward module, out_features otherwise.
uint64_t ia3_vector_size(const spec::ModelShape& shape, spec::Module module, bool feedforward);
std::vector<uint64_t> ia3_peft_shape(const spec::ModelShape& shape, spec::Module module, bool feedforward);
std::string ia3_buffer_name(uint32_t layer, spec::Module module);  // "model.layers.3.self_attn.k_proj.ia3_l"
std::string ia3_peft_name(uint32_t layer, spec::Module module);    // "base_model.model." + that
// PEFT's adapter_config.json of an IA3 adapter (IA3Config's keys as PEFT writes them).
nlohmann::json peft_ia3_config(const std::vector<spec::Module>& targets, const std::vector<spec::Module>& feedforward,
                               const std::string& base_model);

// --peft-type ia3 on run settings: ia3_targets from `target_list` (the --target-modules flag; empty:
// PEFT's default for `model`), feedforward PEFT's default among them, and no LoRA targets.
// bitfit: no LoRA targets (the biases train); UserError naming `model_name` when it has no biases.
// prompt_tuning: no LoRA targets (the prompt trains). lora leaves the settings as they are.
void resolve_peft_targets(spec::RunSettings& settings, const std::string& target_list, const spec::ModelShape* model,
                          const std::string& model_name = "the model");

// Merging (PEFT's IA3 Linear.merge, as export's merge_and_unload does): scales `values`, the HF
// tensor `name` of the base, by its IA3 vector from `adapter`: an output-scaled module's weight rows
// and bias, a feedforward module's weight columns (its bias stays). False when no vector applies.
bool ia3_merge_tensor(const spec::ModelShape& shape, const std::vector<spec::Module>& targets,
                      const std::vector<spec::Module>& feedforward, const SafetensorsFile& adapter,
                      const std::string& name, std::vector<float>& values);
// Whether ia3_merge_tensor changes `name`.
bool ia3_merges(const spec::ModelShape& shape, const std::vector<spec::Module>& targets,
                const std::vector<spec::Module>& feedforward, const std::string& name);

// linear_forward / linear_lora_intermediate / linear_backward of a layer with layer.ia3 (linear.hpp).
// Output-scaled: the forward saves z in scratch.ia3_z (when planned: training) for d l = Σ dy ⊙ z.
void ia3_linear_forward(Recorder& recorder, const Linear& layer, const BufferRange& x, const BufferRange& y,
                        uint32_t rows, const LinearScratch& scratch);
void ia3_linear_intermediate(Recorder& recorder, const Linear& layer, const BufferRange& x, uint32_t rows,
                             const LinearScratch& scratch);
void ia3_linear_backward(Recorder& recorder, const Linear& layer, const BufferRange& x, const BufferRange& dy,
                         const BufferRange& dx, bool accumulate_dx, uint32_t rows, const LinearScratch& scratch);

}  // namespace vkt::model
