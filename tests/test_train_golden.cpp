// The training step against PyTorch (tests/reference/make_golden.py): 20 optimizer steps from the
// golden adapter with torch.optim.AdamW (weight decay 0.01), HF warmup + cosine, prompt loss weight
// 0.1, 2 accumulated micro-batches normalised by Σw over both, clip_grad_norm_(1.0). Bounds (the
// issue's): each step's loss within 1e-4 relative, the final adapter within 1e-4 relative
// (||a - a_ref|| / ||a_ref|| per tensor). The gradient norm before clipping is checked to 1e-4 too.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/model/adapter.hpp"
#include "engine/model/session.hpp"
#include "engine/train/step_runner.hpp"
#include "tests/golden_file.hpp"
#include "tests/support.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

// The golden micro-batch (step, micro) as our batcher would produce it: row t predicts ids[t+1].
train::MicroBatch golden_micro_batch(const std::vector<int64_t>& ids, const std::vector<float>& weights, size_t offset,
                                     uint32_t batch, uint32_t seq) {
  train::MicroBatch mb;
  mb.batch = batch;
  mb.seq_len = seq;
  size_t n = size_t(batch) * seq;
  mb.ids.resize(n);
  mb.targets.assign(n, 0);
  mb.weights.assign(n, 0.0f);
  mb.positions.resize(n);
  mb.segments.assign(n, 0);
  for (size_t i = 0; i < n; i++) {
    mb.ids[i] = static_cast<uint32_t>(ids[offset + i]);
    mb.positions[i] = static_cast<uint32_t>(i % seq);
    if ((i + 1) % seq != 0) {
      mb.targets[i] = static_cast<uint32_t>(ids[offset + i + 1]);
      mb.weights[i] = weights[offset + i + 1];
      mb.weight_sum += weights[offset + i + 1];
    }
  }
  return mb;
}

double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double error = 0, reference = 0;
  for (size_t i = 0; i < b.size(); i++) {
    error += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    reference += double(b[i]) * b[i];
  }
  return std::sqrt(error / std::max(reference, 1e-30));
}

void check_training(const std::string& model_name) {
  auto& ctx = test::context();
  fs::path dir = test::source_dir() / "tests/data/golden";
  test::GoldenFile golden(dir / (model_name + ".golden.bin"));
  const auto& ids_tensor = golden["train.ids"];
  const uint32_t steps = static_cast<uint32_t>(ids_tensor.shape[0]), micro = static_cast<uint32_t>(ids_tensor.shape[1]);
  const uint32_t batch = static_cast<uint32_t>(ids_tensor.shape[2]), seq = static_cast<uint32_t>(ids_tensor.shape[3]);
  auto ids = ids_tensor.ints();
  auto weights = golden["train.weights"].floats();
  auto lrs = golden["train.lr"].doubles();
  auto losses = golden["train.loss"].floats();
  auto norms = golden["train.grad_norm"].floats();

  model::LoraSettings lora = model::load_adapter_config(dir / model_name / "adapter").settings;
  spec::RunSettings settings;
  settings.batch = batch;
  settings.seq_len = seq;
  auto session = model::open_model(ctx, dir / model_name, settings, &lora);
  model::load_adapter_weights(ctx, *session->buffers, session->plan.shape, lora, dir / model_name / "adapter");
  train::OptimizerSettings optimizer;
  optimizer.weight_decay = 0.01;
  optimizer.max_grad_norm = 1.0;
  train::StepRunner runner(ctx, *session, optimizer);
  runner.reset();

  double worst_loss = 0, worst_norm = 0;
  for (uint32_t step = 0; step < steps; step++) {
    std::vector<train::MicroBatch> micro_batches;
    for (uint32_t m = 0; m < micro; m++)
      micro_batches.push_back(golden_micro_batch(ids, weights, (size_t(step) * micro + m) * batch * seq, batch, seq));
    runner.step(step + 1, lrs[step], micro_batches);
    double loss = runner.take_loss_sum();
    double norm = runner.device_state().grad_norm;
    worst_loss = std::max(worst_loss, std::fabs(loss - losses[step]) / losses[step]);
    worst_norm = std::max(worst_norm, std::fabs(norm - norms[step]) / norms[step]);
    INFO(model_name << " step " << step << ": loss " << loss << " vs " << losses[step] << ", grad norm " << norm
                    << " vs " << norms[step]);
    CHECK(std::fabs(loss - losses[step]) / losses[step] <= 1e-4);
    CHECK(std::fabs(norm - norms[step]) / norms[step] <= 1e-4);
  }
  double worst_weight = 0;
  std::string worst_name;
  for (uint32_t layer = 0; layer < session->plan.shape.layers; layer++)
    for (spec::Module module : lora.targets)
      for (bool a : {true, false}) {
        auto actual =
            test::download(session->buffers->buffer(model::lora_buffer_name(session->plan.shape, layer, module, a)));
        auto expected =
            golden["train.final." + model::peft_tensor_name(session->plan.shape, layer, module, a)].floats();
        double error = relative_error(actual, expected);
        if (error > worst_weight) {
          worst_weight = error;
          worst_name = model::peft_tensor_name(session->plan.shape, layer, module, a);
        }
      }
  MESSAGE(model_name << ": worst relative error over 20 steps: loss " << worst_loss << ", grad norm " << worst_norm
                     << ", final adapter " << worst_weight << " (" << worst_name << ")");
  CHECK(worst_weight <= 1e-4);
}

}  // namespace

TEST_SUITE("train_golden") {

TEST_CASE("train golden: 20 AdamW steps with accumulation, clipping and cosine warmup match PyTorch (llama)") {
  check_training("llama");
}

TEST_CASE("train golden: 20 AdamW steps match PyTorch (qwen2: biases, GQA, tied embeddings)") {
  check_training("qwen2");
}

}  // TEST_SUITE
