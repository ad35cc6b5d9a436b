#include "engine/train/mixed_precision.hpp"

#include "engine/base/error.hpp"

namespace vkt::train {

kernels::DType activation_dtype(const TrainConfig& config) {
  return config.bf16 ? kernels::DType::bf16 : config.fp16 ? kernels::DType::f16 : kernels::DType::f32;
}

void validate_precision_flags(const TrainConfig& config) {
  if (config.bf16 && config.fp16)
    throw UserError("--bf16 and --fp16 contradict each other", "pick one (bf16 needs no loss scaling)");
  if (config.pure_bf16 && (!config.bf16 || config.method != spec::Method::full))
    throw UserError("--pure-bf16 drops the fp32 master weights of --method full --bf16",
                    "use it with --method full --bf16, or leave it out");
  if (config.pure_bf16 && config.optim != spec::Optimizer::adamw)
    throw UserError(std::string("--pure-bf16 rounds AdamW's update stochastically; --optim ") +
                        spec::optimizer_name(config.optim) + " has no such kernel",
                    "use --optim adamw (adamw_torch) with --pure-bf16");
}

void refuse_unwired_precision(const TrainConfig& config) {
  if (!config.bf16 && !config.fp16) return;
  const std::string flag = config.bf16 ? "--bf16" : "--fp16";
  // Full finetuning: 16-bit weights with fp32 master weights and states (engine/train/sixteen_bit_weights.hpp).
  if (config.method == spec::Method::full) return;
  // LoRA and QLoRA store activations and their gradients in 16 bits (engine/kernels/act_storage.hpp);
  // IA3's saved products and BitFit's bias-gradient sums are fp32-only kernels so far.
  if (config.peft_type != spec::PeftType::lora)
    throw UserError(std::string("--peft-type ") + spec::peft_type_name(config.peft_type) + " " + flag +
                        " cannot train yet: its kernels store fp32 activations only",
                    "train it in fp32 (leave " + flag + " out), or use --peft-type lora with " + flag);
}

}  // namespace vkt::train
