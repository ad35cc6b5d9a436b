// The rules of thumb `train` and `plan` warn about (never refuse): LoRA rank, alpha:r, learning
// rate (and the base's pretraining rate), epochs by data size; LoRA/QLoRA proposed for a full
// finetune that does not fit; --dtype auto; the fp16 narrowing warning naming the tensor.
#include <doctest/doctest.h>

#include <fstream>

#include "engine/base/files.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/config.hpp"
#include "engine/model/session.hpp"
#include "engine/train/advice.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

train::TrainConfig sane_config() {
  train::TrainConfig c;
  c.method = spec::Method::qlora;
  c.lora_r = 16;
  c.lora_alpha = 32;
  c.learning_rate = 2e-4;
  return c;
}

train::AdviceFacts facts(int64_t examples, double epochs, std::optional<double> pretraining = std::nullopt) {
  return {pretraining, examples, epochs};
}

bool mentions(const std::vector<std::string>& advice, const std::string& text) {
  for (const auto& line : advice)
    if (line.find(text) != std::string::npos) return true;
  return false;
}

std::string vktune() { return (test::binary_dir() / "vktune").string(); }

}  // namespace

TEST_SUITE("train") {

TEST_CASE("advice: a sane configuration gets none; each rule fires on its own") {
  CHECK(train::hyperparameter_advice(sane_config(), facts(5000, 5, 3e-4)).empty());
  CHECK(train::hyperparameter_advice(sane_config(), facts(2000000, 1.5)).empty());
  CHECK(train::hyperparameter_advice(sane_config(), {}).empty());  // nothing known about data or base

  for (int64_t r : {2, 128}) {
    train::TrainConfig c = sane_config();
    c.lora_r = r;
    c.lora_alpha = double(r);
    auto advice = train::hyperparameter_advice(c, facts(5000, 5));
    CHECK(advice.size() == 1);
    CHECK(mentions(advice, "outside the usual 4-64"));
  }
  for (double alpha : {1.0, 256.0}) {  // alpha:r = 1:16 and 16:1
    train::TrainConfig c = sane_config();
    c.lora_alpha = alpha;
    auto advice = train::hyperparameter_advice(c, facts(5000, 5));
    CHECK(advice.size() == 1);
    CHECK(mentions(advice, "outside 1:8 .. 8:1"));
  }
  for (double alpha : {2.0, 128.0}) {  // exactly 1:8 and 8:1: inside
    train::TrainConfig c = sane_config();
    c.lora_alpha = alpha;
    CHECK(train::hyperparameter_advice(c, facts(5000, 5)).empty());
  }
  for (double lr : {5e-3, 1e-8}) {
    train::TrainConfig c = sane_config();
    c.learning_rate = lr;
    auto advice = train::hyperparameter_advice(c, facts(5000, 5));
    CHECK(advice.size() == 1);
    CHECK(mentions(advice, "outside the usual 1e-7 .. 1e-3"));
  }
  train::TrainConfig above = sane_config();
  above.learning_rate = 5e-4;  // inside the range, above the base's pretraining rate
  CHECK(
      mentions(train::hyperparameter_advice(above, facts(5000, 5, 3e-4)), "above the base's pretraining rate 0.0003"));
  CHECK(train::hyperparameter_advice(above, facts(5000, 5, 1e-3)).empty());

  // Epochs by data size: the demo's 0.66 epoch over 2.4k examples; 5 epochs over 2M examples.
  CHECK(mentions(train::hyperparameter_advice(sane_config(), facts(2400, 0.66)), "4-10 epochs"));
  CHECK(mentions(train::hyperparameter_advice(sane_config(), facts(2000000, 5)), "1-2 epochs"));
  CHECK(train::hyperparameter_advice(sane_config(), facts(2400, 2)).empty());   // half of 4: not far yet
  CHECK(train::hyperparameter_advice(sane_config(), facts(2400, 15)).empty());  // 1.5 x 10
  CHECK(train::recommended_epochs(300000) == std::pair<double, double>{2, 4});

  // Full finetuning has no rank or alpha to advise on; an --adapter brings its own.
  train::TrainConfig full = sane_config();
  full.method = spec::Method::full;
  full.lora_r = 2;
  CHECK(train::hyperparameter_advice(full, facts(5000, 5)).empty());
}

TEST_CASE("advice: the base's pretraining rate comes from a vktune run.json beside the model") {
  fs::path dir = test::temp_dir("advice-pretrained");
  CHECK(!train::pretraining_rate(dir));
  write_file_atomically(dir / "run.json", R"({"config": {"learning_rate": 0.003}, "state": "finished"})");
  REQUIRE(train::pretraining_rate(dir));
  CHECK(*train::pretraining_rate(dir) == 0.003);
  write_file_atomically(dir / "run.json", "not json");
  CHECK(!train::pretraining_rate(dir));
  // HF's files (and examples/base's training_args.json) are read too; run.json comes first.
  fs::remove(dir / "run.json");
  write_file_atomically(dir / "training_args.json", R"({"learning_rate": 0.002})");
  CHECK(train::pretraining_rate(dir) == 0.002);
  write_file_atomically(dir / "run.json", R"({"config": {"learning_rate": 0.003}, "state": "finished"})");
  CHECK(train::pretraining_rate(dir) == 0.003);
  CHECK(train::read_pretraining_lr(dir)->source == "run.json config.learning_rate");
}

TEST_CASE("advice: --dtype auto takes the model's torch_dtype; fp32 for full finetuning; a fixed one stays") {
  auto resolved = [](spec::Method method, train::DTypeChoice choice, const std::string& torch_dtype) {
    train::TrainConfig c;
    c.method = method;
    c.dtype = choice;
    train::resolve_auto_dtype(c, torch_dtype);
    return c.dtype;
  };
  using D = train::DTypeChoice;
  CHECK(train::TrainConfig{}.dtype == D::auto_);
  CHECK(resolved(spec::Method::lora, D::auto_, "bfloat16") == D::bf16);
  CHECK(resolved(spec::Method::qlora, D::auto_, "float16") == D::f16);
  CHECK(resolved(spec::Method::lora, D::auto_, "float32") == D::f32);
  CHECK(resolved(spec::Method::lora, D::auto_, "") == D::f32);  // no torch_dtype: fp32 as before
  CHECK(resolved(spec::Method::full, D::auto_, "bfloat16") == D::f32);
  CHECK(resolved(spec::Method::lora, D::f16, "bfloat16") == D::f16);
  CHECK(train::base_dtype(D::bf16) == kernels::DType::bf16);
  CHECK(train::base_dtype(D::auto_) == kernels::DType::f32);
}

TEST_CASE("advice: a full finetune of Llama-3-8B beyond 24 GiB gets LoRA and QLoRA with their numbers") {
  model::ModelConfig config = model::load_model_config(test::source_dir() / "examples/configs/llama-3-8b.json");
  spec::ModelShape shape = model::model_shape(config);
  spec::RunSettings full;
  full.method = spec::Method::full;
  full.batch = 1;
  full.seq_len = 512;
  plan::MemoryPlan plan = plan::make_plan(shape, full);
  const uint64_t budget = 24ull << 30;
  REQUIRE(!plan::judge(plan, budget).fits);
  auto lines = train::lighter_method_advice(plan, 8, config.torch_dtype, budget);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].rfind("--method lora --lora-r 8 --target-modules all-linear: ", 0) == 0);
  CHECK(lines[1].rfind("--method qlora --lora-r 8 --target-modules all-linear: ", 0) == 0);
  CHECK(lines[1].find("(fits)") != std::string::npos);  // NF4 8B: ~5 GiB of weights
  // LoRA keeps the bf16 base (auto dtype): 15 GiB of weights, not fp32's 30.
  spec::RunSettings lora = full;
  lora.method = spec::Method::lora;
  lora.dtype = kernels::DType::bf16;
  lora.base_format = kernels::WeightFormat::bf16;
  lora.target_modules = model::parse_target_modules("all-linear", &shape);
  CHECK(lines[0].find(format_bytes(double(plan::make_plan(shape, lora).device_bytes()))) != std::string::npos);
  spec::RunSettings lora_plan = full;
  lora_plan.method = spec::Method::lora;
  CHECK(train::lighter_method_advice(plan::make_plan(shape, lora_plan), 8, "bfloat16", budget).empty());
}

TEST_CASE("advice: vktune plan and train print the warnings; fp16 narrowing names the overflowing tensor") {
  const fs::path root = test::binary_dir() / "test-output" / "advice";
  fs::create_directories(root);
  const fs::path model = test::tiny_model(root / "model");
  const fs::path data = test::tiny_dataset(root / "data.jsonl", 16);
  const std::string base = (test::source_dir() / "examples/base").string();
  auto [plan_status, plan_output] =
      test::run_command(vktune() + " plan --model " + base + " --learning-rate 5e-3 --lora-r 128 2>&1");
  CHECK(plan_status == 0);
  CHECK(plan_output.find("advice: --learning-rate 0.005 is outside") != std::string::npos);
  CHECK(plan_output.find("advice: --lora-r 128") != std::string::npos);
  auto [sane_status, sane_output] =
      test::run_command(vktune() + " plan --model " + base + " --learning-rate 2e-4 2>&1");
  CHECK(sane_status == 0);
  CHECK(sane_output.find("advice:") == std::string::npos);

  // A weight beyond fp16's range: loading it in fp16 warns with its name (the run then goes on).
  const fs::path big = root / "big-model";
  fs::remove_all(big);
  fs::copy(model, big, fs::copy_options::recursive);
  test::poke_f32(big / "model.safetensors", "model.layers.1.mlp.down_proj.weight", 5, 1e6f);
  // detect_leaks=0: under the sanitizer build, a process that opened lavapipe reports a leak in a
  // module the loader has unloaded by exit, which LSan cannot suppress (CMakeLists.txt, sanitize_merge).
  const std::string train = "ASAN_OPTIONS=detect_leaks=0 " + vktune() + " train --model " + big.string() + " --data " +
                            data.string() + " --max-steps 1 --headless --overwrite-output-dir --lora-r 2 --output-dir ";
  auto [status, output] = test::run_command(train + (root / "out-fp16").string() + " --dtype fp16 2>&1");
  CHECK(output.find("model.layers.1.mlp.down_proj.weight: 1 values beyond fp16's ±65504") != std::string::npos);
  CHECK(output.find("advice: --lora-r 2 is outside the usual 4-64") != std::string::npos);
  auto [bf16_status, bf16_output] = test::run_command(train + (root / "out-bf16").string() + " --dtype bf16 2>&1");
  CHECK(bf16_status == 0);
  CHECK(bf16_output.find("beyond fp16") == std::string::npos);
}

}  // TEST_SUITE
