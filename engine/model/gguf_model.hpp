#pragma once
// A GGUF file (llama.cpp's format, engine/model/gguf.hpp) as a model vktune loads: its metadata as
// the equivalent Hugging Face config.json (parsed by parse_model_config, so validation stays in one
// place) and its tensors under their HF names.
//
// Architectures: `llama` (Llama, Mistral, SmolLM2, TinyLlama: LlamaForCausalLM), `qwen2`, `qwen3`,
// `gemma2`, `gemma3`, `phi3` (their metadata and norms: engine/model/gguf_families.hpp).
// Tensor names: token_embd, output_norm, output (absent: tied embeddings), blk.N.{attn_q, attn_k,
// attn_v, attn_output, ffn_gate, ffn_up, ffn_down, attn_norm, ffn_norm, attn_q_norm, attn_k_norm};
// Phi-3 attn_qkv / ffn_up (fused); Gemma post_attention_norm, ffn_norm (pre-feedforward), post_ffw_norm.
// llama.cpp's converter permutes the rows of llama's attn_q/attn_k (and their biases) within each
// head (LlamaModel.permute: the two rotary halves interleaved, for ggml's adjacent-pair RoPE); the
// source undoes it. A `rope_freqs` tensor (Llama 3.1's rope scaling, which the converter writes as
// per-frequency factors instead of metadata) becomes ModelConfig::rope_frequency_factors.
//
// Every GGUF tensor type of engine/quant/ggml_blocks.hpp is read. By default (--quant gguf, which a
// GGUF model gets unless the run asks for another format) the seven linear weights of each layer
// keep their stored blocks on the device and the matmul dequantizes them in its load stage
// (read_raw_rows); embeddings, lm_head, norms and biases, and every tensor of a run with another
// --quant or full finetuning, are dequantized to fp32 on load and converted as safetensors weights are.
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/model/config.hpp"
#include "engine/model/gguf.hpp"
#include "engine/model/tensor_source.hpp"

namespace vkt::model {

// A regular file whose first four bytes are "GGUF".
bool is_gguf_file(const std::filesystem::path& path);

// The config.json document equivalent to the file's metadata; UserError naming the file and the key
// for an architecture or feature vktune does not load.
nlohmann::json gguf_hf_config(const GgufFile& file);
// parse_model_config of that document, plus the rope_freqs factors.
ModelConfig gguf_model_config(const GgufFile& file);

// The file's tensors under HF names (model.embed_tokens.weight, model.layers.N.self_attn.q_proj.weight...).
class GgufTensorSource final : public TensorSource {
 public:
  GgufTensorSource(const std::filesystem::path& path, const ModelConfig& config);
  std::string where() const override { return file_.path().string(); }
  bool contains(const std::string& name) const override;
  uint64_t element_count(const std::string& name) const override;
  std::vector<uint64_t> shape(const std::string& name) const override;
  void read_rows(const std::string& name, uint64_t first_row, uint64_t cols, std::span<float> out) const override;
  std::vector<float> read(const std::string& name) const override;
  const GgufFile& file() const { return file_; }
  // For keeping the blocks on the device (--quant gguf): the stored ggml type of `name`, and rows
  // [first_row, first_row + rows) of it seen as (*, cols) exactly as stored (raw blocks; llama's
  // Q/K rows un-permuted, which moves whole rows only).
  quant::GgmlType stored_type(const std::string& name) const { return tensor(name).type; }
  std::vector<uint8_t> read_raw_rows(const std::string& name, uint64_t first_row, uint64_t rows, uint64_t cols) const;

 private:
  const GgufTensor* find(const std::string& hf_name) const;
  const GgufTensor& tensor(const std::string& hf_name) const;
  GgufFile file_;
  std::string architecture_;  // general.architecture
  bool permuted_qk_;          // llama: attn_q/attn_k rows interleaved by the converter
  int64_t heads_, kv_heads_;
};

// The q_proj/k_proj row order of llama.cpp's converter (LlamaModel.permute, for ggml's adjacent-pair
// RoPE): GGUF row h*d + 2j + s holds HF row h*d + s*d/2 + j (s the rotary half, j the pair).
// to_gguf: HF rows -> GGUF rows; else back. `values` is (rows, values.size() / rows).
std::vector<float> permute_qk_rows(const std::vector<float>& values, uint64_t rows, int64_t heads, bool to_gguf);

// "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight"; empty when the name has no GGUF
// counterpart. `architecture` (general.architecture) matters for Gemma's norm names.
std::string gguf_tensor_name(const std::string& hf_name, std::string_view architecture = "llama");

}  // namespace vkt::model
