#pragma once
// A training run of a soft prompt (--peft-type prompt_tuning or p_tuning, engine/model/soft_prompt.hpp,
// p_tuning.hpp): its flags checked, its adapter settings, and PEFT's initialisation (random, or the
// embeddings of a text; P-tuning: its encoder's parameters), and P-tuning's encoder in checkpoints.
#include <cstdint>
#include <filesystem>

#include "engine/model/session.hpp"
#include "engine/text/tokenizer.hpp"
#include "engine/train/config.hpp"

namespace vkt::train {

// UserError for soft-prompt flags that do not fit: a count out of range, an unknown init, text init
// without its text (or with p_tuning), packing (PEFT prepends the prompt to each sequence), preference
// objectives, an encoder other than MLP or LSTM, LSTM's encoder dropout (not built).
void validate_soft_prompt(const TrainConfig& config);
// The virtual tokens a run prepends to every row (0 unless --peft-type prompt_tuning or p_tuning).
uint32_t virtual_tokens(const TrainConfig& config);
// P-tuning's encoder hidden size: --encoder-hidden-size, or the model's hidden size (0 without a model,
// or for another --peft-type).
uint64_t prompt_encoder_hidden(const TrainConfig& config, const spec::ModelShape* model);
// P-tuning's LSTM encoder: its layer count (--encoder-num-layers); 0 for the MLP one or another --peft-type.
uint32_t prompt_encoder_lstm_layers(const TrainConfig& config);
// --num-virtual-tokens and the init flags into `lora`, in PEFT's config spelling; `model` is the
// tokenizer_name_or_path a text init records. P-tuning: the encoder's fields (hidden `encoder_hidden`).
void set_soft_prompt(const TrainConfig& config, model::LoraSettings& lora, uint64_t encoder_hidden = 0);
// A fresh prompt: N(0, 1) from --seed, or the embedding rows of the init text's tokens (BOS included
// as the tokenizer adds it, as PEFT's tokenizer(text) does), repeated or cut to N. P-tuning: PEFT's
// init of the encoder, and the prompt it makes.
void init_soft_prompt(vk::Context& context, model::ModelSession& session, const model::LoraSettings& lora,
                      const text::Tokenizer& tokenizer, uint64_t seed);
// P-tuning's encoder in a checkpoint folder (PEFT's adapter holds its output only), by buffer name;
// nothing for other runs. Loading runs the encoder, so prompt_embeddings is its output again.
inline constexpr const char* prompt_encoder_file = "prompt_encoder.safetensors";
void save_prompt_encoder(vk::Context& context, const model::BufferSet& buffers, const spec::ModelShape& shape,
                         const model::LoraSettings& lora, const std::filesystem::path& directory);
void load_prompt_encoder(vk::Context& context, model::BufferSet& buffers, const spec::ModelShape& shape,
                         const model::LoraSettings& lora, const std::filesystem::path& directory);

}  // namespace vkt::train
