#include "tests/tiny_model.hpp"
#include "tests/tiny_runs.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/model/init.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/text/trainer.hpp"
#include "engine/train/trainer.hpp"
#include "tests/support.hpp"

namespace vkt::test {

std::filesystem::path tiny_model(const std::filesystem::path& directory, const TinyModelOptions& o) {
  if (std::filesystem::exists(directory / "model.safetensors")) return directory;
  auto tokenizer = text::byte_level_tokenizer();
  model::ModelConfig config =
      model::small_llama_config(tokenizer.vocab_size, o.hidden, o.layers, o.heads, o.kv_heads, o.intermediate, 256);
  config.tie_word_embeddings = o.tied;
  if (o.qkv_bias) {
    config.architecture = model::Architecture::qwen2;
    config.qkv_bias = true;
  }
  model::NewModelOptions options;
  options.seed = o.seed;
  model::write_new_model(directory, config, tokenizer, options);
  return directory;
}

std::filesystem::path fim_tiny_model(const std::filesystem::path& directory) {
  if (std::filesystem::exists(directory / "model.safetensors")) return directory;
  text::TrainedTokenizer tokenizer = text::byte_level_tokenizer();
  nlohmann::ordered_json document = nlohmann::ordered_json::parse(tokenizer.tokenizer_json);
  nlohmann::ordered_json& added = document["added_tokens"];
  const nlohmann::ordered_json model_entry = added.back();
  for (const char* token : {"<fim_prefix>", "<fim_suffix>", "<fim_middle>"}) {
    nlohmann::ordered_json entry = model_entry;
    entry["id"] = tokenizer.vocab_size++;
    entry["content"] = token;
    added.push_back(entry);
  }
  tokenizer.tokenizer_json = document.dump(2);
  model::ModelConfig config = model::small_llama_config(tokenizer.vocab_size, 32, 2, 4, 2, 64, 256);
  model::write_new_model(directory, config, tokenizer);
  return directory;
}

void check_resume(const train::TrainConfig& full, int64_t crash_at, int64_t save_steps) {
  train::train(full);
  auto reference = test::logged_losses(full.output_dir);
  REQUIRE(reference.size() == size_t(full.max_steps));
  train::TrainConfig interrupted = full;
  interrupted.output_dir =
      test::temp_dir(std::filesystem::path(full.output_dir).filename().string() + "-crashed").string();
  interrupted.save_steps = save_steps;
  const std::string crash = "simulated crash after step " + std::to_string(crash_at);
  train::set_step_hook([crash_at, crash](int64_t step) {
    if (step == crash_at) throw std::runtime_error(crash);
  });
  CHECK_THROWS_WITH(train::train(interrupted), crash.c_str());
  train::set_step_hook(nullptr);
  const std::filesystem::path checkpoint =
      std::filesystem::path(interrupted.output_dir) / ("checkpoint-" + std::to_string(crash_at));
  CHECK(std::filesystem::exists(checkpoint / "trainer_state.json"));
  CHECK(std::filesystem::exists(checkpoint / "optimizer.safetensors"));
  train::TrainConfig resumed = interrupted;
  resumed.resume_from_checkpoint = "latest";
  train::train(resumed);
  auto losses = test::logged_losses(resumed.output_dir);
  REQUIRE(losses.size() == reference.size());
  for (size_t i = 0; i < losses.size(); i++) {
    INFO("step " << i + 1);
    CHECK(losses[i] == reference[i]);  // bit-identical: deterministic kernels, data order and RNG
  }
}

std::filesystem::path tiny_pretrained_model(const std::filesystem::path& directory) {
  if (std::filesystem::exists(directory / "model.safetensors")) return directory;
  std::filesystem::path work = directory.parent_path() / (directory.filename().string() + ".work");
  std::filesystem::create_directories(work);
  std::filesystem::path text = work / "text.jsonl";
  {
    std::ofstream out(text);
    const char* sentences[] = {"the sky is grey and the sea is grey.", "a leaf is green, the sun is gold.",
                               "Q: what is this? A: a question.",      "red, blue, green and gold are colors.",
                               "the sun and the sea and the sky.",     "A: yes. Q: no? A: maybe."};
    for (int i = 0; i < 48; i++) out << nlohmann::json{{"text", sentences[i % 6]}}.dump() << "\n";
  }
  train::TrainConfig config;
  config.model = tiny_model(work / "random").string();
  config.data = text.string();
  config.output_dir = directory.string();
  config.overwrite_output_dir = true;  // an earlier process may have stopped half way
  config.method = spec::Method::full;
  config.headless = true;
  config.max_steps = 40;
  config.per_device_train_batch_size = 8;
  config.learning_rate = 1e-2;
  config.lr_scheduler_type = train::ScheduleType::constant;
  config.logging_steps = 40;
  config.save_steps = 0;
  train::train(config);
  return directory;
}

std::filesystem::path tiny_dataset(const std::filesystem::path& path, int count, uint32_t seed) {
  std::mt19937 generator(seed);
  const char* colors[] = {"red", "blue", "green", "gold"};
  const char* things[] = {"sky", "sea", "leaf", "sun"};
  std::ofstream out(path);
  for (int i = 0; i < count; i++) {
    int thing = static_cast<int>(generator() % 4);
    nlohmann::json line = {{"prompt", std::string("Q: ") + things[thing] + "?"},
                           {"completion", std::string(" The answer is ") + colors[thing] + "."}};
    out << line.dump() << "\n";
  }
  return path;
}

train::TrainConfig tiny_random_lora_config(const std::filesystem::path& root, const std::string& output_name) {
  std::filesystem::create_directories(root);
  train::TrainConfig config;
  config.model = tiny_model(root / "student").string();
  config.data = tiny_dataset(root / "data16.jsonl", 16).string();
  config.output_dir = temp_dir(output_name).string();
  config.headless = true;
  config.per_device_train_batch_size = 4;
  config.learning_rate = 1e-2;
  config.lr_scheduler_type = train::ScheduleType::constant;
  config.logging_steps = 1;
  config.save_steps = 0;
  config.target_modules = "all-linear";
  config.lora_r = 4;
  config.seed = 7;
  return config;
}

train::TrainConfig tiny_lora_config(const std::filesystem::path& root, const std::string& output_name) {
  train::TrainConfig config = tiny_random_lora_config(root, output_name);
  config.model = tiny_pretrained_model(root / "base").string();
  config.data = tiny_dataset(root / "data.jsonl", 64).string();
  config.max_steps = 50;
  return config;
}

void poke_f32(const std::filesystem::path& file, const std::string& tensor, uint64_t element, float value) {
  uint64_t offset = 0;
  {
    model::SafetensorsFile mapped(file);
    const model::TensorView& view = mapped.tensor(tensor);
    if (view.dtype != model::FileDtype::F32 || element >= view.element_count())
      throw std::runtime_error("poke_f32: " + tensor + " is not F32 or has no element " + std::to_string(element));
    // Tensors tile the byte buffer from its start, which follows the 8-byte length and the header.
    offset =
        8 + mapped.header_size() + uint64_t(view.bytes.data() - mapped.tensors().front().bytes.data()) + 4 * element;
  }
  std::fstream out(file, std::ios::in | std::ios::out | std::ios::binary);
  out.seekp(static_cast<std::streamoff>(offset));
  out.write(reinterpret_cast<const char*>(&value), 4);
}

std::vector<double> logged_losses(const std::filesystem::path& output_dir) {
  std::vector<double> losses;
  std::ifstream in(output_dir / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json entry = nlohmann::json::parse(line);
    if (entry.contains("loss")) losses.push_back(entry["loss"]);
  }
  return losses;
}

double relative_weight_difference(const std::string& a_dir, const std::string& b_dir) {
  const char* file = std::filesystem::exists(std::filesystem::path(a_dir) / "adapter_model.safetensors")
                         ? "adapter_model.safetensors"
                         : "model.safetensors";
  model::SafetensorsFile a(std::filesystem::path(a_dir) / file), b(std::filesystem::path(b_dir) / file);
  double error = 0, reference = 0;
  for (const auto& tensor : a.tensors()) {
    auto x = model::to_fp32(tensor), y = model::to_fp32(b.tensor(tensor.name));
    for (size_t i = 0; i < x.size(); i++) {
      error += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
      reference += double(x[i]) * x[i];
    }
  }
  return std::sqrt(error / reference);
}

}  // namespace vkt::test
