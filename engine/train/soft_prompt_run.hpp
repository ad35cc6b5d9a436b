#pragma once
// A training run of a soft prompt (--peft-type prompt_tuning, engine/model/soft_prompt.hpp): its
// flags checked, its adapter settings, and PEFT's initialisation (random, or the embeddings of a text).
#include <cstdint>

#include "engine/model/session.hpp"
#include "engine/text/tokenizer.hpp"
#include "engine/train/config.hpp"

namespace vkt::train {

// UserError for soft-prompt flags that do not fit: a count out of range, an unknown init, text init
// without its text, packing (PEFT prepends the prompt to each sequence), preference objectives.
void validate_soft_prompt(const TrainConfig& config);
// The virtual tokens a run prepends to every row (0 unless --peft-type prompt_tuning).
uint32_t virtual_tokens(const TrainConfig& config);
// --num-virtual-tokens and the init flags into `lora`, in PEFT's config spelling; `model` is the
// tokenizer_name_or_path a text init records.
void set_soft_prompt(const TrainConfig& config, model::LoraSettings& lora);
// A fresh prompt: N(0, 1) from --seed, or the embedding rows of the init text's tokens (BOS included
// as the tokenizer adds it, as PEFT's tokenizer(text) does), repeated or cut to N.
void init_soft_prompt(vk::Context& context, model::ModelSession& session, const model::LoraSettings& lora,
                      const text::Tokenizer& tokenizer, uint64_t seed);

}  // namespace vkt::train
