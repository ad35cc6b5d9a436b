#pragma once
// The GGUF architectures gemma2, gemma3 and phi3: what llama.cpp's converter (convert_hf_to_gguf.py:
// Gemma2Model, Gemma3Model, Phi3MiniModel) leaves out of the metadata and llama.cpp
// (src/models/gemma2.cpp, gemma3.cpp, phi3.cpp) assumes instead, turned back into the config.json
// fields parse_model_config reads (engine/model/gguf_model.cpp calls these).
//
// Gemma 2/3:
//   - norms (every tensor whose name ends in norm.weight, q/k norms too) are stored as 1 + w: the
//     tensor source subtracts 1 (gguf_stores_norm_plus_one);
//   - query_pre_attn_scalar is not stored: llama.cpp scales queries by 1/sqrt(head_dim), or by
//     1/sqrt(hidden / heads) for the 27B models (46 layers for gemma2, 62 for gemma3);
//   - sliding window: <arch>.attention.sliding_window (gemma2: 4096 when absent; gemma3: none when
//     absent or 0); layer pattern <arch>.attention.sliding_window_pattern (a per-layer bool array
//     or a period n: layer i slides when i % n < n - 1), else llama.cpp's 2 (gemma2) / 6 (gemma3);
//   - RoPE: gemma2 one base (rope.freq_base, 10000 when absent); gemma3 the global base with its
//     scaling on full-attention layers and rope.freq_base_swa (10000 when absent, unscaled) on
//     sliding ones;
//   - soft caps: gemma2 attn_logit_softcapping / final_logit_softcapping (50 / 30 when absent);
//     gemma3 final_logit_softcapping only (none when absent);
//   - the embedding scale sqrt(hidden) and GeGLU (gelu_pytorch_tanh) are Gemma's, implied by the
//     architecture.
// Phi-3: attn_qkv and ffn_up (gate then up rows) stay fused as HF's qkv_proj / gate_up_proj;
// longrope's factors are the tensors rope_factors_long / rope_factors_short, its original context
// rope.scaling.original_context_length, its attention factor rope.scaling.attn_factor. A sliding
// window in the metadata is kept (transformers' Phi-3 uses it; llama.cpp disables Phi-3's window).
#include <string_view>

#include <nlohmann/json.hpp>

#include "engine/model/gguf.hpp"

namespace vkt::model {

// Adds/replaces the family's fields in `document` (the config.json gguf_hf_config builds from the
// common llama-style keys) for `architecture` "gemma2", "gemma3" or "phi3"; nothing for others.
void add_gguf_family_config(const GgufFile& file, std::string_view architecture, nlohmann::json& document);

// Whether the converter stored this architecture's norms as 1 + w (gemma2, gemma3).
bool gguf_stores_norm_plus_one(std::string_view architecture);

}  // namespace vkt::model
