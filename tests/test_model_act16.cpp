// 16-bit activations through the whole model (spec::RunSettings::activation_dtype, --bf16/--fp16):
// the golden Llama and Qwen2 (GQA, q/k/v biases, tied) with their PEFT LoRA adapters, forward and
// backward with activations stored in bf16 and fp16, against the same run in fp32; and the planned
// and measured (ledger) activation bytes; gradient checkpointing in bf16. Suite model_golden (it
// reads tests/data/golden).
//
// The bound. Every stored activation is rounded once to nearest even, relative error <= u
// (bf16 u = 2^-8, fp16 u = 2^-11; see tests/test_kernels_act_storage.cpp). The deepest path from
// the embedding to the loss stores about 2 values per op it crosses: per layer the norm, q/k/v,
// RoPE, attention, o_proj (+ LoRA t), the residual add, the norm, gate/up, the activation, down
// (+ t) and the residual add: about 12 roundings per layer, 2 layers, plus the embedding and the
// final norm: n ~ 26 roundings. Independent roundings add in quadrature: the relative error of the
// logits is about sqrt(n) * u / sqrt(3) (the rms of a uniform rounding is u / sqrt(3)), and the
// loss, a mean of log-softmax values of order 1 to 6, inherits at most that: bf16 ~ 3e-3 x |logit|.
// We bound the loss's relative error by 4 u (bf16 1.6e-2, fp16 2e-3). The backward rounds as many
// values again on the way down, and a LoRA gradient (a sum of products of a stored activation and
// a stored gradient) gets both paths: sqrt(2 n) u / sqrt(3) ~ 4.2 u rms; its norm-wise relative
// error is bounded by 8 u (bf16 3.1e-2, fp16 3.9e-3), a factor ~2 of margin for the worst tensor.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/base/error.hpp"
#include "engine/model/session.hpp"
#include "engine/plan/plan.hpp"
#include "tests/golden_file.hpp"
#include "tests/golden_run.hpp"
#include "tests/support.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

fs::path golden_dir() { return test::source_dir() / "tests/data/golden"; }

double unit_roundoff(kernels::DType type) {
  return type == kernels::DType::bf16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
}

// Bytes of activations the plan lists and the ledger measures when the model opens with `settings`.
struct ActivationBytes {
  uint64_t planned = 0, measured = 0;
};
ActivationBytes activation_bytes(const fs::path& folder, spec::RunSettings settings, const test::GoldenBatch& batch) {
  settings.batch = batch.batch;
  settings.seq_len = batch.seq_len;
  settings.training = true;
  auto& ctx = test::context();
  model::LoraSettings lora = model::load_adapter_config(folder / "adapter").settings;
  const uint64_t before = ctx.ledger().snapshot().category_current(vk::Category::activations);
  auto session = model::open_model(ctx, folder, settings, &lora);
  ActivationBytes bytes;
  bytes.measured = ctx.ledger().snapshot().category_current(vk::Category::activations) - before;
  bytes.planned = session->plan.bytes(vk::Category::activations);
  return bytes;
}

}  // namespace

TEST_SUITE("model_golden") {

TEST_CASE("model: bf16/fp16 activations: loss and LoRA gradients within the 16-bit bound of fp32; half the bytes") {
  for (const char* model : {"llama", "qwen2"}) {
    const fs::path folder = golden_dir() / model;
    const test::GoldenFile golden(golden_dir() / (std::string(model) + ".golden.bin"));
    const test::GoldenBatch batch = test::golden_batch(golden);
    const spec::RunSettings fp32 = test::lora_run_settings(kernels::WeightFormat::f32);
    const test::GoldenRun reference = test::run_golden(golden, folder, folder / "adapter", fp32);
    const ActivationBytes fp32_bytes = activation_bytes(folder, fp32, batch);
    CHECK(fp32_bytes.measured == fp32_bytes.planned);
    for (kernels::DType type : {kernels::DType::bf16, kernels::DType::f16}) {
      const std::string what = std::string(model) + " " + kernels::dtype_name(type);
      CAPTURE(what);
      spec::RunSettings settings = fp32;
      settings.activation_dtype = type;
      const test::GoldenRun run = test::run_golden(golden, folder, folder / "adapter", settings);
      const double u = unit_roundoff(type);
      const double loss_error = std::fabs(run.loss - reference.loss) / reference.loss;
      MESSAGE(what << ": loss " << run.loss << " vs fp32 " << reference.loss << ", relative error " << loss_error
                   << " (bound " << 4 * u << ")");
      CHECK(loss_error <= 4 * u);
      CHECK(loss_error > 0.0);  // the 16-bit path really ran: some rounding reached the loss
      double worst = 0;
      std::string worst_name;
      REQUIRE(run.gradients.size() == reference.gradients.size());
      for (const auto& [name, gradient] : reference.gradients) {
        REQUIRE(run.gradients.count(name) == 1);
        const double error = test::relative_error(run.gradients.at(name), gradient);
        if (error > worst) worst = error, worst_name = name;
      }
      MESSAGE(what << ": worst LoRA gradient relative error " << worst << " (" << worst_name << ", bound " << 8 * u
                   << ")");
      CHECK(worst <= 8 * u);
      // Every saved activation is 16-bit; only rstd and lse (fp32 statistics, one value per row or
      // per row and head) keep 4 bytes, so the total stays just above half.
      const ActivationBytes bytes = activation_bytes(folder, settings, batch);
      MESSAGE(what << ": activations planned " << bytes.planned << " B, measured " << bytes.measured << " B; fp32 "
                   << fp32_bytes.planned << " B (ratio " << double(bytes.measured) / fp32_bytes.measured << ")");
      CHECK(bytes.measured == bytes.planned);
      CHECK(double(bytes.measured) <= 0.55 * double(fp32_bytes.measured));
      if (type != kernels::DType::bf16 || std::string(model) != "llama") continue;
      // Gradient checkpointing recomputes each layer's 16-bit activations from its saved 16-bit
      // input: the same operations on the same values, so the same gradients (up to 1e-6).
      spec::RunSettings checkpointed = settings;
      checkpointed.gradient_checkpointing = true;
      const test::GoldenRun recomputed = test::run_golden(golden, folder, folder / "adapter", checkpointed);
      CHECK(std::fabs(recomputed.loss - run.loss) <= 1e-6 * run.loss);
      for (const auto& [name, gradient] : run.gradients) {
        const double error = test::relative_error(recomputed.gradients.at(name), gradient);
        const std::string tensor = name;
        CAPTURE(tensor);
        CHECK(error <= 1e-6);
      }
    }
  }
}

TEST_CASE("model: full finetuning in 16 bits refuses q/k/v biases (Qwen2: fp32-only bias row sums); Llama opens") {
  spec::RunSettings settings;
  settings.method = spec::Method::full;
  settings.activation_dtype = kernels::DType::bf16;
  settings.training = true;
  settings.batch = 1;
  settings.seq_len = 8;
  CHECK_THROWS_WITH_AS(model::open_model(test::context(), golden_dir() / "qwen2", settings, nullptr),
                       doctest::Contains("full finetuning of a model with q/k/v biases"), UserError);
  CHECK_NOTHROW(model::open_model(test::context(), golden_dir() / "llama", settings, nullptr));
  settings.activation_dtype = kernels::DType::f32;  // the same run in fp32 opens
  CHECK_NOTHROW(model::open_model(test::context(), golden_dir() / "qwen2", settings, nullptr));
}

}  // TEST_SUITE
