// The trainer when things go wrong: a diverging run stops at the first NaN/Inf step before any
// checkpoint holds it, NaN input weights are refused at load, a failed write (a full disk, a file
// size limit) stops the run with run.json "failed" and the last checkpoint intact, and SIGINT/SIGTERM/SIGHUP stop
// the built binary after a checkpoint with exit 130/143/129, resuming to the same adapter bytes.
#include <doctest/doctest.h>

#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/train/trainer.hpp"
#include "tests/model_io_support.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

fs::path shared_root() {
  fs::path root = test::binary_dir() / "test-output" / "e2e";  // the base model and data of test_train_e2e
  fs::create_directories(root);
  return root;
}

train::TrainConfig tiny_config(const std::string& name) {
  train::TrainConfig config = test::tiny_lora_config(shared_root(), "reliability-" + name);
  config.max_steps = 8;
  return config;
}

std::string run_state(const fs::path& output_dir) {
  return json::parse(read_text_file(output_dir / "run.json"))["state"].get<std::string>();
}

// Every checkpoint-N/adapter_model.safetensors under `output_dir`, with its NaN/Inf count.
std::vector<std::pair<fs::path, size_t>> checkpoint_adapters(const fs::path& output_dir) {
  std::vector<std::pair<fs::path, size_t>> result;
  for (const auto& entry : fs::directory_iterator(output_dir)) {
    fs::path adapter = entry.path() / "adapter_model.safetensors";
    if (!fs::exists(adapter)) continue;
    model::SafetensorsFile file(adapter);
    size_t non_finite = 0;
    for (const auto& tensor : file.tensors())
      for (float value : model::to_fp32(tensor)) non_finite += !std::isfinite(value);
    result.emplace_back(adapter, non_finite);
  }
  return result;
}

}  // namespace

TEST_SUITE("train_e2e") {

TEST_CASE("train: a diverging run stops at its first NaN step; no checkpoint holds NaN (issue 21 case)") {
  // The case: --learning-rate 1e6 --logging-steps 5 --save-steps 4 left checkpoint-4 all NaN.
  train::TrainConfig config = tiny_config("nan");
  config.learning_rate = 1e6;
  config.logging_steps = 5;
  config.save_steps = 4;
  config.max_steps = 12;
  std::string message = test::user_error_of([&] { train::train(config); });
  INFO(message);
  CHECK(message.find("became NaN or Inf") != std::string::npos);
  CHECK(message.find("a learning rate too high") != std::string::npos);
  CHECK(message.rfind("step ", 0) == 0);  // names the step
  CHECK(run_state(config.output_dir) == "failed");
  CHECK_FALSE(fs::exists(fs::path(config.output_dir) / "adapter_model.safetensors"));
  for (const auto& entry : checkpoint_adapters(config.output_dir)) {  // no structured binding: INFO captures it
    INFO(entry.first.string());
    CHECK(entry.second == 0);
  }
}

TEST_CASE("safetensors writer: a tensor holding NaN or Inf is refused by name, the old file stays") {
  fs::path path = test::temp_dir("reliability-writer") / "adapter_model.safetensors";
  std::vector<float> good = {1, 2, 3, 4};
  auto tensor_of = [](const std::string& name, const std::vector<float>& values) {
    return model::TensorToWrite{name, model::FileDtype::F32, {values.size()}, [values](model::TensorSink& sink) {
                                  sink.write(values.data(), values.size() * 4);
                                }};
  };
  model::write_safetensors(path, {tensor_of("a", good)});
  const std::string before = read_text_file(path);
  for (float bad : {NAN, INFINITY}) {
    std::vector<float> poisoned = good;
    poisoned[2] = bad;
    std::string message = test::user_error_of([&] {
      model::write_safetensors(path, {tensor_of("a", good), tensor_of("lora_B", poisoned)});
    });
    INFO(message);
    CHECK(message.find("\"lora_B\"") != std::string::npos);
    CHECK(message.find("element 2") != std::string::npos);
    CHECK(read_text_file(path) == before);
  }
  // bf16 and fp16 bits are checked as well.
  std::vector<uint16_t> bf16_inf = {0x3f80, 0x7f80};
  std::string message = test::user_error_of([&] {
    model::write_safetensors(
        path, {model::TensorToWrite::from_bytes("h", model::FileDtype::BF16, {2},
                                                {reinterpret_cast<const uint8_t*>(bf16_inf.data()), 4})});
  });
  CHECK(message.find("\"h\" holds NaN or Inf (element 1)") != std::string::npos);
}

TEST_CASE("train: input weights holding NaN are refused at load with the file and the tensor") {
  fs::path poisoned = test::temp_dir("reliability-poisoned-model");
  for (const auto& entry : fs::directory_iterator(test::tiny_pretrained_model(shared_root() / "base")))
    fs::copy(entry.path(), poisoned / entry.path().filename());
  const std::string target = "model.layers.1.mlp.up_proj.weight";
  test::poke_f32(poisoned / "model.safetensors", target, 5, NAN);
  for (spec::Method method : {spec::Method::lora, spec::Method::qlora}) {  // QLoRA checks the source values
    train::TrainConfig config = tiny_config("nan-model");
    config.model = poisoned.string();
    config.method = method;
    std::string message = test::user_error_of([&] { train::train(config); });
    INFO(message);
    CHECK(message.find((poisoned / "model.safetensors").string()) != std::string::npos);
    CHECK(message.find("\"" + target + "\" holds NaN at element 5") != std::string::npos);
  }
}

TEST_CASE("train: a full disk under metrics.jsonl stops the run; run.json failed, checkpoint intact, resumable") {
  if (!fs::exists("/dev/full")) {
    MESSAGE("no /dev/full here: skipped");
    return;
  }
  train::TrainConfig config = tiny_config("disk-full");
  config.save_steps = 2;
  const fs::path output(config.output_dir), metrics = output / "metrics.jsonl";
  struct HookReset {
    ~HookReset() { train::set_step_hook(nullptr); }
  } reset_hook;
  train::set_step_hook([&](int64_t step) {
    if (step != 2) return;
    fs::remove(metrics);  // from now on every write of metrics.jsonl fails with ENOSPC
    fs::create_symlink("/dev/full", metrics);
  });
  std::string message = test::user_error_of([&] { train::train(config); });
  train::set_step_hook(nullptr);  // the resume below runs without it
  INFO(message);
  CHECK(message.find(metrics.string()) != std::string::npos);
  CHECK(message.find("No space left on device") != std::string::npos);
  CHECK(run_state(output) == "failed");
  CHECK_FALSE(fs::exists(output / "checkpoint-3"));
  auto adapters = checkpoint_adapters(output);
  REQUIRE(adapters.size() == 1);
  CHECK(adapters[0].first.parent_path().filename() == "checkpoint-2");
  CHECK(adapters[0].second == 0);
  // Space is back: the run resumes from checkpoint-2 and finishes.
  fs::remove(metrics);
  train::TrainConfig resumed = config;
  resumed.resume_from_checkpoint = "latest";
  train::train(resumed);
  CHECK(run_state(output) == "finished");
  CHECK(fs::exists(output / "adapter_model.safetensors"));
}

TEST_CASE("train: a checkpoint that cannot be written stops the run; run.json failed, the last checkpoint intact") {
  // From step 3 on no file may grow past 8 KiB (RLIMIT_FSIZE: writes fail with EFBIG, no root or
  // full disk needed): checkpoint-4's adapter (16 KiB) cannot be written; run.json and
  // metrics.jsonl (2-3 KiB) still can.
  train::TrainConfig config = tiny_config("checkpoint-write-fails");
  config.save_steps = 2;
  const fs::path output(config.output_dir);
  rlimit saved{};
  REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
  struct Restore {
    rlimit limit;
    void (*previous)(int) = std::signal(SIGXFSZ, SIG_IGN);  // else the kernel's SIGXFSZ ends the process
    ~Restore() {
      setrlimit(RLIMIT_FSIZE, &limit);
      std::signal(SIGXFSZ, previous);
      train::set_step_hook(nullptr);
    }
  } restore{saved};
  train::set_step_hook([&](int64_t step) {
    if (step != 2) return;
    rlimit small = saved;
    small.rlim_cur = 8192;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
  });
  std::string message = test::user_error_of([&] { train::train(config); });
  setrlimit(RLIMIT_FSIZE, &saved);
  INFO(message);
  CHECK(message.find((output / "checkpoint-4").string()) != std::string::npos);
  CHECK(message.find("File too large") != std::string::npos);
  CHECK(run_state(output) == "failed");
  std::vector<std::string> entries;
  for (const auto& entry : fs::directory_iterator(output)) entries.push_back(entry.path().filename().string());
  std::sort(entries.begin(), entries.end());
  CHECK(entries == std::vector<std::string>{"checkpoint-2", "metrics.jsonl", "run.json"});  // no half checkpoint-4
  auto adapters = checkpoint_adapters(output);
  REQUIRE(adapters.size() == 1);
  CHECK(adapters[0].second == 0);
}

TEST_CASE(
    "vktune train: SIGINT, SIGTERM, SIGHUP stop after a checkpoint (130, 143, 129); resuming gives the same adapter") {
  const fs::path root = shared_root();
  const std::string vktune = (test::binary_dir() / "vktune").string();
  const std::string model = test::tiny_pretrained_model(root / "base").string();
  const std::string data = test::tiny_dataset(root / "data.jsonl", 64).string();
  auto train_command = [&](const fs::path& output, const std::string& env, const std::string& extra = "") {
    return env + " " + vktune + " train --headless --model " + model + " --data " + data + " --output-dir " +
           output.string() +
           " --max-steps 6 --per-device-train-batch-size 4 --learning-rate 1e-2 --lr-scheduler-type constant"
           " --logging-steps 1 --target-modules all-linear --lora-r 4 --lora-dropout 0.1 --seed 7 --plot " +
           (output / "dashboard.png").string() + extra;
  };
  const fs::path reference = test::temp_dir("reliability-signal-reference");
  const auto reference_status_reference_output = test::run_command(train_command(reference, ""));
  const int reference_status = reference_status_reference_output.first;
  const std::string& reference_output = reference_status_reference_output.second;
  INFO(reference_output);
  REQUIRE(reference_status == 0);
  const std::string reference_adapter = read_text_file(reference / "adapter_model.safetensors");
  REQUIRE(!reference_adapter.empty());

  struct Case {
    const char* name;
    int status;
  };
  // The trainer keeps an ignored SIGHUP ignored (nohup): make sure this process does not pass one on.
  struct DefaultHangup {
    void (*previous)(int) = std::signal(SIGHUP, SIG_DFL);
    ~DefaultHangup() { std::signal(SIGHUP, previous); }
  } default_hangup;
  for (Case c : {Case{"INT", 130}, Case{"TERM", 143}, Case{"HUP", 129}}) {
    CAPTURE(c.name);
    const fs::path output = test::temp_dir(std::string("reliability-signal-") + c.name);
    const auto status_text = test::run_command(
        train_command(output, std::string("VKT_TEST_RAISE_AT_STEP=3 VKT_TEST_RAISE_SIGNAL=") + c.name));
    const int status = status_text.first;
    const std::string& text = status_text.second;
    INFO(text);
    CHECK(status == c.status);
    CHECK(fs::exists(output / "checkpoint-3" / "trainer_state.json"));
    CHECK_FALSE(fs::exists(output / "adapter_model.safetensors"));  // a stopped run has no final adapter
    CHECK(run_state(output) == "stopped");
    if (std::string(c.name) != "TERM") continue;
    const auto resumed_status_resumed_text =
        test::run_command(train_command(output, "", " --resume-from-checkpoint latest"));
    const int resumed_status = resumed_status_resumed_text.first;
    const std::string& resumed_text = resumed_status_resumed_text.second;
    INFO(resumed_text);
    REQUIRE(resumed_status == 0);
    CHECK(run_state(output) == "finished");
    CHECK(read_text_file(output / "adapter_model.safetensors") == reference_adapter);  // byte for byte
  }

  // A second signal exits at once: no checkpoint, run.json still says where it was.
  const fs::path twice = test::temp_dir("reliability-signal-twice");
  const auto status_text = test::run_command(train_command(twice, "VKT_TEST_RAISE_AT_STEP=3,3"));
  const int status = status_text.first;
  const std::string& text = status_text.second;
  INFO(text);
  CHECK(status == 143);
  CHECK_FALSE(fs::exists(twice / "checkpoint-3"));
}

}  // TEST_SUITE
