#pragma once
// Knowledge distillation's fused loss for the LM head (`--objective distill`): the student's and the
// teacher's logits of the same chunk of rows in, the loss per row and the student's dlogits (in
// place) out, so that neither model's full-vocabulary logits of all tokens exist at once.
#include <cstdint>

#include "engine/kernels/dispatch.hpp"
#include "engine/kernels/types.hpp"

namespace vkt::kernels {

// Per row r with weight w = weights[r], target t = targets[r], student logits s = logits[r, :],
// teacher logits u = teacher_logits[r, :], temperature T and alpha a (Hinton et al., as
// transformers' distillation examples write it):
//   loss[r] = w * (a * T^2 * KL(softmax(u/T) || softmax(s/T)) + (1 - a) * (logsumexp(s) - s[t]))
//   logits[r, :] is overwritten IN PLACE by dloss[r]/ds * grad_scale
//     = w * grad_scale * (a * T * (softmax(s/T) - softmax(u/T)) + (1 - a) * (softmax(s) - onehot(t)))
// Rows are ignored (loss 0, dlogits 0) exactly as cross_entropy ignores them (w == 0, t ==
// ignore_index, t >= vocab): the KL term covers the same positions and weights as the CE term.
// A non-finite logit (student or teacher) in a row that is not ignored gives loss NaN, dlogits NaN.
// logits, teacher_logits: (rows, vocab) fp32; targets: (rows) uint32; weights: (rows) fp32;
// grad_scale: (1) fp32 in device memory; loss: (rows) fp32. With write_gradient false the student's
// logits are left untouched. temperature > 0, alpha in [0, 1].
// The loss's two parts, for logging (metrics.jsonl's distill/kl and distill/ce), when given: kl_part[r] =
// w * T^2 * KL and ce_part[r] = w * CE, (rows) fp32 each (loss[r] = alpha * kl_part + (1 - alpha) * ce_part;
// 0 for ignored rows, NaN as the loss), from the same pass: no further logits are read or kept.
struct DistillParts {
  BufferRange kl, ce;
};
void distill_loss(Recorder& recorder, const BufferRange& logits, const BufferRange& teacher_logits,
                  const BufferRange& targets, const BufferRange& weights, const BufferRange& grad_scale,
                  const BufferRange& loss, uint32_t rows, uint32_t vocab, float temperature, float alpha,
                  uint32_t ignore_index = 0xffffffffu, bool write_gradient = true, const DistillParts* parts = nullptr);

}  // namespace vkt::kernels

namespace vkt::ref {
// dlogits: (rows, vocab) or nullptr; may be logits (in place); kl_part, ce_part: (rows) or nullptr.
// Double precision.
void distill_loss(const float* logits, const float* teacher_logits, const uint32_t* targets, const float* weights,
                  float grad_scale, float* loss, float* dlogits, uint32_t rows, uint32_t vocab, float temperature,
                  float alpha, uint32_t ignore_index = 0xffffffffu, float* kl_part = nullptr, float* ce_part = nullptr);
}  // namespace vkt::ref
