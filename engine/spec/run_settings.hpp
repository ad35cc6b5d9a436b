#pragma once
// What a run does, as far as sizes are concerned: the method, the optimizer and the settings the
// planner and the model both read. The name tables are the CLI's and YAML's spellings.
#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/base/names.hpp"
#include "engine/kernels/types.hpp"
#include "engine/spec/model_shape.hpp"

namespace vkt::spec {

using kernels::DType;
using kernels::WeightFormat;

enum class Method : uint8_t { lora, qlora, full };
// HF TrainingArguments' --optim names. paged_* are the same updates with states in host memory the
// GPU reads when the budget is short (--paged-optimizer): optimizer_update_rule and optimizer_is_paged
// split them.
// adafactor: HF's Adafactor as Trainer builds it (kernels/adafactor.hpp): factored second moment.
enum class Optimizer : uint8_t { adamw, sgd, momentum, adamw_8bit, paged_adamw_32bit, paged_adamw_8bit, adafactor };
// The PEFT family a non-full run trains (--peft-type; issue 17). dora, prefix_tuning and p_tuning
// are named (PEFT's spellings) but refused until they are built.
enum class PeftType : uint8_t { lora, dora, ia3, prompt_tuning, prefix_tuning, p_tuning, bitfit };
std::span<const NameEntry<PeftType>> peft_type_names();  // lora, dora, ia3, prompt_tuning, ...
const char* peft_type_name(PeftType type);
std::span<const NameEntry<Method>> method_names();        // the --method names: lora, qlora, full
std::span<const NameEntry<Optimizer>> optimizer_names();  // the --optim names: adamw_torch (adamw), sgd, ...
const char* method_name(Method method);
const char* optimizer_name(Optimizer optimizer);
// adamw(_8bit) 2, momentum 1, sgd 0; adafactor 0 (its rows + columns per matrix are sub-linear)
uint32_t optimizer_states_per_parameter(Optimizer optimizer);
Optimizer optimizer_update_rule(Optimizer optimizer);  // paged_adamw_32bit -> adamw, paged_adamw_8bit -> adamw_8bit
bool optimizer_is_paged(Optimizer optimizer);          // paged_*: states placed as --paged-optimizer places them

// What a run does, as far as memory is concerned (a subset of the trainer's flags).
struct RunSettings {
  Method method = Method::lora;
  WeightFormat base_format = WeightFormat::f32;  // format of the frozen linear weights
  bool double_quant = true;                      // nf4 only
  uint32_t quant_block = 64;
  // --qat: training's forward sees every linear weight (with LoRA: W + s·B·A) fake-quantized in this
  // format in blocks of qat_block (engine/model/qat.hpp); f32: off.
  WeightFormat qat_format = WeightFormat::f32;
  uint32_t qat_block = 64;
  DType dtype = DType::f32;  // embeddings, lm_head, dense base weights
  // Storage type of activations saved for backward and of activation gradients (--bf16 / --fp16,
  // issue 15); arithmetic stays fp32. LoRA parameters, master weights and optimizer states stay fp32.
  DType activation_dtype = DType::f32;
  // --method full with a 16-bit activation_dtype trains 16-bit weights (gradients stay fp32) with an
  // fp32 master copy beside the fp32 optimizer states; --pure-bf16 drops the master copy.
  bool pure_bf16 = false;
  uint32_t lora_r = 8;
  std::vector<Module> target_modules = {Module::q_proj, Module::v_proj};
  std::vector<uint32_t> lora_layers;  // PEFT layers_to_transform: the layers with LoRA (empty: all)
  // IA3 (peft_type ia3; target_modules is then empty): the modules with a learned vector, and those
  // of them scaled on their input (PEFT's feedforward_modules) rather than their output.
  PeftType peft_type = PeftType::lora;
  std::vector<Module> ia3_targets, ia3_feedforward;
  // Soft prompts (prompt_tuning): the first virtual_tokens cells of every row (counted in seq_len)
  // take the trained prompt_embeddings (virtual_tokens, hidden) instead of a token's embedding.
  uint64_t virtual_tokens = 0;
  // P-tuning (p_tuning) while training: the hidden size of the MLP encoder whose output is the prompt
  // (PEFT's encoder_hidden_size; engine/plan/prompt_encoder_plan.hpp); 0: no encoder, the prompt as saved.
  uint64_t prompt_encoder_hidden = 0;
  // P-tuning with PEFT's LSTM encoder: the bidirectional LSTM's layer count before the MLP head
  // (encoder_num_layers); 0: the MLP encoder.
  uint32_t prompt_encoder_lstm_layers = 0;
  // Prefix tuning: prefix_tokens trained key/value rows per layer before every sequence (no cells).
  uint64_t prefix_tokens = 0;
  // Prefix tuning with PEFT's prefix_projection: the hidden size of the MLP that makes the prefix's
  // keys/values while training (encoder_hidden_size); 0: the prefix trained as saved.
  uint64_t prefix_projection_hidden = 0;
  bool adapts_layer(uint64_t layer) const {
    return lora_layers.empty() || std::find(lora_layers.begin(), lora_layers.end(), layer) != lora_layers.end();
  }
  uint64_t batch = 1;      // per-device micro-batch
  uint64_t seq_len = 512;  // max length
  bool gradient_checkpointing = false;
  Optimizer optimizer = Optimizer::adamw;
  bool offload_optimizer = false;  // every optimizer state in host memory
  // --paged-optimizer: states stay on the device while the plan's device bytes fit
  // paging_budget_bytes; only the excess moves to host memory (plan::make_plan decides which).
  bool page_optimizer = false;
  uint64_t paging_budget_bytes = 0;  // 0: unknown, every state on the device
  // --shard-optimizer (ZeRO-1) over this many ranks: each holds the optimizer states of a 1/N slice
  // of the trainable elements (1: every rank holds all of them).
  uint32_t optimizer_shards = 1;
  float lora_dropout = 0;
  bool training = true;                       // false: inference/generation only
  uint64_t kv_cache_tokens = 0;               // generation: cache length per sequence (0: none)
  bool with_adapter = false;                  // inference with LoRA weights (no gradients)
  uint64_t logits_chunk_bytes = 64ull << 20;  // cross-entropy works on row chunks of at most this
  // Full finetuning of a pruned model (pruning.json beside it): each linear weight gets a
  // prune_mask.<name> (1 kept, 0 pruned) that the optimizer sequence multiplies in after every step.
  bool keep_pruned_zeros = false;
  // PEFT's extras next to LoRA (training, or inference with the adapter): modules_to_save trains a
  // whole fp32 copy of embed_tokens / lm_head; trainable_token_indices trains only these rows of
  // embed_tokens (and of a tied lm_head).
  bool save_embed_tokens = false;                 // "embed_tokens" in modules_to_save
  bool save_lm_head = false;                      // "lm_head" in modules_to_save
  std::vector<uint32_t> trainable_token_indices;  // ids whose embedding rows are trained
  // modules_to_save entries naming norms (LongLoRA's "+"): input_layernorm, post_attention_layernorm,
  // norm, ... matched as PEFT matches them, on module-name suffixes (modules_to_save.hpp).
  std::vector<std::string> saved_norms;
  // --s2-attn: training attends within groups of s2_group tokens (kernels/s2_attention.hpp); 0: off.
  uint32_t s2_group = 0;
  // base_format gguf (a GGUF base kept in its own types): (layers * module_count) the format of
  // each linear weight, layer-major in Module order (ggml block formats, or f32/f16/bf16).
  std::vector<WeightFormat> gguf_formats;
};

// The stored format of layer `layer`'s `module` weight: base_format, or its entry of gguf_formats.
WeightFormat linear_weight_format(const RunSettings& settings, uint64_t layer, Module module);
// base_format's name; for gguf with the mix of stored types: "gguf (12 x q4_k, 2 x q6_k)".
std::string base_format_text(const RunSettings& settings);

}  // namespace vkt::spec
