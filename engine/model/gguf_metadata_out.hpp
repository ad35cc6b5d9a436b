#pragma once
// What a GGUF model file says besides its tensors, as llama.cpp's convert_hf_to_gguf.py writes it
// (the inverse of gguf_model.hpp / gguf_tokenizer.hpp):
//   general.architecture / type / name / file_type / quantization_version,
//   <arch>.vocab_size, context_length, embedding_length, feed_forward_length, block_count,
//   attention.head_count / head_count_kv / key_length / value_length / layer_norm_rms_epsilon,
//   rope.dimension_count / freq_base (/ scaling.type, scaling.factor for linear RoPE scaling),
//   tokenizer.ggml.model "gpt2", pre, tokens, token_type, merges, bos/eos/padding ids,
//   add_bos_token / add_eos_token, tokenizer.chat_template.
// Architectures: llama (also Mistral, written as llama as the converter does), qwen2, qwen3.
#include <filesystem>
#include <string>

#include "engine/model/config.hpp"
#include "engine/model/gguf_writer.hpp"

namespace vkt::model {

// "llama" for Llama and Mistral, "qwen2", "qwen3"; UserError naming `where` for the others.
std::string gguf_architecture(const ModelConfig& config, const std::string& where);
// Whether llama.cpp's converter interleaves the rotary halves of q_proj/k_proj rows (llama).
bool gguf_permutes_qk(const std::string& architecture);
// (the rows themselves: permute_qk_rows, engine/model/gguf_model.hpp)

// general.* and the <arch>.* hyperparameters of `config`. `file_type` is llama_ftype (0 all F32,
// 1 F16, 2 Q4_0, 7 Q8_0, 15 Q4_K_M, 32 BF16).
void set_gguf_hyperparameters(GgufWriter& writer, const ModelConfig& config, const std::string& name,
                              uint32_t file_type);
// tokenizer.* of `model`: a GGUF file's keys copied as they are, or a folder's tokenizer.json
// (byte-level BPE with a pre-tokenizer llama.cpp knows) and tokenizer_config.json; UserError naming
// the file for tokenizers llama.cpp would not load as gpt2.
void set_gguf_tokenizer(GgufWriter& writer, const std::filesystem::path& model, const ModelConfig& config);

}  // namespace vkt::model
