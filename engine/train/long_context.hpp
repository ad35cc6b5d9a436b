#pragma once
// Long-context finetuning: --rope-scaling and its HF parameters applied to the model's config (so
// that training, the saved config.json and inference all see them). Also the masks that keep a
// pruned model's zeros through full finetuning (model surgery the trainer applies on load).
#include "engine/model/config.hpp"
#include "engine/model/session.hpp"
#include "engine/train/config.hpp"

namespace vkt::train {

// The model config with --rope-scaling applied (unchanged without it), written as transformers 5
// writes it: rope_parameters {rope_type, factor, rope_theta, ...}; linear, yarn and llama3 raise
// max_position_embeddings to original * factor, dynamic keeps it (dynamic scales past it).
// UserError for an unknown type, a missing or invalid factor, or a model whose own RoPE cannot
// be rescaled (Gemma's per-layer settings, Phi-3's longrope, a GGUF rope_freqs table).
model::ModelConfig with_rope_scaling(const model::ModelConfig& config, const TrainConfig& flags);

// --s2-attn (LongLoRA's shifted sparse attention, kernels/s2_attention.hpp): the training length
// rounded up to a multiple of 8 (groups of a quarter of it, rolled by half a group; the extra cells
// are padding), unchanged without the flag.
uint32_t s2_sequence_length(const TrainConfig& flags, uint32_t seq_len);

// The S2 group size for a training length seq_len (a quarter of it, LongLoRA's group_size_ratio),
// 0 without --s2-attn. UserError where it makes no sense: soft prompts, odd head counts,
// soft-capping or a sliding window shorter than the sequence. --packing works: the packed examples'
// segment ids reach both halves of the heads (the shifted half's rolled with it), so each example
// attends only within itself and within its group.
uint32_t s2_group_size(const TrainConfig& flags, const model::ModelConfig& config, uint32_t seq_len);

// Full finetuning of a pruned model: fills each planned prune_mask.<weight> with (weight != 0),
// from the weights as loaded (before a resume overwrites them). No-op without such buffers.
void upload_prune_masks(vk::Context& context, model::ModelSession& session);

}  // namespace vkt::train
