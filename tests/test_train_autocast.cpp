// --bf16 against PyTorch CPU autocast(bf16) (issue 15 item 6): 20 AdamW steps of LoRA and of full
// finetuning on hf_golden.py's tiny Llama (tests/data/hf/llama3 and its adapter, its golden batch),
// loss trajectories written by tests/reference/autocast_golden.py (tests/data/autocast/).
//
// What differs. Autocast keeps fp32 parameters and casts each matmul's operands (weights and
// activations) to bf16, its output bf16; the residual stream, norms, softmax and the loss see
// fp32 or those bf16 outputs. vktune --bf16 stores every activation and activation gradient in
// bf16 (the residual stream too) and multiplies in fp32 from them; LoRA keeps fp32 base weights
// and A/B (autocast rounds them per matmul); full finetuning multiplies by the bf16 copies of fp32
// masters, which are exactly autocast's casts of its fp32 parameters (both round to nearest even).
// Logits are fp32 in vktune, bf16 in autocast. Both accumulate in fp32, and both update fp32
// masters (or LoRA parameters) with the same AdamW.
//
// The bound. A bf16 rounding changes a value by at most 2^-8 relative (half an ulp of 8
// significant bits). On the path from the embedding to the logits vktune rounds K_v = 24 values in
// series (per layer: norm, q/k/v, rope, attention, o_proj, residual, norm, gate/up, activation,
// down, residual = 11, two layers, plus the embedding and the final norm), autocast K_a = 24 (per
// layer: the operands and outputs of its 8 matmul stages and the activation's product = 11, two
// layers, plus the final norm's cast and the logits), LoRA 8 more (autocast's casts of the base
// and adapter weights in the 4 matmul stages of each layer). Rounding errors behave as independent
// zero-mean errors, so K of them add up to about sqrt(K) * 2^-8 relative (Higham & Mary 2019,
// probabilistic rounding error analysis), not K * 2^-8; the two runs differ by the roundings of
// both, K = K_v + K_a. A relative change e of the logits z changes the cross-entropy by at most
// sum_j |p_j - y_j| * e * |z_j| <= 2 e max|z|. So each step's loss may differ by
//     2 * max|z| * sqrt(K) * 2^-8      relative to the loss L_min (the trajectory's smallest),
// max|z| from the reference (autocast's first step). That is 2.4% (full, K = 48) and 3.1% (LoRA,
// K = 56) here; an update that did not reach the weights would miss it by 4x (the loss falls by
// 10% (full) and 22% (LoRA) over the 20 steps). Over the steps the weights drift apart only by
// AdamW's normalized updates of gradients that differ by a few 2^-8: lr * 2^-8 per step, far
// below the forward's rounding, so one bound serves all 20 steps.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/model/adapter.hpp"
#include "engine/model/session.hpp"
#include "engine/train/step_runner.hpp"
#include "tests/golden_file.hpp"
#include "tests/golden_run.hpp"
#include "tests/support.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

struct Comparison {
  double worst = 0, bound = 0;
};

Comparison compare_to_autocast(const std::string& run, uint32_t roundings_in_series) {
  auto& ctx = test::context();
  const fs::path folder = test::source_dir() / "tests/data/hf/llama3";
  const nlohmann::json reference =
      nlohmann::json::parse(std::ifstream(test::source_dir() / "tests/data/autocast/trajectories.json"))["runs"][run];
  const std::vector<double> expected = reference["autocast_bf16"].get<std::vector<double>>();
  test::GoldenBatch batch =
      test::golden_batch(test::GoldenFile(test::source_dir() / "tests/data/hf/llama3.golden.bin"));
  spec::RunSettings settings = test::lora_run_settings(kernels::WeightFormat::f32);
  settings.activation_dtype = kernels::DType::bf16;
  settings.batch = batch.batch;
  settings.seq_len = batch.seq_len;
  model::LoraSettings lora;
  if (run == "full") settings.method = spec::Method::full;
  if (run == "lora") lora = model::load_adapter_config(folder / "adapter").settings;
  std::unique_ptr<model::ModelSession> session =
      model::open_model(ctx, folder, settings, run == "full" ? nullptr : &lora);
  if (run == "lora") model::load_adapter_weights(ctx, *session->buffers, session->plan.shape, lora, folder / "adapter");
  train::OptimizerSettings optimizer;
  optimizer.weight_decay = 0.01;
  optimizer.max_grad_norm = 1.0;
  train::StepRunner runner(ctx, *session, optimizer);
  runner.reset();
  const double lr = reference["lr"].get<double>();
  const double smallest = *std::min_element(expected.begin(), expected.end());
  Comparison result;
  result.bound = 2.0 * reference["largest_abs_logit"].get<double>() * std::sqrt(double(roundings_in_series)) *
                 std::ldexp(1.0, -8) / smallest;
  for (size_t step = 0; step < expected.size(); step++) {
    runner.step(int64_t(step) + 1, lr, {batch});
    const double loss = runner.take_loss_sum();
    const double error = std::fabs(loss - expected[step]) / expected[step];
    INFO(run << " step " << step + 1 << ": vktune " << loss << ", autocast " << expected[step]);
    CHECK(error <= result.bound);
    result.worst = std::max(result.worst, error);
  }
  return result;
}

}  // namespace

TEST_SUITE("train_golden") {

TEST_CASE("train golden: --bf16 LoRA and full finetuning follow PyTorch autocast(bf16) over 20 AdamW steps") {
  const Comparison lora = compare_to_autocast("lora", 24 + 24 + 8);
  MESSAGE("LoRA --bf16 vs autocast: worst loss error " << lora.worst << " (bound " << lora.bound << ")");
  const Comparison full = compare_to_autocast("full", 24 + 24);
  MESSAGE("full --bf16 vs autocast: worst loss error " << full.worst << " (bound " << full.bound << ")");
}

}  // TEST_SUITE
