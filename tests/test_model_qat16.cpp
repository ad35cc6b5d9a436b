// --qat with --bf16/--fp16 (engine/model/qat.hpp): the fake-quantized forward and straight-through
// backward with 16-bit activations, on the golden Llama, against the fp32 QAT path (the reference:
// PEFT has no QAT, so no library golden exists). Suite model_golden (it reads tests/data/golden).
//
// Each pair differs in the activations' storage only, so both see the same fq(·) of the same values:
//   LoRA, fp32 base: fq(W + s·B·A) is formed in fp32 in both runs;
//   LoRA, --dtype bf16 base: both runs read the same bf16 W;
//   full: the 16-bit run's weights are bf16/fp16 (beside fp32 masters), so the fp32 run starts from
//     the same values rounded to that type (its norms stay fp32, as the 16-bit run's do).
// The bounds are test_model_act16.cpp's (about 26 roundings on the deepest path, in quadrature):
// loss relative <= 4u, worst gradient (LoRA or full) norm-wise relative <= 8u, with u the unit
// roundoff (bf16 2^-8, fp16 2^-11); logits max-abs <= 8u·max|logit| (the rms error is ~3u·|logit|,
// its maximum over 97 x rows values a little above). Each case also checks that fq really ran: the
// 16-bit QAT loss is farther from the 16-bit run without QAT than the bound.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <optional>

#include "engine/base/half.hpp"
#include "engine/model/session.hpp"
#include "engine/plan/plan.hpp"
#include "tests/golden_file.hpp"
#include "tests/golden_run.hpp"
#include "tests/support.hpp"

using namespace vkt;
namespace fs = std::filesystem;
using kernels::DType;

namespace {

fs::path golden_dir() { return test::source_dir() / "tests/data/golden"; }

double unit_roundoff(DType type) { return type == DType::bf16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11); }

double max_abs(const std::vector<float>& values) {
  double worst = 0;
  for (float v : values) worst = std::max(worst, double(std::fabs(v)));
  return worst;
}

// Rounds every linear weight and table of an fp32 session to `type` (norm weights stay fp32, as
// they do in a 16-bit full-finetuning run).
test::SessionSetup rounded_weights(DType type) {
  test::SessionSetup setup;
  setup.weights = [type](model::ModelSession& session, const model::LoraSettings&) {
    auto& ctx = test::context();
    for (const auto& spec : session.plan.buffers) {
      if (spec.category != vk::Category::base_weights || spec.name.find("norm") != std::string::npos) continue;
      std::vector<float> values = test::download(session.buffers->buffer(spec.name), spec.bytes / 4);
      for (float& v : values)
        v = type == DType::bf16 ? bf16_to_float(float_to_bf16(v)) : half_to_float(float_to_half(v));
      ctx.upload(session.buffers->buffer(spec.name), values.data(), 0, values.size() * 4);
    }
  };
  return setup;
}

struct Qat16Case {
  std::string name;
  spec::Method method = spec::Method::lora;
  DType base_dtype = DType::f32;  // LoRA's --dtype (full: the 16-bit run's weights follow --bf16/--fp16)
  std::vector<DType> types;       // the activation types compared with one fp32 reference
};

void check_qat16(const Qat16Case& c) {
  const fs::path folder = golden_dir() / "llama";
  const test::GoldenFile golden(golden_dir() / "llama.golden.bin");
  const test::GoldenBatch batch = test::golden_batch(golden);
  const uint32_t vocab = static_cast<uint32_t>(golden["fp32.logits"].shape[2]);
  const bool full = c.method == spec::Method::full;
  const fs::path adapter = full ? fs::path() : folder / "adapter";
  spec::RunSettings fp32 = test::lora_run_settings(kernels::WeightFormat::f32);
  fp32.method = c.method;
  fp32.dtype = c.base_dtype;
  fp32.qat_format = kernels::WeightFormat::int4;
  // Full: the 16-bit runs' weights round to their type, so each type needs its own reference.
  std::optional<test::GoldenRun> shared;
  if (!full) shared = test::run_golden(golden, folder, adapter, fp32);
  for (DType type : c.types) {
    const test::GoldenRun reference =
        full ? test::run_golden(golden, folder, adapter, fp32, rounded_weights(type)) : *shared;
    spec::RunSettings sixteen = fp32;
    sixteen.activation_dtype = type;
    const test::GoldenRun run = test::run_golden(golden, folder, adapter, sixteen);
    const std::string what = c.name + " " + kernels::dtype_name(type);
    CAPTURE(what);
    const double u = unit_roundoff(type);
    const double logits_bound = 8 * u * max_abs(reference.logits);
    const double logits_error = test::worst_real_row_error(run.logits, reference.logits, batch, vocab);
    const double loss_error = std::fabs(run.loss - reference.loss) / reference.loss;
    double worst = 0;
    std::string worst_name;
    REQUIRE(run.gradients.size() == reference.gradients.size());
    REQUIRE(!run.gradients.empty());
    for (const auto& [name, gradient] : reference.gradients) {
      REQUIRE(run.gradients.count(name) == 1);
      const double error = test::relative_error(run.gradients.at(name), gradient);
      if (error > worst) worst = error, worst_name = name;
    }
    MESSAGE(what << " QAT int4 vs fp32 QAT: logits max-abs " << logits_error << " (bound " << logits_bound
                 << "), loss relative " << loss_error << " (bound " << 4 * u << "), worst gradient relative " << worst
                 << " (" << worst_name << ", bound " << 8 * u << ")");
    CHECK(logits_error <= logits_bound);
    CHECK(loss_error <= 4 * u);
    CHECK(loss_error > 0.0);  // the 16-bit path really ran
    CHECK(worst <= 8 * u);
    // fq(·) moves the logits far beyond the bound, so a 16-bit path that skipped it would fail above:
    // LoRA against PEFT's logits of the same model without QAT (the golden), full against its 16-bit
    // run without --qat.
    std::vector<float> without_qat;
    if (!full) {
      without_qat = golden["fp32.logits"].floats();
    } else if (type == c.types.front()) {
      spec::RunSettings plain = sixteen;
      plain.qat_format = kernels::WeightFormat::f32;
      without_qat = test::run_golden(golden, folder, adapter, plain).logits;
    }
    if (without_qat.empty()) continue;
    const double qat_shift = test::worst_real_row_error(run.logits, without_qat, batch, vocab);
    MESSAGE(what << ": logits without QAT differ by " << qat_shift << " max-abs");
    CHECK(qat_shift > 4 * logits_bound);
  }
}

}  // namespace

TEST_SUITE("model_golden") {

TEST_CASE("qat16: --qat int4 with bf16/fp16 activations (LoRA on fp32 and bf16 bases, full) vs the fp32 QAT path") {
  check_qat16({"lora", spec::Method::lora, DType::f32, {DType::bf16, DType::f16}});
  check_qat16({"lora --dtype bf16", spec::Method::lora, DType::bf16, {DType::bf16}});
  check_qat16({"full", spec::Method::full, DType::f32, {DType::bf16}});
}

TEST_CASE("qat16: the planner counts the fq(W) scratch of a 16-bit QAT run (plan == ledger)") {
  const fs::path folder = golden_dir() / "llama";
  const test::GoldenBatch batch = test::golden_batch(test::GoldenFile(golden_dir() / "llama.golden.bin"));
  auto& ctx = test::context();
  model::LoraSettings lora = model::load_adapter_config(folder / "adapter").settings;
  for (spec::Method method : {spec::Method::lora, spec::Method::full}) {
    // Bytes per category, planned and measured, of a bf16 session without and with --qat nf4. The
    // workspace is compared as a difference: the plan's optimizer entries are the trainer's to allocate.
    std::map<vk::Category, int64_t> planned[2], measured[2];
    for (int qat = 0; qat < 2; qat++) {
      spec::RunSettings settings = test::lora_run_settings(kernels::WeightFormat::f32);
      settings.method = method;
      settings.activation_dtype = DType::bf16;
      settings.qat_format = qat ? kernels::WeightFormat::nf4 : kernels::WeightFormat::f32;
      settings.batch = batch.batch;
      settings.seq_len = batch.seq_len;
      settings.training = true;
      const auto before = ctx.ledger().snapshot();
      auto session = model::open_model(ctx, folder, settings, method == spec::Method::full ? nullptr : &lora);
      const auto after = ctx.ledger().snapshot();
      CHECK(session->buffers->has("act.qat_weight") == (qat == 1));
      for (vk::Category category : {vk::Category::workspace, vk::Category::activations, vk::Category::master_weights}) {
        planned[qat][category] = int64_t(session->plan.bytes(category));
        measured[qat][category] = int64_t(after.category_current(category) - before.category_current(category));
      }
    }
    const std::string what = spec::method_name(method);
    CAPTURE(what);
    const int64_t qat_planned = planned[1][vk::Category::workspace] - planned[0][vk::Category::workspace];
    const int64_t qat_measured = measured[1][vk::Category::workspace] - measured[0][vk::Category::workspace];
    MESSAGE(what << " bf16 --qat nf4: scratch planned " << qat_planned << " B, measured " << qat_measured << " B");
    CHECK(qat_measured == qat_planned);
    // fq(W) of the largest weight (mlp 264 x 64) stays fp32 in a 16-bit run: 4 bytes per element.
    CHECK(qat_planned >= 264 * 64 * 4);
    for (vk::Category category : {vk::Category::activations, vk::Category::master_weights}) {
      CHECK(measured[1][category] == planned[1][category]);
      CHECK(planned[1][category] == planned[0][category]);
    }
  }
}

}  // TEST_SUITE
