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
}

void refuse_unwired_precision(const TrainConfig& config) {
  if (!config.bf16 && !config.fp16) return;
  const std::string flag = config.bf16 ? "--bf16" : "--fp16";
  if (config.method == spec::Method::full)
    throw UserError("--method full " + flag + (config.pure_bf16 ? " --pure-bf16" : "") +
                        " (16-bit weights with fp32 master weights and states) cannot train yet",
                    "16-bit weights with master copies are not wired yet (LoRA and QLoRA train with " + flag +
                        "); `vktune plan --method full " + flag +
                        "` already shows the memory. Train fully in fp32 meanwhile (leave " + flag + " out)");
  // LoRA and QLoRA store activations and their gradients in 16 bits (engine/kernels/act_storage.hpp);
  // IA3's saved products and BitFit's bias-gradient sums are fp32-only kernels so far.
  if (config.peft_type != spec::PeftType::lora)
    throw UserError(std::string("--peft-type ") + spec::peft_type_name(config.peft_type) + " " + flag +
                        " cannot train yet: its kernels store fp32 activations only",
                    "train it in fp32 (leave " + flag + " out), or use --peft-type lora with " + flag);
}

}  // namespace vkt::train
