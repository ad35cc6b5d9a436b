#pragma once
// Fused, weighted cross-entropy for the LM head, called on chunks of rows so that full-vocabulary
// fp32 logits of all tokens never exist at once.
#include <cstdint>

#include "engine/kernels/dispatch.hpp"
#include "engine/kernels/types.hpp"

namespace vkt::kernels {

constexpr uint32_t ignore_target = 0xffffffffu;  // a target that contributes no loss and no gradient

// Per row r with weight w = weights[r] and target t = targets[r]:
//   loss[r] = w * (logsumexp(logits[r, :]) - logits[r, t])
//   logits[r, :] is overwritten IN PLACE by dlogits = (softmax(logits[r, :]) - onehot(t)) * w * grad_scale
// A row is ignored (loss 0, dlogits all 0) when w == 0, t == ignore_index, or t >= vocab.
// A row that is not ignored and holds a NaN or infinite logit gets loss NaN and dlogits NaN
// (checked explicitly: Vulkan's exp/log need not propagate NaN), for the trainer's NaN checks.
// One workgroup per row: one pass for the running max and sum of exp, one pass writing dlogits.
// logits: (rows, vocab) fp32; targets: (rows) uint32; weights: (rows) fp32;
// grad_scale: (1) fp32 in device memory (per-step value of a replayed recording, e.g.
//   loss_scale / total weight of the batch); loss: (rows) fp32 (sum with sum_rows: deterministic).
// With write_gradient false the logits are left untouched (evaluation).
// logit_softcap > 0 (Gemma 2's final_logit_softcapping): the loss sees c * tanh(logits / c) and
// dlogits is the gradient with respect to the raw logits (times 1 - tanh^2); 0: no capping.
// logits_type: the storage of logits/dlogits (engine/kernels/act_storage.hpp); the softmax, the
// loss and its sums are fp32 whatever it is.
void cross_entropy(Recorder& recorder, const BufferRange& logits, const BufferRange& targets,
                   const BufferRange& weights, const BufferRange& grad_scale, const BufferRange& loss, uint32_t rows,
                   uint32_t vocab, uint32_t ignore_index = ignore_target, bool write_gradient = true,
                   float logit_softcap = 0.0f, DType logits_type = DType::f32);

}  // namespace vkt::kernels

namespace vkt::ref {
// dlogits: (rows, vocab) or nullptr; may be logits (in place). Double precision.
void cross_entropy(const float* logits, const uint32_t* targets, const float* weights, float grad_scale, float* loss,
                   float* dlogits, uint32_t rows, uint32_t vocab, uint32_t ignore_index = 0xffffffffu,
                   float logit_softcap = 0.0f);
}  // namespace vkt::ref
