#pragma once
// --init-lora-weights in a training run (engine/model/lora_init.hpp does the work): which runs may use
// which initialisation, checked before the model loads.
#include "engine/train/config.hpp"

namespace vkt::train {

// UserError unless `c.init_lora_weights` is one of PEFT's names vktune builds and suits the run:
// a LoRA run (PEFT's LoraConfig field; --method full, other --peft-type families and --adapter have
// nothing to initialise), PiSSA not on a quantized base (PEFT refuses it), OLoRA on an NF4 base at most.
void validate_lora_init(const TrainConfig& c);

}  // namespace vkt::train
