#include "engine/kernels/distill.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/base/error.hpp"
#include "engine/kernels/ranges.hpp"
#include "engine/kernels/reduce.hpp"

namespace vkt::kernels {

void distill_loss(Recorder& recorder, const BufferRange& logits, const BufferRange& teacher_logits,
                  const BufferRange& targets, const BufferRange& weights, const BufferRange& grad_scale,
                  const BufferRange& loss, uint32_t rows, uint32_t vocab, float temperature, float alpha,
                  uint32_t ignore_index, bool write_gradient, const DistillParts* parts) {
  uint64_t elements = uint64_t(rows) * vocab;
  require_index_range(elements, "distill_loss");
  require_bytes(logits, elements * 4, "distill_loss", "logits");
  require_bytes(teacher_logits, elements * 4, "distill_loss", "teacher_logits");
  require_bytes(targets, uint64_t(rows) * 4, "distill_loss", "targets");
  require_bytes(weights, uint64_t(rows) * 4, "distill_loss", "weights");
  require_bytes(grad_scale, 4, "distill_loss", "grad_scale");
  require_bytes(loss, uint64_t(rows) * 4, "distill_loss", "loss");
  VKT_ASSERT(temperature > 0 && std::isfinite(temperature), "distill_loss: temperature must be > 0");
  VKT_ASSERT(alpha >= 0 && alpha <= 1, "distill_loss: alpha must be in [0, 1]");
  if (parts) {
    require_bytes(parts->kl, uint64_t(rows) * 4, "distill_loss", "kl_part");
    require_bytes(parts->ce, uint64_t(rows) * 4, "distill_loss", "ce_part");
  }
  struct {
    uint64_t logits, teacher_logits, targets, weights, grad_scale, loss, kl_part, ce_part;
    uint32_t rows, vocab, ignore_index, write_gradient;
    float temperature, alpha;
  } push{logits.address,
         teacher_logits.address,
         targets.address,
         weights.address,
         grad_scale.address,
         loss.address,
         parts ? parts->kl.address : 0,
         parts ? parts->ce.address : 0,
         rows,
         vocab,
         ignore_index,
         write_gradient ? 1u : 0u,
         temperature,
         alpha};
  std::vector<BufferRange> writes{loss};
  if (write_gradient) writes.push_back(logits);
  if (parts) writes.insert(writes.end(), {parts->kl, parts->ce});
  const uint32_t specialization[] = {row_threads(recorder.context())};
  record_dispatch(recorder, {.shader = "distill_loss",
                             .specialization = specialization,
                             .push = push,
                             .grid = grid_1d(rows, 1),  // one workgroup per row
                             .reads = {logits, teacher_logits, targets, weights, grad_scale},
                             .writes = writes});
}

}  // namespace vkt::kernels

namespace vkt::ref {

namespace {
// log of the sum of exp(x[v] * scale) over the row, in double.
double log_sum_exp(const std::vector<double>& x, double scale) {
  double max = -INFINITY;
  for (double value : x) max = std::fmax(max, value * scale);
  double sum = 0;
  for (double value : x) sum += std::exp(value * scale - max);
  return max + std::log(sum);
}
}  // namespace

void distill_loss(const float* logits, const float* teacher_logits, const uint32_t* targets, const float* weights,
                  float grad_scale, float* loss, float* dlogits, uint32_t rows, uint32_t vocab, float temperature,
                  float alpha, uint32_t ignore_index, float* kl_part, float* ce_part) {
  std::vector<double> s(vocab), u(vocab);
  const double inv_t = 1.0 / temperature, a = alpha;
  for (uint32_t r = 0; r < rows; r++) {
    const float* student = logits + size_t(r) * vocab;
    const float* teacher = teacher_logits + size_t(r) * vocab;
    float* gradient = dlogits ? dlogits + size_t(r) * vocab : nullptr;
    const uint32_t target = targets[r];
    const double weight = weights[r];
    // Ignored rows get 0, rows with a non-finite logit NaN (the kernel's contract), in loss and dlogits.
    const bool ignored = weight == 0 || target == ignore_index || target >= vocab;
    bool finite = true;
    for (uint32_t v = 0; v < vocab && !ignored; v++) {
      s[v] = student[v];
      u[v] = teacher[v];
      finite = finite && std::isfinite(student[v]) && std::isfinite(teacher[v]);
    }
    if (ignored || !finite) {
      const float fill = ignored ? 0.0f : NAN;
      loss[r] = fill;
      if (kl_part) kl_part[r] = fill;
      if (ce_part) ce_part[r] = fill;
      if (gradient) std::fill(gradient, gradient + vocab, fill);
      continue;
    }
    const double lse_s = log_sum_exp(s, 1.0), lse_q = log_sum_exp(s, inv_t), lse_p = log_sum_exp(u, inv_t);
    double kl = 0;
    for (uint32_t v = 0; v < vocab; v++) {
      double log_p = u[v] * inv_t - lse_p, log_q = s[v] * inv_t - lse_q;
      kl += std::exp(log_p) * (log_p - log_q);
    }
    const double ce = lse_s - s[target];
    loss[r] = static_cast<float>(weight * (a * temperature * temperature * kl + (1 - a) * ce));
    if (kl_part) kl_part[r] = static_cast<float>(weight * temperature * temperature * kl);
    if (ce_part) ce_part[r] = static_cast<float>(weight * ce);
    if (!gradient) continue;
    const double scale = weight * grad_scale;
    for (uint32_t v = 0; v < vocab; v++) {  // in place: each element is read (into s) before it is written
      double q = std::exp(s[v] * inv_t - lse_q), p = std::exp(u[v] * inv_t - lse_p);
      double softmax = std::exp(s[v] - lse_s) - (v == target ? 1.0 : 0.0);
      gradient[v] = static_cast<float>(scale * (a * temperature * (q - p) + (1 - a) * softmax));
    }
  }
}

}  // namespace vkt::ref
