#include "engine/kernels/loss.hpp"

#include <cmath>
#include <vector>

#include "engine/base/error.hpp"

#include "engine/kernels/act_storage.hpp"
#include "engine/kernels/ranges.hpp"
#include "engine/kernels/reduce.hpp"

namespace vkt::kernels {

void cross_entropy(Recorder& recorder, const BufferRange& logits, const BufferRange& targets,
                   const BufferRange& weights, const BufferRange& grad_scale, const BufferRange& loss, uint32_t rows,
                   uint32_t vocab, uint32_t ignore_index, bool write_gradient, float logit_softcap, DType logits_type) {
  uint64_t elements = uint64_t(rows) * vocab;
  require_index_range(elements, "cross_entropy");
  require_bytes(logits, act_bytes(elements, logits_type), "cross_entropy", "logits");
  require_bytes(targets, uint64_t(rows) * 4, "cross_entropy", "targets");
  require_bytes(weights, uint64_t(rows) * 4, "cross_entropy", "weights");
  require_bytes(grad_scale, 4, "cross_entropy", "grad_scale");
  require_bytes(loss, uint64_t(rows) * 4, "cross_entropy", "loss");
  VKT_ASSERT(logit_softcap >= 0 && std::isfinite(logit_softcap), "cross_entropy: logit_softcap must be >= 0");
  struct {
    uint64_t logits, targets, weights, grad_scale, loss;
    uint32_t rows, vocab, ignore_index, write_gradient;
    float logit_softcap;
  } push{logits.address, targets.address, weights.address, grad_scale.address,       loss.address,
         rows,           vocab,           ignore_index,    write_gradient ? 1u : 0u, logit_softcap};
  std::vector<BufferRange> writes{loss};
  if (write_gradient) writes.push_back(logits);
  const uint32_t specialization[] = {row_threads(recorder.context())};
  record_dispatch(recorder, {.shader = act_shader(recorder, "cross_entropy", logits_type),
                             .specialization = specialization,
                             .push = push,
                             .grid = grid_1d(rows, 1),  // one workgroup per row
                             .reads = {logits, targets, weights, grad_scale},
                             .writes = writes,
                             .label = "cross_entropy"});
}

}  // namespace vkt::kernels

namespace vkt::ref {

void cross_entropy(const float* logits, const uint32_t* targets, const float* weights, float grad_scale, float* loss,
                   float* dlogits, uint32_t rows, uint32_t vocab, uint32_t ignore_index, float logit_softcap) {
  std::vector<double> row(vocab);
  for (uint32_t r = 0; r < rows; r++) {
    const float* raw = logits + size_t(r) * vocab;
    for (uint32_t v = 0; v < vocab; v++)
      row[v] = logit_softcap > 0 ? logit_softcap * std::tanh(double(raw[v]) / logit_softcap) : double(raw[v]);
    float* gradient = dlogits ? dlogits + size_t(r) * vocab : nullptr;
    uint32_t target = targets[r];
    double weight = weights[r];
    if (weight == 0 || target == ignore_index || target >= vocab) {
      loss[r] = 0;
      if (gradient)
        for (uint32_t v = 0; v < vocab; v++) gradient[v] = 0;
      continue;
    }
    bool finite = true;
    for (uint32_t v = 0; v < vocab; v++) finite = finite && std::isfinite(raw[v]);
    if (!finite) {  // the kernel's contract: NaN loss and NaN dlogits
      loss[r] = NAN;
      if (gradient)
        for (uint32_t v = 0; v < vocab; v++) gradient[v] = NAN;
      continue;
    }
    double max = -INFINITY;
    for (uint32_t v = 0; v < vocab; v++) max = std::fmax(max, row[v]);
    double sum = 0;
    for (uint32_t v = 0; v < vocab; v++) sum += std::exp(row[v] - max);
    double log_sum_exp = max + std::log(sum);
    loss[r] = static_cast<float>(weight * (log_sum_exp - row[target]));
    if (!gradient) continue;
    double scale = weight * grad_scale;
    for (uint32_t v = 0; v < vocab; v++) {  // in place: each element is read before it is written
      double probability = std::exp(row[v] - log_sum_exp);
      double capping = logit_softcap > 0 ? 1.0 - (row[v] / logit_softcap) * (row[v] / logit_softcap) : 1.0;
      gradient[v] = static_cast<float>((probability - (v == target ? 1.0 : 0.0)) * scale * capping);
    }
  }
}

}  // namespace vkt::ref
