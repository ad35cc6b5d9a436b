#pragma once
// The trainer's configuration: HF TrainingArguments/PEFT names. Every option is listed once
// in option_table(): the command line (dashes), the YAML file given by --config (the same
// names with underscores), run.json and --help all come from that table. Flags override the file.
#include <cstdint>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "engine/kernels/types.hpp"
#include "engine/spec/model_shape.hpp"
#include "engine/spec/run_settings.hpp"
#include "engine/train/schedule.hpp"

namespace YAML {
class Node;
}

namespace vkt::train {

// --dtype: auto takes the model's torch_dtype (transformers 5 loads that way), or a fixed type.
enum class DTypeChoice { auto_, f32, f16, bf16 };
std::span<const NameEntry<DTypeChoice>> dtype_choice_names();

struct TrainConfig {
  // Files.
  std::string model;  // HF model folder (config.json, *.safetensors, tokenizer.json)
  std::string data;   // training JSONL
  std::string output_dir;
  std::string eval_data;  // optional evaluation JSONL
  std::string adapter;    // optional PEFT adapter to start from
  // Method.
  spec::Method method = spec::Method::lora;
  kernels::WeightFormat quant = kernels::WeightFormat::f32;  // frozen base; f32 is --quant none
  bool double_quant = true;                                  // nf4: quantize the absmax values too (QLoRA)
  kernels::WeightFormat qat = kernels::WeightFormat::f32;    // --qat: fake-quantized forward (f32: none)
  DTypeChoice dtype = DTypeChoice::auto_;                    // base weights and embeddings
  // Mixed precision (HF TrainingArguments' bf16 / fp16): activations and activation gradients stored
  // in 16 bits (spec::RunSettings::activation_dtype); --method full keeps 16-bit weights with fp32
  // master weights, or none with --pure-bf16. fp16 runs scale the loss (loss_scaler.hpp).
  bool bf16 = false;
  bool fp16 = false;
  bool pure_bf16 = false;
  spec::PeftType peft_type = spec::PeftType::lora;  // the PEFT family a non-full run trains
  // LoRA (PEFT names and defaults).
  int64_t lora_r = 8;
  double lora_alpha = 16;
  double lora_dropout = 0;
  std::string target_modules;  // empty: PEFT's default for the architecture (q_proj,v_proj; Phi-3 qkv_proj)
  bool use_rslora = false;
  // PEFT's init_lora_weights: true (Kaiming-uniform A, zero B) | gaussian | pissa | pissa_niter_K | olora.
  std::string init_lora_weights = "true";
  std::string modules_to_save;          // PEFT modules_to_save: "embed_tokens,lm_head" (trained in full)
  std::string trainable_token_indices;  // PEFT trainable_token_indices: "5,9" (only these embedding rows)
  std::string layers_to_transform;      // PEFT layers_to_transform: "0,1" (LoRA only in these layers; empty: all)
  std::string layers_pattern;           // PEFT layers_pattern: "layers" (the only block list Llama-family models have)
  // Soft prompts (--peft-type prompt_tuning; PEFT's PromptTuningConfig names).
  int64_t num_virtual_tokens = 20;            // virtual tokens prepended to every sequence
  std::string prompt_tuning_init = "random";  // random (N(0, 1)) | text (the embeddings of the init text's tokens)
  std::string prompt_tuning_init_text;        // text: repeated or cut to num_virtual_tokens tokens, as PEFT does
  // P-tuning (--peft-type p_tuning; PEFT's PromptEncoderConfig names): the encoder that makes the prompt.
  int64_t encoder_hidden_size = 0;                      // 0: the model's hidden size (PEFT requires a value)
  std::string encoder_reparameterization_type = "MLP";  // MLP (LSTM: not built yet)
  int64_t encoder_num_layers = 2;                       // LSTM only (PEFT's MLP ignores it)
  double encoder_dropout = 0;                           // LSTM only (PEFT's MLP has no dropout)
  // Prefix tuning (--peft-type prefix_tuning; PEFT's PrefixTuningConfig): prefix_projection trains an
  // MLP (encoder_hidden_size) that makes the prefix, as PEFT's PrefixEncoder does.
  bool prefix_projection = false;
  // Long context (long_context.hpp): RoPE scaling with HF's rope_parameters names; empty: the model's own.
  std::string rope_scaling;                          // linear | dynamic | yarn | llama3
  double rope_scaling_factor = 0;                    // factor (required with rope_scaling)
  int64_t original_max_position_embeddings = 0;      // yarn, llama3 (0: the model's max_position_embeddings)
  double low_freq_factor = 1, high_freq_factor = 4;  // llama3
  double beta_fast = 32, beta_slow = 1;              // yarn
  double attention_factor = 0;                       // yarn: cos/sin factor (0: HF's 0.1 ln(factor) + 1)
  bool s2_attn = false;  // LongLoRA's shifted sparse attention in training (groups of max length / 4)
  // Data.
  int64_t max_length = 1024;  // TRL SFTConfig default
  bool packing = false;
  bool shuffle = true;
  double prompt_loss_weight = 0.1;  // weight of prompt tokens in the loss (completion tokens: 1)
  double fim_rate = 0;              // fill-in-the-middle: share of {"text"} examples rearranged (fim.hpp)
  double fim_spm_rate = 0.5;        // share of those in SPM order (else PSM)
  std::string fim_tokens;           // "PRE,SUF,MID" (empty: the tokenizer's <fim_prefix>... or <|fim_prefix|>...)
  // Preference finetuning (preference.hpp; TRL's names and defaults).
  std::string objective = "sft";      // sft | dpo | orpo | kto
  double beta = 0.1;                  // DPOConfig.beta; ORPOConfig.beta (the paper's lambda)
  std::string loss_type = "sigmoid";  // DPOConfig.loss_type: sigmoid | ipo | hinge
  double desirable_weight = 1;        // KTOConfig.desirable_weight
  double undesirable_weight = 1;      // KTOConfig.undesirable_weight
  // Knowledge distillation (--objective distill; distill.hpp).
  std::string teacher;             // the teacher's HF folder
  std::string teacher_adapter;     // a PEFT adapter on the teacher (empty: none)
  double distill_temperature = 2;  // T of both softmaxes in the KL term
  double distill_alpha = 0.5;      // loss = alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE
  // Optimisation (HF TrainingArguments defaults).
  double learning_rate = 5e-5;
  double loraplus_lr_ratio = 1;  // LoRA+: lora_B learns at learning_rate * this (1: plain LoRA)
  ScheduleType lr_scheduler_type = ScheduleType::linear;
  std::string lr_scheduler_kwargs = "{}";  // JSON object, e.g. {"num_cycles": 2}
  double warmup_steps = 0;                 // a value < 1 is a ratio of max steps
  int64_t max_steps = -1;
  double num_train_epochs = 3;
  int64_t per_device_train_batch_size = 8;
  int64_t gradient_accumulation_steps = 1;
  bool gradient_checkpointing = false;
  double max_grad_norm = 1.0;
  double weight_decay = 0;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_epsilon = 1e-8;
  double momentum = 0.9;  // --optim momentum
  spec::Optimizer optim = spec::Optimizer::adamw;
  bool offload_optimizer = false;
  bool paged_optimizer = false;  // states on the device while the budget allows, paged to host beyond it
  bool shard_optimizer = false;  // ZeRO-1 under mpirun: each rank keeps the states of 1/N of the elements
  std::string device_memory;     // e.g. "24GiB": the budget to judge and page against (empty: the device's)
  int64_t seed = 42;
  // Run control.
  int64_t logging_steps = 10;
  int64_t eval_steps = 0;  // 0: evaluate only at the end (when --eval-data is given)
  int64_t save_steps = 500;
  int64_t save_total_limit = 0;  // 0: keep all checkpoints
  // Best model and early stopping (HF TrainingArguments / EarlyStoppingCallback; early_stopping.hpp).
  bool load_best_model_at_end = false;
  std::string metric_for_best_model;    // empty: eval_loss
  bool greater_is_better = false;       // every metric vktune evaluates is a loss
  int64_t early_stopping_patience = 0;  // 0: off
  double early_stopping_threshold = 0;
  std::string resume_from_checkpoint;   // a checkpoint-N folder or "latest"
  bool overwrite_output_dir = false;    // replace another run in output_dir (HF's name)
  bool ignore_config_mismatch = false;  // resume although run.json's identity differs
  bool no_preflight = false;            // start although the plan exceeds the device budget
  bool headless = false;
  bool dashboard = false;
  std::string plot;     // write the dashboard as a PNG here at the end
  int64_t device = -1;  // Vulkan device index (-1: best)
  // Not an option: under mpirun, train on this rank alone (a sweep trial), not data parallel.
  bool single_process = false;

  bool deterministic = false;     // data parallel: sum gradients in rank order (distributed.hpp)
  double ddp_bucket_cap_mb = 25;  // data parallel: MiB of gradients per bucket summed during the backward
};

// One option: its name (underscores; the flag uses dashes), help text, and where it lives. Named
// values (method, quant, dtype, optim, lr_scheduler_type) are parsed into their enums here, at the
// edge, with the enum's name table; --help lists those names.
struct OptionSpec {
  std::string name;
  std::string help;
  std::variant<std::string TrainConfig::*, bool TrainConfig::*, int64_t TrainConfig::*, double TrainConfig::*,
               spec::Method TrainConfig::*, kernels::WeightFormat TrainConfig::*, DTypeChoice TrainConfig::*,
               spec::Optimizer TrainConfig::*, ScheduleType TrainConfig::*, spec::PeftType TrainConfig::*>
      field;
  bool required_somewhere = false;  // must be set by a flag or the YAML file
};
const std::vector<OptionSpec>& option_table();

// Applies a YAML file's keys; UserError naming the file, the line and the key on unknown keys or
// values of the wrong type.
void apply_yaml_file(TrainConfig& config, const std::string& path);
// The same for a YAML mapping already parsed (`path` names it in errors; `vktune sweep`'s train: key).
void apply_yaml_mapping(TrainConfig& config, const YAML::Node& root, const std::string& path);
// Sets one option from its text value (as the command line gives it); UserError on bad values.
void set_option(TrainConfig& config, const OptionSpec& option, const std::string& value);
// --dtype auto -> the model's torch_dtype ("bfloat16", "float16"; fp32 otherwise, and always for
// --method full, whose master weights are fp32). A fixed --dtype stays.
void resolve_auto_dtype(TrainConfig& config, const std::string& torch_dtype);
// The storage type --dtype stands for (auto not yet resolved: fp32).
kernels::DType base_dtype(DTypeChoice choice);
// Checks values and their combinations; UserError with a hint on the first problem.
void validate(const TrainConfig& config);
// --shard-optimizer's combinations (also checked by `vktune plan`).
void validate_shard_optimizer(const TrainConfig& config);
// The resolved configuration as a JSON object (for run.json).
std::string to_json(const TrainConfig& config);

}  // namespace vkt::train
