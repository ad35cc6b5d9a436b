// The planner follows the run's precisions (issue 15 item 5): --bf16 / --fp16 activations, full
// finetuning with 16-bit weights beside fp32 master weights and states (or none: --pure-bf16), and
// the rules of thumb at the run's bytes per value, as AI Engineering computes them for a 13B model.
#include <doctest/doctest.h>

#include <string>

#include "engine/model/config.hpp"
#include "engine/model/session.hpp"
#include "engine/plan/plan.hpp"
#include "engine/plan/report.hpp"
#include "tests/support.hpp"

using namespace vkt;
using namespace vkt::plan;
using namespace vkt::spec;
using kernels::DType;

namespace {
// examples/configs/llama-2-13b.json: hidden 5120, 40 layers, 40 heads, intermediate 13824, vocab 32000.
ModelShape llama2_13b_shape() {
  return model::model_shape(model::load_model_config(test::source_dir() / "examples/configs/llama-2-13b.json"));
}
bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }
}  // namespace

TEST_SUITE("plan") {

TEST_CASE("plan precision: the Llama-2-13B fixture is the published shape") {
  const ModelShape shape = llama2_13b_shape();
  CHECK(shape.hidden == 5120);
  CHECK(shape.layers == 40);
  CHECK(shape.heads == 40);
  CHECK(shape.intermediate == 13824);
  CHECK(shape.vocab == 32000);
  CHECK(make_plan(shape, RunSettings{}).parameters.total == 13015864320ull);
}

TEST_CASE("plan precision: full --fp16 on 13B shows the book's 26 / 31.2 / 78 GB beside the fp32 states") {
  RunSettings full;
  full.method = Method::full;
  full.activation_dtype = DType::f16;
  full.batch = 1;
  full.seq_len = 512;
  const PlanReport report = make_report(llama2_13b_shape(), full, std::nullopt);
  const MemoryPlan& plan = report.training;
  const uint64_t n = plan.parameters.total;                           // 13,015,864,320
  const uint64_t norms = plan.parameters.norms, sixteen = n - norms;  // norm weights train in fp32
  // Ledger categories: fp16 weights, fp32 gradients (the matmuls accumulate micro-batches into
  // them), fp32 master weights in a category of their own and 2 fp32 AdamW states.
  CHECK(plan.bytes(vk::Category::base_weights) == sixteen * 2 + norms * 4);
  CHECK(plan.bytes(vk::Category::gradients) == n * 4);
  CHECK(master_weight_bytes(plan) == sixteen * 4);
  CHECK(plan.bytes(vk::Category::master_weights) == sixteen * 4);
  CHECK(plan.bytes(vk::Category::optimizer_state) == n * 8);
  CHECK(rules_bytes_per_value(plan) == 2.0);
  // The book's arithmetic at M = 2 B, to the report's printed precision (GB = 1e9 bytes).
  const std::string text = format_report(report);
  INFO(text);
  CHECK(contains(text, "weights N x M = 13.016B x 2.00 B = "));
  CHECK(contains(text, "(26.03 GB)"));                   // 13.016B x 2 B
  CHECK(contains(text, "(31.24 GB)"));                   // x 1.2
  CHECK(contains(text, "x 3 x 2 B)"));                   // gradients + 2 Adam states at 2 B ...
  CHECK(contains(text, "(78.10 GB)"));                   // ... 13.016B x 3 x 2 B
  CHECK(contains(text, "fp32 gradients, fp32 states"));  // ours: 4 + 8 B per parameter
  CHECK(contains(text, "(156.19 GB)"));
  CHECK(contains(text, "+ fp32 master weights"));
  CHECK(contains(text, "(52.06 GB)"));
  CHECK(contains(text, "base weights (fp16)"));
  // Serving the finetuned model: its fp16 weights (26.03 GB), not an fp32 copy.
  // (norm weights stay fp32: 0.8 MB of 26 GB)
  CHECK(report.inference.bytes(vk::Category::base_weights) == doctest::Approx(double(n) * 2).epsilon(1e-4));

  // fp32 full finetuning keeps M = 4 and no master copy.
  RunSettings fp32 = full;
  fp32.activation_dtype = DType::f32;
  const MemoryPlan fp32_plan = make_plan(llama2_13b_shape(), fp32);
  CHECK(rules_bytes_per_value(fp32_plan) == 4.0);
  CHECK(master_weight_bytes(fp32_plan) == 0);
  CHECK(fp32_plan.bytes(vk::Category::base_weights) == n * 4);
  CHECK(fp32_plan.bytes(vk::Category::optimizer_state) == n * 8);
  CHECK(contains(format_report(make_report(llama2_13b_shape(), fp32, std::nullopt)), "(156.19 GB)"));  // N x 3 x 4 B

  // --pure-bf16: bf16 weights, fp32 gradients and states, no master copy.
  RunSettings pure = full;
  pure.activation_dtype = DType::bf16;
  pure.pure_bf16 = true;
  const MemoryPlan pure_plan = make_plan(llama2_13b_shape(), pure);
  CHECK(master_weight_bytes(pure_plan) == 0);
  CHECK(pure_plan.bytes(vk::Category::base_weights) == sixteen * 2 + norms * 4);
  CHECK(pure_plan.bytes(vk::Category::optimizer_state) == n * 8);
  CHECK(pure_plan.device_bytes() + sixteen * 4 == make_plan(llama2_13b_shape(),
                                                            [&] {
                                                              RunSettings mixed = pure;
                                                              mixed.pure_bf16 = false;
                                                              return mixed;
                                                            }())
                                                      .device_bytes());
}

TEST_CASE("plan precision: bf16 activations take at most 0.55x the fp32 run's, LoRA parameters stay fp32") {
  for (bool checkpointing : {false, true}) {
    CAPTURE(checkpointing);
    RunSettings lora;
    lora.batch = 2;
    lora.seq_len = 256;
    lora.gradient_checkpointing = checkpointing;
    RunSettings bf16 = lora;
    bf16.activation_dtype = DType::bf16;
    const MemoryPlan fp32_plan = make_plan(llama2_13b_shape(), lora), bf16_plan = make_plan(llama2_13b_shape(), bf16);
    const double ratio =
        double(bf16_plan.bytes(vk::Category::activations)) / double(fp32_plan.bytes(vk::Category::activations));
    CAPTURE(ratio);
    CHECK(ratio <= 0.55);
    CHECK(ratio >= 0.5);  // only per-row statistics (rstd, logsumexp) stay fp32
    CHECK(double(saved_activation_bytes_per_layer(llama2_13b_shape(), bf16)) <=
          0.55 * double(saved_activation_bytes_per_layer(llama2_13b_shape(), lora)));
    // Activation gradients (backward scratch) follow too; LoRA, gradients and states stay fp32.
    CHECK(bf16_plan.find("grad_act.residual").bytes * 2 == fp32_plan.find("grad_act.residual").bytes);
    CHECK(bf16_plan.bytes(vk::Category::adapter_params) == fp32_plan.bytes(vk::Category::adapter_params));
    CHECK(bf16_plan.bytes(vk::Category::gradients) == fp32_plan.bytes(vk::Category::gradients));
    CHECK(bf16_plan.bytes(vk::Category::optimizer_state) == fp32_plan.bytes(vk::Category::optimizer_state));
    CHECK(bf16_plan.bytes(vk::Category::base_weights) == fp32_plan.bytes(vk::Category::base_weights));
  }
}

TEST_CASE(
    "plan precision: `vktune plan --method full --fp16` prints the book's numbers; --bf16 with --fp16 is refused") {
  const std::string vktune = "ASAN_OPTIONS=detect_leaks=0 " + (test::binary_dir() / "vktune").string();
  const std::string model = (test::source_dir() / "examples/configs/llama-2-13b.json").string();
  const std::pair<int, std::string> run =
      test::run_command(vktune + " plan --model " + model + " --method full --fp16 2>&1");
  const std::string& output = run.second;
  INFO(output);
  CHECK(run.first == 0);
  CHECK(contains(output, "activations fp16"));
  CHECK(contains(output, "(26.03 GB)"));
  CHECK(contains(output, "(31.24 GB)"));
  CHECK(contains(output, "(78.10 GB)"));
  auto [json_status, json] = test::run_command(vktune + " plan --model " + model + " --bf16 --json 2>&1");
  CHECK(json_status == 0);
  CHECK(contains(json, "\"activation_dtype\": \"bf16\""));
  auto [both_status, both] = test::run_command(vktune + " plan --model " + model + " --bf16 --fp16 2>&1");
  CHECK(both_status != 0);
  CHECK(contains(both, "--bf16 and --fp16 contradict each other"));
}

}  // TEST_SUITE
