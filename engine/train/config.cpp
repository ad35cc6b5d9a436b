#include "engine/train/config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/train/distill.hpp"
#include "engine/train/early_stopping.hpp"
#include "engine/train/lora_init_run.hpp"
#include "engine/train/mixed_precision.hpp"
#include "engine/train/preference.hpp"
#include "engine/train/prefix_tuning_run.hpp"
#include "engine/train/schedule.hpp"
#include "engine/train/soft_prompt_run.hpp"

namespace vkt::train {

namespace {

// The name table of each enum-valued option's type.
std::span<const NameEntry<spec::Method>> names_of(spec::Method) { return spec::method_names(); }
std::span<const NameEntry<kernels::WeightFormat>> names_of(kernels::WeightFormat) { return kernels::quant_names(); }
constexpr NameEntry<DTypeChoice> dtype_choice_table[] = {
    {DTypeChoice::auto_, "auto"}, {DTypeChoice::f32, "fp32"}, {DTypeChoice::f16, "fp16"}, {DTypeChoice::bf16, "bf16"}};
std::span<const NameEntry<DTypeChoice>> names_of(DTypeChoice) { return dtype_choice_table; }
std::span<const NameEntry<spec::Optimizer>> names_of(spec::Optimizer) { return spec::optimizer_names(); }
std::span<const NameEntry<spec::PeftType>> names_of(spec::PeftType) { return spec::peft_type_names(); }
std::span<const NameEntry<ScheduleType>> names_of(ScheduleType) { return schedule_type_names(); }

template <typename Enum>
std::string choices() {
  return enum_name_list(names_of(Enum{}), " | ");
}

}  // namespace

std::span<const NameEntry<DTypeChoice>> dtype_choice_names() { return dtype_choice_table; }

kernels::DType base_dtype(DTypeChoice choice) {
  return choice == DTypeChoice::f16    ? kernels::DType::f16
         : choice == DTypeChoice::bf16 ? kernels::DType::bf16
                                       : kernels::DType::f32;
}

void resolve_auto_dtype(TrainConfig& config, const std::string& torch_dtype) {
  if (config.dtype != DTypeChoice::auto_) return;
  config.dtype = config.method == spec::Method::full ? DTypeChoice::f32
                 : torch_dtype == "bfloat16"         ? DTypeChoice::bf16
                 : torch_dtype == "float16"          ? DTypeChoice::f16
                                                     : DTypeChoice::f32;
}

namespace {
// --qat: the fake-quantized forward of engine/model/qat.hpp supports plain LoRA and full finetuning.
void validate_qat(const TrainConfig& c) {
  using kernels::WeightFormat;
  if (c.qat == WeightFormat::f32) return;
  const std::string name = kernels::quant_name(c.qat);
  if (c.qat != WeightFormat::nf4 && c.qat != WeightFormat::int4 && c.qat != WeightFormat::int8 &&
      c.qat != WeightFormat::int4_asym)
    throw UserError("--qat " + name + " is not a format vktune quantize writes", "use --qat nf4, int4 or int8");
  if (c.method != spec::Method::full && c.peft_type != spec::PeftType::lora)
    throw UserError(
        std::string("--qat goes with --peft-type lora (or --method full), not ") + spec::peft_type_name(c.peft_type),
        "drop --qat, or use --peft-type lora");
  if (c.method != spec::Method::full && c.lora_dropout > 0)
    throw UserError("--qat fake-quantizes the merged W + s*B*A, which has no dropout path; --lora-dropout " +
                        nlohmann::json(c.lora_dropout).dump() + " contradicts it",
                    "use --lora-dropout 0 with --qat");
  // --bf16/--fp16 pass: fq(·) dequantizes 16-bit weights into its fp32 scratch, and the matmuls read
  // 16-bit activations with that fp32 weight (engine/model/qat.hpp).
}
}  // namespace

const std::vector<OptionSpec>& option_table() {
  using C = TrainConfig;
  static const std::vector<OptionSpec> table = {
      {"model",
       "HF model folder: config.json, model.safetensors (or shards), tokenizer.json; or a .gguf file "
       "(its quantized linear weights kept as stored: --quant gguf)",
       &C::model, true},
      {"data",
       "training data, JSONL: {\"text\"}, {\"prompt\",\"completion\"} or {\"messages\":[...]}; a mixture by ratio per "
       "epoch: A.jsonl:3,B.jsonl:1; --objective dpo/orpo: {\"prompt\",\"chosen\",\"rejected\"}, kto: "
       "{\"prompt\",\"completion\",\"label\"}",
       &C::data, true},
      {"output_dir", "where the adapter (or model), checkpoints, metrics.jsonl and run.json go", &C::output_dir, true},
      {"eval_data", "evaluation JSONL (same formats); several sets: task=T.jsonl,general=G.jsonl (eval_NAME_loss each)",
       &C::eval_data},
      {"adapter", "start from this PEFT adapter folder instead of a fresh one", &C::adapter},
      {"method", choices<spec::Method>(), &C::method},
      {"peft_type",
       choices<spec::PeftType>() +
           " (PEFT's families; dora: LoRA with PEFT's magnitude vector, use_dora; ia3: PEFT IA3Config defaults; "
           "bitfit: the q/k/v biases (Qwen2); prompt_tuning: --num-virtual-tokens trained embeddings before every "
           "sequence; p_tuning: those embeddings made by a trained MLP encoder (--encoder-hidden-size); "
           "prefix_tuning: --num-virtual-tokens trained keys/values before every sequence in every layer "
           "(no --packing), made by a trained MLP encoder with --prefix-projection)",
       &C::peft_type},
      {"quant", "frozen base format: " + choices<kernels::WeightFormat>() + " (qlora implies nf4)", &C::quant},
      {"double_quant", "NF4: quantize the absmax values too (QLoRA's double quantization)", &C::double_quant},
      {"qat",
       "quantization-aware training: nf4 | int4 | int8 (none: off). The forward uses every linear weight "
       "quantized then dequantized as `vktune quantize --format F` (block 64; nf4 without double quant) would "
       "store it: W with --method full, the merged W + s*B*A with LoRA/QLoRA; the backward passes gradients "
       "straight through (STE). Also with --bf16/--fp16. Not with --lora-dropout, --peft-type dora/ia3/bitfit",
       &C::qat},
      {"dtype",
       choices<DTypeChoice>() +
           " for base weights and embeddings (accumulation is fp32); auto: the model's torch_dtype (fp32 for --method "
           "full)",
       &C::dtype},
      {"bf16", "bf16 mixed precision: activations and their gradients stored in bf16 (arithmetic fp32)", &C::bf16},
      {"fp16", "fp16 mixed precision with dynamic loss scaling (torch GradScaler's rules)", &C::fp16},
      {"pure_bf16",
       "--method full --bf16 --optim adamw without an fp32 master copy: AdamW's update is rounded to bf16 "
       "stochastically (Philox from the seed, step and element: reproducible)",
       &C::pure_bf16},
      {"lora_r", "LoRA rank", &C::lora_r},
      {"lora_alpha", "LoRA alpha: the update is scaled by alpha/r (alpha/sqrt(r) with --use-rslora)", &C::lora_alpha},
      {"lora_dropout", "dropout on the LoRA input", &C::lora_dropout},
      {"target_modules",
       "comma list of q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj (Phi-3: qkv_proj,o_proj,gate_up_proj,"
       "down_proj), or all-linear",
       &C::target_modules},
      {"use_rslora", "rank-stabilized LoRA: scale alpha/sqrt(r)", &C::use_rslora},
      {"init_lora_weights",
       "PEFT's LoRA init: true (kaiming A, zero B), gaussian (A ~ N(0, 1/r^2)), pissa (A, B from the top-r SVD of "
       "the base, the base made the residual), pissa_niter_K (randomized SVD, K iterations), olora (QR); the saved "
       "adapter is converted to plain LoRA of rank 2r for the original base",
       &C::init_lora_weights},
      {"modules_to_save",
       "embed_tokens, lm_head and/or norms (input_layernorm, post_attention_layernorm, norm: LongLoRA's \"+\"), "
       "trained in full (fp32) beside LoRA (PEFT's modules_to_save, matched on name suffixes)",
       &C::modules_to_save},
      {"trainable_token_indices", "comma list of token ids whose embedding rows are trained (new chat markers)",
       &C::trainable_token_indices},
      {"layers_to_transform", "comma list of layer indices that get LoRA (PEFT's layers_to_transform; default: all)",
       &C::layers_to_transform},
      {"layers_pattern", "PEFT's layers_pattern: layers (model.layers.N, the default)", &C::layers_pattern},
      {"num_virtual_tokens",
       "--peft-type prompt_tuning: virtual tokens prepended to every sequence; prefix_tuning: prefix rows per layer",
       &C::num_virtual_tokens},
      {"prompt_tuning_init", "prompt_tuning: random (N(0, 1)) or text (the embeddings of --prompt-tuning-init-text)",
       &C::prompt_tuning_init},
      {"prompt_tuning_init_text", "prompt_tuning with --prompt-tuning-init text: the text (its tokens repeated or cut)",
       &C::prompt_tuning_init_text},
      {"encoder_hidden_size",
       "p_tuning: the prompt encoder's hidden size (0: the model's hidden size); prefix_tuning with "
       "--prefix-projection: its encoder's (0: the key/value width, PEFT's token_dim)",
       &C::encoder_hidden_size},
      {"prefix_projection",
       "prefix_tuning: train PEFT's prefix encoder (Embedding-Linear-Tanh-Linear) that makes the prefix; the "
       "adapter holds its output",
       &C::prefix_projection},
      {"encoder_reparameterization_type",
       "p_tuning: the prompt encoder, MLP (Linear-ReLU-Linear-ReLU-Linear) or LSTM (bidirectional, then "
       "Linear-ReLU-Linear)",
       &C::encoder_reparameterization_type},
      {"encoder_num_layers", "p_tuning: PEFT's encoder_num_layers (the LSTM's layers; MLP: recorded)",
       &C::encoder_num_layers},
      {"encoder_dropout",
       "p_tuning: PEFT's encoder_dropout (MLP: recorded, PEFT's MLP has none; LSTM: torch's dropout on each "
       "layer's output but the last, in training forwards only)",
       &C::encoder_dropout},
      {"rope_scaling", "extend the context: linear, dynamic, yarn or llama3 RoPE scaling (written into config.json)",
       &C::rope_scaling},
      {"rope_scaling_factor", "the RoPE scaling factor (new context / original context)", &C::rope_scaling_factor},
      {"original_max_position_embeddings", "yarn, llama3: the pretraining context (default: the model's)",
       &C::original_max_position_embeddings},
      {"low_freq_factor", "llama3 RoPE scaling's low_freq_factor", &C::low_freq_factor},
      {"high_freq_factor", "llama3 RoPE scaling's high_freq_factor", &C::high_freq_factor},
      {"beta_fast", "yarn RoPE scaling's beta_fast", &C::beta_fast},
      {"beta_slow", "yarn RoPE scaling's beta_slow", &C::beta_slow},
      {"attention_factor", "yarn RoPE scaling's attention_factor (default: 0.1 ln(factor) + 1)", &C::attention_factor},
      {"s2_attn",
       "LongLoRA's shifted sparse attention while training (groups of a quarter of the sequence, half of the heads "
       "shifted by half a group); evaluation and inference attend in full",
       &C::s2_attn},
      {"max_length", "truncate sequences to this many tokens (how many were cut is reported)", &C::max_length},
      {"packing", "pack several examples into each sequence (attention stays within an example)", &C::packing},
      {"shuffle", "shuffle the examples every epoch (with --seed)", &C::shuffle},
      {"prompt_loss_weight",
       "loss weight of prompt tokens; completion tokens weigh 1 (sft; distill: its CE and KL per token alike); "
       "dpo/orpo/kto and --fim-rate refuse any value but the default",
       &C::prompt_loss_weight},
      {"fim_rate",
       "fill-in-the-middle: rearrange this share of {\"text\"} examples into prefix-suffix-middle (bigcode's "
       "recipe, character-level cuts, seeded by --seed)",
       &C::fim_rate},
      {"fim_spm_rate", "fill-in-the-middle: share of FIM examples in SPM order (the rest PSM)", &C::fim_spm_rate},
      {"fim_tokens",
       "fill-in-the-middle tokens PRE,SUF,MID (default: the tokenizer's <fim_prefix>,<fim_suffix>,<fim_middle> or "
       "<|fim_prefix|>,<|fim_suffix|>,<|fim_middle|>)",
       &C::fim_tokens},
      {"objective",
       enum_name_list(objective_names(), " | ") +
           ": dpo/orpo train on {\"prompt\",\"chosen\",\"rejected\"} pairs as TRL's DPOTrainer/ORPOTrainer, kto on "
           "{\"prompt\",\"completion\",\"label\"} as KTOTrainer; distill learns from --teacher's logits on sft data",
       &C::objective},
      {"beta", "DPO: the KL strength (TRL's beta); ORPO: the odds-ratio weight lambda (TRL's beta)", &C::beta},
      {"loss_type", "DPO loss: " + enum_name_list(preference_loss_names(), " | "), &C::loss_type},
      {"desirable_weight", "KTO: weight of the losses of desirable (label true) examples", &C::desirable_weight},
      {"undesirable_weight", "KTO: weight of the losses of undesirable (label false) examples", &C::undesirable_weight},
      {"teacher", "--objective distill: the teacher model's HF folder (the student's tokenizer; any size)",
       &C::teacher},
      {"teacher_adapter", "--objective distill: a PEFT LoRA adapter applied to the teacher", &C::teacher_adapter},
      {"distill_temperature", "--objective distill: temperature T of the teacher's and student's softmax in the KL",
       &C::distill_temperature},
      {"distill_alpha",
       "--objective distill: loss = alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE, per token over the "
       "positions and prompt-loss weights CE uses (metrics.jsonl: distill/kl, distill/ce)",
       &C::distill_alpha},
      {"learning_rate", "peak learning rate", &C::learning_rate},
      {"loraplus_lr_ratio",
       "LoRA+: lora_B learns at learning_rate x this (PEFT's create_loraplus_optimizer; the paper suggests 16)",
       &C::loraplus_lr_ratio},
      {"lr_scheduler_type", choices<ScheduleType>(), &C::lr_scheduler_type},
      {"lr_scheduler_kwargs", "JSON object of schedule parameters, e.g. {\"num_cycles\": 2}", &C::lr_scheduler_kwargs},
      {"warmup_steps", "warmup steps; a value below 1 is a ratio of the total steps", &C::warmup_steps},
      {"max_steps", "total optimizer steps (overrides --num-train-epochs when > 0)", &C::max_steps},
      {"num_train_epochs", "epochs over the training data", &C::num_train_epochs},
      {"per_device_train_batch_size", "sequences per micro-batch", &C::per_device_train_batch_size},
      {"gradient_accumulation_steps", "micro-batches per optimizer step", &C::gradient_accumulation_steps},
      {"gradient_checkpointing", "save only layer inputs and recompute the rest in backward",
       &C::gradient_checkpointing},
      {"max_grad_norm", "clip the global gradient norm to this (0 disables)", &C::max_grad_norm},
      {"weight_decay", "decoupled weight decay (AdamW) or L2 (SGD)", &C::weight_decay},
      {"adam_beta1", "AdamW beta1", &C::adam_beta1},
      {"adam_beta2", "AdamW beta2", &C::adam_beta2},
      {"adam_epsilon", "AdamW epsilon", &C::adam_epsilon},
      {"momentum", "momentum for --optim momentum", &C::momentum},
      {"optim", choices<spec::Optimizer>(), &C::optim},
      {"offload_optimizer", "keep optimizer states in host memory the GPU reads over the bus", &C::offload_optimizer},
      {"paged_optimizer",
       "keep optimizer states on the device while the memory budget allows and page only the excess to host memory",
       &C::paged_optimizer},
      {"shard_optimizer",
       "under mpirun (ZeRO-1): each rank keeps the optimizer states (and a 16-bit full finetune's fp32 masters) of "
       "1/N of the trainable elements, updates that slice and all-gathers the weights",
       &C::shard_optimizer},
      {"device_memory", "the device memory budget to judge and page against, e.g. 24GiB (default: the device's)",
       &C::device_memory},
      {"seed", "seed for initialisation, shuffling and dropout", &C::seed},
      {"logging_steps", "write a metrics line every N optimizer steps", &C::logging_steps},
      {"eval_steps", "evaluate every N steps (0: only at the end)", &C::eval_steps},
      {"save_steps", "write checkpoint-N every N steps", &C::save_steps},
      {"save_total_limit", "keep at most this many checkpoints (0: all; the best one is kept too)",
       &C::save_total_limit},
      {"load_best_model_at_end",
       "at the end, write the best evaluated checkpoint's weights as the result (--save-steps a multiple of "
       "--eval-steps)",
       &C::load_best_model_at_end},
      {"metric_for_best_model", "metric that picks the best checkpoint: eval_loss (default) or eval_NAME_loss",
       &C::metric_for_best_model},
      {"greater_is_better", "a larger --metric-for-best-model is better (false for losses)", &C::greater_is_better},
      {"early_stopping_patience", "stop after N evaluations without improvement (0: off)", &C::early_stopping_patience},
      {"early_stopping_threshold", "how much the metric must improve to reset the patience",
       &C::early_stopping_threshold},
      {"resume_from_checkpoint", "a checkpoint-N folder, or 'latest' in --output-dir", &C::resume_from_checkpoint},
      {"overwrite_output_dir", "replace the run already in --output-dir (its checkpoints and files are deleted)",
       &C::overwrite_output_dir},
      {"ignore_config_mismatch", "resume even though the model, data or a hyperparameter differs from run.json's",
       &C::ignore_config_mismatch},
      {"no_preflight", "start even when the memory plan exceeds the device's budget", &C::no_preflight},
      {"headless", "no window: progress bar in the terminal", &C::headless},
      {"dashboard", "open the live dashboard window", &C::dashboard},
      {"plot", "render the dashboard to this PNG at the end", &C::plot},
      {"device",
       "Vulkan device index (vktune devices lists them; -1: the best one, or under mpirun the local rank modulo the "
       "device count)",
       &C::device},
      {"deterministic",
       "under mpirun: sum gradients in rank order (gather, sum, broadcast) instead of MPI_Allreduce, so the result is "
       "bit-identical to one process over the same micro-batches",
       &C::deterministic},
      {"ddp_bucket_cap_mb",
       "under mpirun: sum the gradients in buckets of this many MiB, each while the backward of earlier layers runs "
       "(as torch DDP's bucket_cap_mb; 0: one bucket after the whole backward)",
       &C::ddp_bucket_cap_mb},
  };
  return table;
}

namespace {

bool parse_bool(const std::string& value, bool& out) {
  std::string lower = value;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  if (lower == "true" || lower == "1" || lower == "yes" || lower == "on") {
    out = true;
    return true;
  }
  if (lower == "false" || lower == "0" || lower == "no" || lower == "off") {
    out = false;
    return true;
  }
  return false;
}

std::string flag_name(const std::string& name) {
  std::string flag = "--" + name;
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

}  // namespace

void set_option(TrainConfig& config, const OptionSpec& option, const std::string& value) {
  auto bad = [&](const char* expected) {
    throw UserError(flag_name(option.name) + " expects " + expected + ", got '" + value + "'",
                    "see `vktune train --help`");
  };
  std::visit(
      [&](auto field) {
        using T = std::remove_reference_t<decltype(config.*field)>;
        if constexpr (std::is_same_v<T, std::string>) {
          config.*field = value;
        } else if constexpr (std::is_enum_v<T>) {
          config.*field = enum_from_flag(names_of(T{}), value, flag_name(option.name));
        } else if constexpr (std::is_same_v<T, bool>) {
          if (!parse_bool(value, config.*field)) bad("true or false");
        } else if constexpr (std::is_same_v<T, int64_t>) {
          size_t used = 0;
          try {
            config.*field = std::stoll(value, &used);
          } catch (...) {
            bad("an integer");
          }
          if (used != value.size()) bad("an integer");
        } else {
          size_t used = 0;
          try {
            config.*field = std::stod(value, &used);
          } catch (...) {
            bad("a number");
          }
          if (used != value.size()) bad("a number");
          if (!std::isfinite(config.*field)) bad("a finite number");
        }
      },
      option.field);
}

static void apply_yaml_file_unguarded(TrainConfig& config, const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw UserError("cannot read the config file " + path, "check the --config path");
  } catch (const YAML::Exception& error) {
    throw UserError(path + ":" + std::to_string(error.mark.line + 1) + ": invalid YAML: " + error.msg,
                    "fix the YAML syntax at that line");
  }
  apply_yaml_mapping(config, root, path);
}

void apply_yaml_mapping(TrainConfig& config, const YAML::Node& root, const std::string& path) {
  if (root.IsNull()) return;
  if (!root.IsMap())
    throw UserError(path + ": the config file must be a mapping of option names to values",
                    "write one `name: value` per line, e.g. `lora_r: 16`");
  for (const auto& entry : root) {
    std::string key = entry.first.as<std::string>();
    std::string where = path + ":" + std::to_string(entry.first.Mark().line + 1);
    const auto& table = option_table();
    auto it = std::find_if(table.begin(), table.end(), [&](const OptionSpec& o) { return o.name == key; });
    if (it == table.end())
      throw UserError(where + ": unknown option '" + key + "'",
                      "option names are the flags of `vktune train --help` with underscores, e.g. lora_r");
    const YAML::Node& node = entry.second;
    std::string value;
    if (node.IsSequence()) {  // e.g. target_modules: [q_proj, v_proj]
      for (const auto& item : node) value += (value.empty() ? "" : ",") + item.as<std::string>();
    } else if (node.IsMap()) {  // e.g. lr_scheduler_kwargs: {num_cycles: 2}
      nlohmann::json object = nlohmann::json::object();
      for (const auto& item : node) {
        std::string text = item.second.as<std::string>();
        try {
          object[item.first.as<std::string>()] = nlohmann::json::parse(text);
        } catch (...) {
          object[item.first.as<std::string>()] = text;
        }
      }
      value = object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);  // YAML text need not be UTF-8
    } else if (node.IsScalar()) {
      value = node.as<std::string>();
    } else {
      throw UserError(where + ": option '" + key + "' has no value", "give it a value or remove the line");
    }
    try {
      set_option(config, *it, value);
    } catch (const UserError& error) {
      throw UserError(where + ": " + error.what(), error.hint());
    }
  }
}

void apply_yaml_file(TrainConfig& config, const std::string& path) {
  // A node of an unexpected kind (a mapping as a key, a list inside a list) makes yaml-cpp throw a
  // conversion error: it is the file's error, reported as such.
  try {
    apply_yaml_file_unguarded(config, path);
  } catch (const YAML::Exception& error) {
    throw UserError(path + ":" + std::to_string(error.mark.line + 1) + ": unexpected YAML here: " + error.msg,
                    "write one `name: value` per line; a value is a scalar, a list of scalars or a mapping");
  }
}

void validate_shard_optimizer(const TrainConfig& c) {
  if (!c.shard_optimizer) return;
  const spec::Optimizer rule = spec::optimizer_update_rule(c.optim);
  if (rule != spec::Optimizer::adamw && rule != spec::Optimizer::adamw_8bit && rule != spec::Optimizer::momentum &&
      rule != spec::Optimizer::sgd)
    throw UserError(std::string("--shard-optimizer splits AdamW's and momentum's states; --optim ") +
                        spec::optimizer_name(c.optim) + " keeps factored states that a slice would cut",
                    "use --optim adamw_torch, adamw_8bit (or their paged forms) with --shard-optimizer");
  if (c.pure_bf16)  // its stochastic rounding draws by element index within the whole tensor
    throw UserError("--shard-optimizer shards the fp32 master weights of --bf16; --pure-bf16 keeps none",
                    "use --bf16 (fp32 masters, sharded) with --shard-optimizer, or drop --shard-optimizer");
}

// Adafactor factors by HF's tensor shapes, which vktune knows for LoRA's A and B and for the
// weights of full finetuning; the extras' shapes (IA3 vectors, token rows, saved modules) not yet.
void validate_adafactor(const TrainConfig& c) {
  if (c.optim != spec::Optimizer::adafactor || c.method == spec::Method::full) return;
  if (c.peft_type != spec::PeftType::lora || !c.modules_to_save.empty() || !c.trainable_token_indices.empty())
    throw UserError("--optim adafactor trains LoRA's A and B (or --method full) here; not --peft-type " +
                        std::string(spec::peft_type_name(c.peft_type)) +
                        ", --modules-to-save or --trainable-token-indices yet",
                    "use --optim adamw_torch with them, or plain LoRA with adafactor");
}

void validate(const TrainConfig& c) {
  for (const auto& option : option_table()) {
    if (!option.required_somewhere) continue;
    const std::string& value = c.*std::get<std::string TrainConfig::*>(option.field);
    if (value.empty())
      throw UserError(flag_name(option.name) + " is required", "give it on the command line or in --config");
  }
  using kernels::WeightFormat;
  const std::string quant = kernels::quant_name(c.quant);
  if (c.method == spec::Method::full && c.quant != WeightFormat::f32)
    throw UserError("--method full trains every weight, which cannot stay quantized (--quant " + quant + ")",
                    "use --method lora or qlora with a quantized base, or --quant none");
  if (c.method == spec::Method::full && c.dtype != DTypeChoice::f32 && c.dtype != DTypeChoice::auto_)
    throw UserError("--method full keeps fp32 master weights; --dtype " +
                        std::string(enum_name(names_of(c.dtype), c.dtype)) + " is not supported with it yet",
                    "use --dtype fp32 for full finetuning (16-bit weights with fp32 master weights: --bf16 or --fp16), "
                    "or --method lora");
  validate_precision_flags(c);
  validate_shard_optimizer(c);
  validate_adafactor(c);
  if (c.method == spec::Method::qlora && c.quant != WeightFormat::f32 && c.quant != WeightFormat::nf4)
    throw UserError("--method qlora means an NF4 base; --quant " + quant + " contradicts it",
                    "use --method lora --quant " + quant + " for another quantized base");
  if (c.method == spec::Method::full && (!c.modules_to_save.empty() || !c.trainable_token_indices.empty()))
    throw UserError("--modules-to-save and --trainable-token-indices go with LoRA; --method full trains every weight",
                    "use --method lora or qlora with them, or drop them");
  validate_soft_prompt(c);
  validate_prefix_tuning(c);
  validate_lora_init(c);
  if (c.peft_type != spec::PeftType::lora && c.method == spec::Method::full)
    throw UserError(std::string("--peft-type ") + spec::peft_type_name(c.peft_type) +
                        " trains a PEFT adapter; --method full trains every weight",
                    "use --method lora (or qlora for an NF4 base) with it");
  if (c.peft_type != spec::PeftType::lora &&
      (!c.modules_to_save.empty() || !c.trainable_token_indices.empty() || !c.layers_to_transform.empty()))
    throw UserError(std::string("--peft-type ") + spec::peft_type_name(c.peft_type) +
                        " goes without --modules-to-save, --trainable-token-indices and --layers-to-transform here "
                        "(vktune trains that family's tensors alone)",
                    "drop those flags, or use --peft-type lora");
  if (!c.layers_pattern.empty() && c.layers_pattern != "layers")
    throw UserError(
        "--layers-pattern " + c.layers_pattern + " is unknown: Llama-family models name their blocks layers",
        "use --layers-pattern layers or leave it out");
  if (c.method == spec::Method::full && !c.layers_to_transform.empty())
    throw UserError("--layers-to-transform picks LoRA layers; --method full trains every weight",
                    "use --method lora or qlora with it");
  if (c.lora_r <= 0) throw UserError("--lora-r must be positive", "typical values are 8, 16, 32, 64");
  validate_qat(c);
  validate_preference(c);
  validate_distill(c);
  if (!(c.fim_rate >= 0 && c.fim_rate <= 1 && c.fim_spm_rate >= 0 && c.fim_spm_rate <= 1))
    throw UserError("--fim-rate and --fim-spm-rate must be in [0, 1]", "bigcode's recipe uses 0.5 and 0.5");
  if (c.fim_rate > 0 && is_preference(c))
    throw UserError("--fim-rate rearranges {\"text\"} data: it does not apply to --objective " + c.objective,
                    "drop --fim-rate");
  if (c.fim_rate > 0 && c.prompt_loss_weight != TrainConfig{}.prompt_loss_weight)
    throw UserError("--fim-rate trains every token of {\"text\"} examples: --prompt-loss-weight does not apply",
                    "drop --prompt-loss-weight (it weighs the prompt of prompt/completion or chat data)");
  if (c.lora_alpha <= 0)
    throw UserError("--lora-alpha must be positive, got " + nlohmann::json(c.lora_alpha).dump(),
                    "PEFT's default is 16; a common choice is 2 x --lora-r");
  if (c.lora_dropout < 0 || c.lora_dropout >= 1) throw UserError("--lora-dropout must be in [0, 1)", "e.g. 0.05");
  if (c.max_length <= 1) throw UserError("--max-length must be at least 2", "e.g. 512");
  if (c.per_device_train_batch_size <= 0) throw UserError("--per-device-train-batch-size must be positive", "e.g. 4");
  if (c.gradient_accumulation_steps <= 0) throw UserError("--gradient-accumulation-steps must be positive", "e.g. 4");
  if (c.max_steps == 0 || (c.max_steps < 0 && c.num_train_epochs <= 0))
    throw UserError("nothing to train: --max-steps is 0 or --num-train-epochs is not positive",
                    "set --max-steps N or --num-train-epochs E");
  if (c.learning_rate < 0) throw UserError("--learning-rate must not be negative", "e.g. 2e-4");
  if (!(c.loraplus_lr_ratio > 0))
    throw UserError("--loraplus-lr-ratio must be positive", "1 is plain LoRA; LoRA+ suggests 16 (with a lower lr)");
  if (c.method == spec::Method::full && c.loraplus_lr_ratio != 1)
    throw UserError("--loraplus-lr-ratio scales the LoRA B matrices' learning rate; --method full has none",
                    "use --method lora or qlora with it, or drop it");
  if (c.max_grad_norm < 0) throw UserError("--max-grad-norm must not be negative", "0 disables clipping");
  if (c.prompt_loss_weight < 0 || c.prompt_loss_weight > 1)
    throw UserError("--prompt-loss-weight must be in [0, 1]", "0 trains on completions only, 1 weighs prompts fully");
  if (c.logging_steps <= 0) throw UserError("--logging-steps must be positive", "e.g. 10");
  if (c.warmup_steps < 0) throw UserError("--warmup-steps must not be negative", "e.g. 100, or 0.03 for 3%");
  if (c.weight_decay < 0) throw UserError("--weight-decay must not be negative", "e.g. 0.01");
  if (c.adam_beta1 < 0 || c.adam_beta1 >= 1 || c.adam_beta2 < 0 || c.adam_beta2 >= 1)
    throw UserError("--adam-beta1 and --adam-beta2 must be in [0, 1)", "the defaults are 0.9 and 0.999");
  if (c.adam_epsilon <= 0) throw UserError("--adam-epsilon must be positive", "the default is 1e-8");
  if (c.momentum < 0 || c.momentum >= 1) throw UserError("--momentum must be in [0, 1)", "e.g. 0.9");
  if (c.save_steps < 0 || c.save_total_limit < 0 || c.eval_steps < 0)
    throw UserError("--save-steps, --save-total-limit and --eval-steps must not be negative", "0 turns each off");
  if (c.overwrite_output_dir && !c.resume_from_checkpoint.empty())
    throw UserError("--overwrite-output-dir and --resume-from-checkpoint contradict each other",
                    "resume the run in --output-dir, or replace it");
  if (c.headless && c.dashboard) throw UserError("--headless and --dashboard contradict each other", "pick one");
  best_model_settings(c);  // --load-best-model-at-end / --early-stopping-* with the eval and save steps
  try {
    auto kwargs = nlohmann::json::parse(c.lr_scheduler_kwargs);
    if (!kwargs.is_object()) throw std::runtime_error("not an object");
  } catch (const std::exception&) {
    throw UserError("--lr-scheduler-kwargs is not a JSON object: " + c.lr_scheduler_kwargs,
                    "e.g. --lr-scheduler-kwargs '{\"num_cycles\": 2}'");
  }
}

std::string to_json(const TrainConfig& config) {
  nlohmann::json json = nlohmann::json::object();
  for (const auto& option : option_table())
    std::visit(
        [&](auto field) {
          using T = std::remove_reference_t<decltype(config.*field)>;
          if constexpr (std::is_enum_v<T>)
            json[option.name] = enum_name(names_of(T{}), config.*field);
          else
            json[option.name] = config.*field;
        },
        option.field);
  // A path need not be UTF-8 on Linux; JSON must be: such bytes become U+FFFD instead of a throw.
  return json.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace vkt::train
