#pragma once
// --bf16 / --fp16 / --pure-bf16 (HF TrainingArguments' names): what they set in the run's settings,
// and the refusal of the training paths that are not wired yet.
#include "engine/kernels/types.hpp"
#include "engine/train/config.hpp"

namespace vkt::train {

// The storage type of activations and activation gradients: bf16, fp16 or fp32 (neither flag).
kernels::DType activation_dtype(const TrainConfig& config);

// --bf16 with --fp16, or --pure-bf16 without --method full --bf16 --optim adamw: UserError (train and plan).
void validate_precision_flags(const TrainConfig& config);

// UserError for the 16-bit paths not wired yet: --peft-type ia3/bitfit with --bf16/--fp16 (their
// kernels store fp32 activations). LoRA, QLoRA and full finetuning pass.
void refuse_unwired_precision(const TrainConfig& config);

}  // namespace vkt::train
