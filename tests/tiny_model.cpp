#include "tests/tiny_model.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/model/init.hpp"
#include "engine/train/trainer.hpp"

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

}  // namespace vkt::test
