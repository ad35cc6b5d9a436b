// The memory planner: the seeds' worked checks, parameter counts of published shapes, and
// the format arithmetic. (Plan vs measured ledger is checked where the model trains.)
#include <doctest/doctest.h>

#include "engine/base/error.hpp"
#include "engine/kernels/optimizer_8bit.hpp"
#include "engine/plan/plan.hpp"

using namespace vkt;
using namespace vkt::plan;
using namespace vkt::spec;

namespace {
// Llama-3-8B and Llama-2-13B as their config.json files give them (examples/configs/).
ModelShape llama3_8b() { return {4096, 14336, 32, 32, 8, 128, 128256, false, false}; }
ModelShape llama2_13b() { return {5120, 13824, 40, 40, 40, 128, 32000, false, false}; }
}  // namespace

TEST_SUITE("plan") {

TEST_CASE("rules of thumb: the seeds' worked checks") {
  // A 13B model at 2 bytes per value: 26 GB of weights, about 31.2 GB to serve.
  RulesOfThumb serve = rules_of_thumb(13e9, 2, 13e9, 2);
  CHECK(serve.weights_bytes == doctest::Approx(26e9));
  CHECK(serve.inference_bytes == doctest::Approx(31.2e9));
  // Full finetuning with Adam at 2 bytes: a gradient and 2 states per parameter, 13B x 3 x 2 B.
  CHECK(serve.gradients_and_states == doctest::Approx(78e9));
  // With 1B trainable parameters (PEFT) the same arithmetic gives 6 GB.
  CHECK(rules_of_thumb(13e9, 2, 1e9, 2).gradients_and_states == doctest::Approx(6e9));
  CHECK(rules_of_thumb(13e9, 2, 1e9, optimizer_states_per_parameter(Optimizer::sgd)).gradients_and_states ==
        doctest::Approx(2e9));
}

TEST_CASE("sizes whose byte counts would wrap 64 bits are a UserError, not a tiny plan") {
  RunSettings settings;
  ModelShape huge = llama3_8b();
  huge.hidden = uint64_t{1} << 40;  // hidden x hidden x 4 bytes wraps
  CHECK_THROWS_AS(make_plan(huge, settings), UserError);
  CHECK_THROWS_AS(saved_activation_bytes_per_layer(huge, settings), UserError);
  ModelShape wide = llama3_8b();
  wide.vocab = uint64_t{1} << 31;
  wide.hidden = uint64_t{1} << 31;  // each fits, vocab x hidden x 4 x buffers does not
  try {
    make_plan(wide, settings);
    FAIL("no error");
  } catch (const UserError& error) {
    CHECK(std::string(error.what()).find("the memory plan overflows 64-bit sizes") != std::string::npos);
    CHECK_FALSE(error.hint().empty());
  }
  RunSettings long_run;
  long_run.batch = uint64_t{1} << 40;
  long_run.seq_len = uint64_t{1} << 30;  // batch x tokens wraps
  CHECK_THROWS_AS(make_plan(llama3_8b(), long_run), UserError);
  CHECK_NOTHROW(make_plan(llama3_8b(), settings));
}

TEST_CASE("parameter counts match the published models") {
  RunSettings settings;
  MemoryPlan plan8b = make_plan(llama3_8b(), settings);
  CHECK(plan8b.parameters.total == 8030261248ull);
  // PEFT's print_trainable_parameters for r=8 on q_proj,v_proj of Llama-3-8B.
  CHECK(plan8b.parameters.trainable == 3407872ull);
  MemoryPlan plan13b = make_plan(llama2_13b(), settings);
  CHECK(plan13b.parameters.total == 13015864320ull);
}

TEST_CASE("weight bytes per format") {
  const uint64_t n = 4096ull * 4096;
  CHECK(weight_bytes(n, WeightFormat::f32, 64, false) == n * 4);
  CHECK(weight_bytes(n, WeightFormat::bf16, 64, false) == n * 2);
  CHECK(weight_bytes(n, WeightFormat::int8, 64, false) == n + n / 64 * 4);
  // NF4: half a byte per value plus an fp32 absmax per 64 values ...
  CHECK(weight_bytes(n, WeightFormat::nf4, 64, false) == n / 2 + n / 64 * 4);
  // ... or with double quantization an 8-bit absmax per 64 values and an fp32 scale per 256 blocks.
  CHECK(weight_bytes(n, WeightFormat::nf4, 64, true) == n / 2 + n / 64 + n / 64 / 256 * 4);
  // That is 4.127 bits per parameter, the QLoRA paper's figure.
  CHECK(double(weight_bytes(n, WeightFormat::nf4, 64, true)) * 8 / double(n) == doctest::Approx(4.127).epsilon(0.001));
  CHECK(weight_bytes(100, WeightFormat::int4_asym, 64, false) == 64 + 2 * 4 + 2);  // tail block padded
}

TEST_CASE("categories add up and follow the settings") {
  RunSettings lora;
  lora.batch = 2;
  lora.seq_len = 256;
  MemoryPlan plan = make_plan(llama3_8b(), lora);
  uint64_t trainable = plan.parameters.trainable;
  CHECK(plan.bytes(vk::Category::adapter_params) == trainable * 4);
  CHECK(plan.bytes(vk::Category::gradients) == trainable * 4);
  CHECK(plan.bytes(vk::Category::optimizer_state) == trainable * 8);
  uint64_t sum = 0;
  for (size_t c = 0; c < vk::category_count; c++) sum += plan.bytes(vk::Category(c));
  CHECK(sum == plan.total_bytes());

  RunSettings qlora = lora;
  qlora.method = Method::qlora;
  MemoryPlan quantized = make_plan(llama3_8b(), qlora);
  CHECK(quantized.settings.base_format == WeightFormat::nf4);
  CHECK(quantized.bytes(vk::Category::quantized_weights) < plan.bytes(vk::Category::base_weights) / 7);

  RunSettings checkpointed = lora;
  checkpointed.gradient_checkpointing = true;
  MemoryPlan recompute = make_plan(llama3_8b(), checkpointed);
  CHECK(recompute.bytes(vk::Category::activations) < plan.bytes(vk::Category::activations) / 4);

  RunSettings offloaded = lora;
  offloaded.offload_optimizer = true;
  MemoryPlan offload = make_plan(llama3_8b(), offloaded);
  CHECK(offload.bytes(vk::Category::optimizer_state, vk::MemoryKind::offload) == trainable * 8);
  CHECK(offload.device_bytes() == plan.device_bytes() - trainable * 8);

  // --paged-optimizer: on the device while the budget allows; the excess (and only about that much)
  // in host memory, from the last tensors backwards.
  const uint64_t states = trainable * 8;
  RunSettings paging = lora;
  paging.page_optimizer = true;
  paging.paging_budget_bytes = plan.device_bytes();  // everything fits: nothing paged
  CHECK(make_plan(llama3_8b(), paging).bytes(vk::Category::optimizer_state, vk::MemoryKind::offload) == 0);
  paging.paging_budget_bytes = plan.device_bytes() - states / 3;
  MemoryPlan paged = make_plan(llama3_8b(), paging);
  uint64_t paged_bytes = paged.bytes(vk::Category::optimizer_state, vk::MemoryKind::offload);
  uint64_t largest_state = 0;
  for (const auto& buffer : plan.buffers)
    if (buffer.category == vk::Category::optimizer_state) largest_state = std::max(largest_state, buffer.bytes);
  CHECK(paged.device_bytes() <= paging.paging_budget_bytes);
  CHECK(paged_bytes >= states / 3);
  CHECK(paged_bytes < states / 3 + largest_state);  // no more than one tensor's states beyond the excess
  CHECK(paged.bytes(vk::Category::optimizer_state) == states);
  CHECK(paged.total_bytes() == plan.total_bytes());
  std::vector<const BufferSpec*> state_buffers;  // in plan order: layer 0 first
  for (const auto& buffer : paged.buffers)
    if (buffer.category == vk::Category::optimizer_state) state_buffers.push_back(&buffer);
  REQUIRE(state_buffers.size() > 2);
  CHECK(state_buffers.front()->kind == vk::MemoryKind::device);  // the first layers stay ...
  CHECK(state_buffers.back()->kind == vk::MemoryKind::offload);  // ... the last ones are paged first
  paging.paging_budget_bytes = 1;  // cannot fit: every state paged, the rest stays as planned
  MemoryPlan all_paged = make_plan(llama3_8b(), paging);
  CHECK(all_paged.bytes(vk::Category::optimizer_state, vk::MemoryKind::offload) == states);
  CHECK(all_paged.device_bytes() == offload.device_bytes());

  RunSettings full = lora;
  full.method = Method::full;
  MemoryPlan full_plan = make_plan(llama2_13b(), full);
  CHECK(full_plan.parameters.trainable == full_plan.parameters.total);
  CHECK(full_plan.bytes(vk::Category::optimizer_state) == full_plan.parameters.total * 8);

  // adamw_8bit (bitsandbytes' blockwise states): 1 B per value + an fp32 absmax per 256 for each of
  // the two states on tensors of >= 4096 values (the 13B's norms, 5120, too); smaller ones keep fp32.
  RunSettings full_8bit = full;
  full_8bit.optimizer = spec::Optimizer::adamw_8bit;
  MemoryPlan plan_8bit = make_plan(llama2_13b(), full_8bit);
  const double states_8bit = double(plan_8bit.bytes(vk::Category::optimizer_state));
  CHECK(states_8bit <= 0.3 * double(full_plan.bytes(vk::Category::optimizer_state)));
  CHECK(states_8bit >= 2.0 * double(full_plan.parameters.total) * (1 + 4.0 / 256));
  CHECK(plan_8bit.bytes(vk::Category::gradients) == full_plan.bytes(vk::Category::gradients));
  const uint64_t proj = 5120ull * 5120;  // one q_proj: codes then 102400 absmax, per state
  CHECK(plan_8bit.find("adam_m.model.layers.0.self_attn.q_proj.weight").bytes == proj + 4 * proj / 256);
  CHECK(plan_8bit.find("adam_v.model.layers.0.input_layernorm.weight").bytes == 5120 + 4 * 20);
  CHECK(kernels::adamw_8bit_state_bytes(4095) == 4 * 4095);
  CHECK(kernels::adamw_8bit_state_bytes(4097) == 4100 + 4 * 17);
  RunSettings sgd = full;
  sgd.optimizer = spec::Optimizer::sgd;
  CHECK(make_plan(llama2_13b(), sgd).bytes(vk::Category::optimizer_state) == 0);
}

TEST_CASE("optimizer names: HF's --optim names, paged_* = the update with offloaded states") {
  using spec::Optimizer;
  CHECK(std::string(spec::optimizer_name(Optimizer::adamw)) == "adamw_torch");
  CHECK(enum_from_name(spec::optimizer_names(), "adamw") == Optimizer::adamw);
  CHECK(enum_from_name(spec::optimizer_names(), "paged_adamw_8bit") == Optimizer::paged_adamw_8bit);
  CHECK(spec::optimizer_update_rule(Optimizer::paged_adamw_8bit) == Optimizer::adamw_8bit);
  CHECK(spec::optimizer_update_rule(Optimizer::paged_adamw_32bit) == Optimizer::adamw);
  CHECK(spec::optimizer_is_paged(Optimizer::paged_adamw_32bit));
  CHECK_FALSE(spec::optimizer_is_paged(Optimizer::adamw_8bit));
  CHECK(enum_name_list(spec::optimizer_names()) ==
        "adamw_torch, adamw_8bit, paged_adamw_32bit, paged_adamw_8bit, sgd, momentum, adafactor");
}

TEST_CASE("modules_to_save and trainable tokens: fp32 parameters, gradients and AdamW states in their categories") {
  RunSettings qlora;
  qlora.method = Method::qlora;
  qlora.batch = 1;
  qlora.seq_len = 128;
  const ModelShape shape = llama3_8b();
  const MemoryPlan plain = make_plan(shape, qlora);
  const uint64_t table = shape.vocab * shape.hidden;  // 525M values each: 2 GiB in fp32

  RunSettings saved = qlora;
  saved.save_embed_tokens = saved.save_lm_head = true;
  const MemoryPlan whole = make_plan(shape, saved);
  CHECK(whole.parameters.trainable == plain.parameters.trainable + 2 * table);
  CHECK(whole.bytes(vk::Category::adapter_params) == plain.bytes(vk::Category::adapter_params) + 2 * table * 4);
  CHECK(whole.bytes(vk::Category::gradients) == plain.bytes(vk::Category::gradients) + 2 * table * 4);
  CHECK(whole.bytes(vk::Category::optimizer_state) == plain.bytes(vk::Category::optimizer_state) + 2 * table * 8);
  // The frozen base tables are gone (the trained fp32 copies replace them); the linears stay NF4.
  CHECK(whole.bytes(vk::Category::base_weights) == plain.bytes(vk::Category::base_weights) - 2 * table * 4);
  CHECK(whole.bytes(vk::Category::quantized_weights) == plain.bytes(vk::Category::quantized_weights));

  ModelShape tied = shape;  // a tied model is untied: a frozen lm_head copy beside the trained embedding
  tied.tied_embeddings = true;
  RunSettings embed_only = qlora;
  embed_only.save_embed_tokens = true;
  const MemoryPlan untied = make_plan(tied, embed_only);
  CHECK(untied.find("lm_head.weight").category == vk::Category::base_weights);
  CHECK(untied.find("model.embed_tokens.weight").category == vk::Category::adapter_params);
  CHECK_FALSE(untied.contains("grad.lm_head.weight"));

  RunSettings tokens = qlora;
  tokens.trainable_token_indices = {128000, 128001, 128009};
  const MemoryPlan rows = make_plan(tied, tokens);
  const MemoryPlan tied_plain = make_plan(tied, qlora);
  CHECK(rows.parameters.trainable == tied_plain.parameters.trainable + 3 * shape.hidden);
  CHECK(rows.bytes(vk::Category::gradients) == tied_plain.bytes(vk::Category::gradients) + 3 * shape.hidden * 4);
  CHECK(rows.bytes(vk::Category::optimizer_state) ==
        tied_plain.bytes(vk::Category::optimizer_state) + 3 * shape.hidden * 8);
  CHECK(rows.contains("grad_act.token_logits"));  // the tied lm_head's share of the rows' gradients

  RunSettings both = tokens;
  both.save_embed_tokens = true;
  CHECK_THROWS_AS(make_plan(shape, both), UserError);
}

TEST_CASE("verdict and advice in order of cost") {
  RunSettings lora;
  lora.batch = 4;
  lora.seq_len = 2048;
  MemoryPlan plan = make_plan(llama3_8b(), lora);
  Verdict roomy = judge(plan, 200ull << 30);
  CHECK(roomy.fits);
  CHECK(roomy.advice.empty());
  Verdict tight = judge(plan, 12ull << 30);
  CHECK_FALSE(tight.fits);
  REQUIRE(!tight.advice.empty());
  CHECK(tight.advice[0].find("qlora") != std::string::npos);
  CHECK(tight.advice.back().find("(fits)") != std::string::npos);
  Verdict hopeless = judge(plan, 1ull << 30);
  CHECK(hopeless.advice.back().find("more memory") != std::string::npos);
}

}  // TEST_SUITE
