// Bad input refused early and by name (issue 21, problems 4 and 5): flags the option table and the
// sampler refuse, another run's output folder, a resume that changed the run, a checkpoint step
// beyond the run, an output folder that cannot be written, a plan beyond the device budget, and a
// tensor whose shape contradicts config.json. Command-level cases run the built binary.
#include <doctest/doctest.h>

#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/model/config.hpp"
#include "engine/model/generate.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/plan/plan.hpp"
#include "engine/train/config.hpp"
#include "engine/train/trainer.hpp"
#include "tests/model_io_support.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

fs::path root() {
  fs::path dir = test::binary_dir() / "test-output" / "inputs";
  fs::create_directories(dir);
  return dir;
}

const train::OptionSpec& option(const std::string& name) {
  for (const auto& spec : train::option_table())
    if (spec.name == name) return spec;
  FAIL("no option " << name);
  return train::option_table().front();
}

train::TrainConfig tiny_run(const std::string& name) {
  train::TrainConfig config;
  config.model = test::tiny_model(root() / "model").string();
  config.data = test::tiny_dataset(root() / "data.jsonl", 16).string();
  config.output_dir = test::temp_dir("inputs-" + name).string();
  config.headless = true;
  config.max_steps = 4;
  config.per_device_train_batch_size = 2;
  config.logging_steps = 1;
  config.save_steps = 2;
  config.lora_r = 4;
  return config;
}

// A copy of the tiny model whose layer-0 k_proj is stored transposed: the same element count,
// the shape config.json contradicts.
fs::path transposed_k_proj_model() {
  fs::path source = test::tiny_model(root() / "model");
  fs::path dir = root() / "transposed";
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& entry : fs::directory_iterator(source))
    if (entry.path().extension() != ".safetensors") fs::copy_file(entry.path(), dir / entry.path().filename());
  model::SafetensorsFile weights(source / "model.safetensors");
  std::vector<model::TensorToWrite> tensors;
  for (const model::TensorView& tensor : weights.tensors()) {
    std::vector<uint64_t> shape = tensor.shape;
    if (tensor.name == "model.layers.0.self_attn.k_proj.weight") std::swap(shape[0], shape[1]);
    tensors.push_back(model::TensorToWrite::from_bytes(tensor.name, tensor.dtype, shape, tensor.bytes));
  }
  model::write_safetensors(dir / "model.safetensors", std::move(tensors));
  return dir;
}

std::string vktune() { return (test::binary_dir() / "vktune").string(); }

}  // namespace

TEST_SUITE("train_inputs") {

TEST_CASE("flags: NaN and Inf, non-positive alpha and out-of-range values are refused by name") {
  train::TrainConfig config;
  CHECK(test::user_error_of([&] {
          train::set_option(config, option("max_grad_norm"), "nan");
        }).find("--max-grad-norm expects a finite number, got 'nan'") != std::string::npos);
  CHECK(test::user_error_of([&] {
          train::set_option(config, option("learning_rate"), "inf");
        }).find("--learning-rate expects a finite number") != std::string::npos);
  CHECK(test::user_error_of([&] { train::set_option(config, option("lora_dropout"), "-nan"); }).find("finite") !=
        std::string::npos);

  config.model = "m", config.data = "d", config.output_dir = "o";
  train::TrainConfig c = config;
  c.lora_alpha = -16;
  CHECK(test::user_error_of([&] { train::validate(c); }).find("--lora-alpha must be positive, got -16") !=
        std::string::npos);
  c.lora_alpha = 0;
  CHECK(test::user_error_of([&] { train::validate(c); }).find("--lora-alpha must be positive") != std::string::npos);
  c = config;
  c.adam_beta2 = 1.5;
  CHECK(test::user_error_of([&] { train::validate(c); }).find("--adam-beta2") != std::string::npos);
  c = config;
  c.overwrite_output_dir = true;
  c.resume_from_checkpoint = "latest";
  CHECK(test::user_error_of([&] { train::validate(c); }).find("contradict") != std::string::npos);
  CHECK_NOTHROW(train::validate(config));
  // --qat: parsed from vktune quantize's names; refused where the merged product has no meaning.
  c = config;
  train::set_option(c, option("qat"), "int4");
  CHECK(c.qat == kernels::WeightFormat::int4);
  CHECK_NOTHROW(train::validate(c));
  c.lora_dropout = 0.05;
  CHECK(test::user_error_of([&] { train::validate(c); }).find("--lora-dropout 0.05 contradicts it") !=
        std::string::npos);
  c.lora_dropout = 0;
  c.peft_type = spec::PeftType::dora;
  CHECK(test::user_error_of([&] { train::validate(c); }).find("--qat goes with --peft-type lora") != std::string::npos);
  c.peft_type = spec::PeftType::lora;
  c.bf16 = true;  // 16-bit activations (and weights with --method full) are wired: test_model_qat16.cpp
  CHECK_NOTHROW(train::validate(c));
  c = config;
  c.qat = kernels::WeightFormat::gguf;
  CHECK(test::user_error_of([&] { train::validate(c); }).find("--qat gguf is not a format") != std::string::npos);

  // --lora-r above min(in, out) of the smallest targeted module (the planner refuses it, so `vktune
  // plan` does too): hidden 256, 4 heads of 64, 2 kv
  // heads -> v_proj is 256 -> 128.
  spec::ModelShape shape{256, 512, 2, 4, 2, 64, 300, false, false};
  spec::RunSettings settings;
  settings.target_modules = {spec::Module::q_proj, spec::Module::v_proj};
  settings.lora_r = 100000;
  std::string message = test::user_error_of([&] { plan::make_plan(shape, settings); });
  CHECK(message.find("--lora-r 100000 is larger than v_proj's smaller side (256 in, 128 out features)") !=
        std::string::npos);
  CHECK(message.find("use at most 128") != std::string::npos);
  settings.lora_r = 128;
  CHECK_NOTHROW(plan::make_plan(shape, settings));

  model::SamplingOptions sampling;
  sampling.temperature = -1;
  CHECK(test::user_error_of([&] {
          model::validate_sampling(sampling);
        }).find("--temperature must be a finite number >= 0") != std::string::npos);
  sampling.temperature = 0.7f;
  sampling.top_p = 2;
  CHECK(test::user_error_of([&] { model::validate_sampling(sampling); }).find("--top-p must be in (0, 1], got 2") !=
        std::string::npos);
  sampling.top_p = 0.9f;
  CHECK_NOTHROW(model::validate_sampling(sampling));
}

TEST_CASE("tokenizer ids beyond config.json's vocab_size are refused") {
  model::ModelConfig config;
  config.vocab_size = 256;
  CHECK(test::user_error_of([&] {
          model::check_tokenizer_fits(config, 300, "m/tokenizer.json");
        }).find("m/tokenizer.json: the tokenizer has ids up to 299, but config.json's vocab_size is 256") !=
        std::string::npos);
  CHECK_NOTHROW(model::check_tokenizer_fits(config, 256, "m/tokenizer.json"));
}

TEST_CASE("vktune: bad flags and bad models exit with a named error before anything loads") {
  const fs::path model = test::tiny_model(root() / "model");
  const fs::path data = test::tiny_dataset(root() / "data.jsonl", 16);
  const fs::path out = root() / "cli-out";
  fs::remove_all(out);
  const std::string train =
      vktune() + " train --headless --model " + model.string() + " --data " + data.string() + " --output-dir ";
  struct Case {
    std::string command, expected;
  };
  test::TinyModelOptions wide;
  wide.hidden = 256;
  const fs::path wide_model = test::tiny_model(root() / "wide-model", wide);
  const fs::path huge = root() / "huge";
  fs::create_directories(huge);
  json config = json::parse(read_text_file(model / "config.json"));
  config["num_hidden_layers"] = 1e9;
  write_file_atomically(huge / "layers.json", config.dump());
  config = json::parse(read_text_file(model / "config.json"));
  config["hidden_size"] = int64_t{1} << 40;
  write_file_atomically(huge / "hidden.json", config.dump());
  const fs::path transposed = transposed_k_proj_model();
  const fs::path file_as_dir = root() / "a-file";
  std::ofstream(file_as_dir) << "not a folder";

  const Case cases[] = {
      {train + out.string() + " --lora-alpha -16", "--lora-alpha must be positive"},
      {train + out.string() + " --max-grad-norm nan", "--max-grad-norm expects a finite number"},
      {vktune() + " train --headless --model " + wide_model.string() + " --data " + data.string() + " --output-dir " +
           out.string() + " --lora-r 100000",
       "--lora-r 100000 is larger than v_proj's smaller side (256 in, 128 out features)"},
      {vktune() + " generate --model " + model.string() + " --prompt hi --temperature -1 --top-p 2",
       "--temperature must be a finite number >= 0"},
      {vktune() + " generate --model " + model.string() + " --prompt hi --top-p 2", "--top-p must be in (0, 1], got 2"},
      {vktune() + " evaluate --loss --model " + model.string() + " --data " + data.string() +
           " --prompt-loss-weight nan",
       "--prompt-loss-weight must be in [0, 1]"},
      {vktune() + " plan --model " + (huge / "layers.json").string(),
       "\"num_hidden_layers\" is 1000000000, above vktune's limit of 1024"},
      {vktune() + " plan --model " + (huge / "hidden.json").string(),
       "\"hidden_size\" is 1099511627776, above vktune's limit"},
      {vktune() + " generate --model " + transposed.string() + " --prompt hi",
       "tensor model.layers.0.self_attn.k_proj.weight has shape [32, 16], config.json implies [16, 32]"},
      // The weights are bad too: the output folder must be refused first, before the model loads.
      {vktune() + " train --headless --model " + transposed.string() + " --data " + data.string() + " --output-dir " +
           file_as_dir.string(),
       "is a file, not a folder"},
      {vktune() + " train --headless --model " + transposed.string() + " --data " + data.string() + " --output-dir " +
           (file_as_dir / "run").string(),
       "a-file is a file, not a folder"},
  };
  for (const Case& c : cases) {
    const auto status_output = test::run_command(c.command);
    const int status = status_output.first;
    const std::string& output = status_output.second;
    INFO(c.command << "\n" << output);
    CHECK(status == 1);  // a UserError, not a crash (exit 3) or a run
    CHECK(output.find(c.expected) != std::string::npos);
    CHECK(output.find("HINT") != std::string::npos);
  }
  CHECK_FALSE(fs::exists(out));

  // A read-only output folder (root writes anywhere: then a path the kernel refuses to create).
  fs::path read_only = root() / "read-only";
  fs::create_directories(read_only);
  fs::permissions(read_only, fs::perms::owner_read | fs::perms::owner_exec);
  fs::path target = geteuid() == 0 ? fs::path("/proc/self/vktune-out") : read_only / "run";
  const auto status_output = test::run_command(vktune() + " train --headless --model " + transposed.string() +
                                               " --data " + data.string() + " --output-dir " + target.string());
  const int status = status_output.first;
  const std::string& output = status_output.second;
  INFO(output);
  CHECK(status == 1);
  CHECK(output.find("cannot create --output-dir " + target.string()) != std::string::npos);
  CHECK(output.find("HINT: give an --output-dir in a folder you can write to") != std::string::npos);
  fs::permissions(read_only, fs::perms::owner_all);
}

TEST_CASE("train: another run's folder is refused, replaced only with --overwrite-output-dir") {
  train::TrainConfig first = tiny_run("identity");
  train::train(first);
  REQUIRE(fs::exists(fs::path(first.output_dir) / "checkpoint-2"));
  json identity = json::parse(read_text_file(fs::path(first.output_dir) / "run.json"))["identity"];
  CHECK(identity["learning_rate"] == first.learning_rate);
  CHECK(identity["per_device_train_batch_size"] == 2);
  CHECK(identity["data_hash"].get<std::string>().size() == 16);
  CHECK(identity["model_safetensors_bytes"].get<uint64_t>() > 0);

  train::TrainConfig second = first;
  second.learning_rate = 1e-3;
  second.save_steps = 0;
  CHECK(test::user_error_of([&] { train::train(second); }).find("already holds a run") != std::string::npos);

  // A resume with another batch size or learning rate names the fields, old and new.
  train::TrainConfig resumed = second;
  resumed.resume_from_checkpoint = "latest";
  resumed.per_device_train_batch_size = 4;
  std::string message = test::user_error_of([&] { train::train(resumed); });
  CHECK(message.find("learning_rate: 5e-05 -> 0.001") != std::string::npos);
  CHECK(message.find("per_device_train_batch_size: 2 -> 4") != std::string::npos);
  CHECK(message.find("--ignore-config-mismatch") != std::string::npos);

  // A step beyond the run's total steps is refused with the file's name.
  fs::path state_file = fs::path(first.output_dir) / "checkpoint-2" / "trainer_state.json";
  json state = json::parse(read_text_file(state_file));
  state["step"] = int64_t{1000000000000};
  write_file_atomically(state_file, state.dump());
  resumed = first;
  resumed.resume_from_checkpoint = (fs::path(first.output_dir) / "checkpoint-2").string();
  message = test::user_error_of([&] { train::train(resumed); });
  CHECK(message.find(state_file.string() + ": \"step\" is 1000000000000, outside this run's 0..4 steps") !=
        std::string::npos);

  // --overwrite-output-dir: the old run's checkpoints are gone, `latest` cannot find them.
  second.overwrite_output_dir = true;
  train::train(second);
  CHECK_FALSE(fs::exists(fs::path(first.output_dir) / "checkpoint-2"));
  CHECK(json::parse(read_text_file(fs::path(first.output_dir) / "run.json"))["identity"]["learning_rate"] == 1e-3);

  // --ignore-config-mismatch resumes anyway.
  train::TrainConfig third = tiny_run("identity-ignore");
  train::train(third);
  third.resume_from_checkpoint = "latest";
  third.learning_rate = 2e-4;
  CHECK(test::user_error_of([&] { train::train(third); }).find("learning_rate") != std::string::npos);
  third.ignore_config_mismatch = true;
  CHECK_NOTHROW(train::train(third));
}

TEST_CASE("train: the pre-flight refuses a plan beyond the device budget, with the planner's advice") {
  // The tiny model's tokenizer with a config.json the size of a 3.8T-parameter model.
  fs::path dir = root() / "too-big";
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::path tiny = test::tiny_model(root() / "model");
  for (const auto& entry : fs::directory_iterator(tiny))
    if (entry.path().extension() != ".safetensors") fs::copy_file(entry.path(), dir / entry.path().filename());
  json config = json::parse(read_text_file(dir / "config.json"));
  config["num_hidden_layers"] = 1024;
  config["hidden_size"] = 16384;
  config["intermediate_size"] = 65536;
  config["num_attention_heads"] = 128;
  config["num_key_value_heads"] = 8;
  config.erase("head_dim");
  write_file_atomically(dir / "config.json", config.dump());

  train::TrainConfig run = tiny_run("preflight");
  run.model = dir.string();
  std::string message = test::user_error_of([&] { train::train(run); });
  CHECK(message.find("the memory plan needs") != std::string::npos);
  CHECK(message.find("what to change, cheapest first") != std::string::npos);
  CHECK(message.find("--no-preflight") != std::string::npos);
  // --no-preflight goes on to load the model (which has no weights here).
  run.no_preflight = true;
  fs::remove_all(run.output_dir);
  message = test::user_error_of([&] { train::train(run); });
  CHECK(message.find("the memory plan needs") == std::string::npos);
  CHECK(message.find("safetensors") != std::string::npos);
}

}  // TEST_SUITE
