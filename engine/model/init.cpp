#include "engine/model/init.hpp"

#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>

#include "engine/base/files.hpp"
#include "engine/kernels/random.hpp"
#include "engine/model/safetensors.hpp"

namespace vkt::model {

ModelConfig small_llama_config(uint32_t vocab_size, uint32_t hidden, uint32_t layers, uint32_t heads, uint32_t kv_heads,
                               uint32_t intermediate, uint32_t max_positions) {
  ModelConfig c;
  c.architecture = Architecture::llama;
  c.hidden_size = hidden;
  c.intermediate_size = intermediate;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.vocab_size = vocab_size;
  c.max_position_embeddings = max_positions;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = true;
  c.torch_dtype = "float32";
  return c;
}

void write_new_model(const std::filesystem::path& directory, ModelConfig config,
                     const text::TrainedTokenizer& tokenizer, const NewModelOptions& options) {
  if (config.vocab_size < tokenizer.vocab_size) config.vocab_size = tokenizer.vocab_size;
  config.bos_token_id = tokenizer.bos_id;
  config.eos_token_ids = {tokenizer.eos_id};
  config.pad_token_id = tokenizer.pad_id;
  std::filesystem::create_directories(directory);
  const uint64_t hidden = config.hidden_size, vocab = config.vocab_size;
  const uint64_t q = config.q_size(), kv = config.kv_size(), inter = config.intermediate_size;
  uint32_t next_stream = 0;
  // Normal(0, std) from the counter-based RNG (Box-Muller): the same model on every machine. Each
  // tensor is generated inside its write callback (its stream fixed when it is listed), so only
  // one tensor's values are in memory at a time (a 1B model is 5 GB of fp32).
  const uint64_t seed = options.seed;
  const double range = options.initializer_range;
  auto normal_values = [seed, range](uint64_t count, uint32_t stream) {
    std::vector<float> uniform(count + (count & 1));
    ref::random_uniform(uniform.data(), uniform.size(), static_cast<uint32_t>(seed), random::stream_init + 1, stream,
                        0);
    for (uint64_t i = 0; i < count; i += 2) {  // in place: each pair becomes two normals
      double u1 = std::max(1e-12, double(uniform[i])), u2 = uniform[i + 1];
      double radius = std::sqrt(-2.0 * std::log(u1)) * range;
      uniform[i] = static_cast<float>(radius * std::cos(2 * M_PI * u2));
      uniform[i + 1] = static_cast<float>(radius * std::sin(2 * M_PI * u2));
    }
    uniform.resize(count);
    return uniform;
  };
  std::vector<TensorToWrite> tensors;
  using Values = std::function<std::vector<float>()>;
  auto normal = [&](uint64_t count) -> Values {
    return [normal_values, count, stream = next_stream++] { return normal_values(count, stream); };
  };
  auto add = [&](const std::string& name, std::vector<uint64_t> shape, Values values) {
    tensors.push_back({name, FileDtype::F32, shape, [values](TensorSink& sink) {
                         std::vector<float> data = values();
                         sink.write(data.data(), data.size() * 4);
                       }});
  };
  auto constant = [](uint64_t count, float value) -> Values {
    return [count, value] { return std::vector<float>(count, value); };
  };
  add("model.embed_tokens.weight", {vocab, hidden}, normal(vocab * hidden));
  for (int64_t layer = 0; layer < config.num_hidden_layers; layer++) {
    std::string p = "model.layers." + std::to_string(layer) + ".";
    add(p + "input_layernorm.weight", {hidden}, constant(hidden, 1.0f));
    add(p + "post_attention_layernorm.weight", {hidden}, constant(hidden, 1.0f));
    add(p + "self_attn.q_proj.weight", {q, hidden}, normal(q * hidden));
    add(p + "self_attn.k_proj.weight", {kv, hidden}, normal(kv * hidden));
    add(p + "self_attn.v_proj.weight", {kv, hidden}, normal(kv * hidden));
    add(p + "self_attn.o_proj.weight", {hidden, q}, normal(hidden * q));
    add(p + "mlp.gate_proj.weight", {inter, hidden}, normal(inter * hidden));
    add(p + "mlp.up_proj.weight", {inter, hidden}, normal(inter * hidden));
    add(p + "mlp.down_proj.weight", {hidden, inter}, normal(hidden * inter));
    if (config.qkv_bias) {
      add(p + "self_attn.q_proj.bias", {q}, constant(q, 0.0f));
      add(p + "self_attn.k_proj.bias", {kv}, constant(kv, 0.0f));
      add(p + "self_attn.v_proj.bias", {kv}, constant(kv, 0.0f));
    }
  }
  add("model.norm.weight", {hidden}, constant(hidden, 1.0f));
  if (!config.tie_word_embeddings) add("lm_head.weight", {vocab, hidden}, normal(vocab * hidden));
  write_safetensors(directory / "model.safetensors", std::move(tensors), {{"format", "pt"}});
  save_model_config(config, directory / "config.json");
  write_file_atomically(directory / "tokenizer.json", tokenizer.tokenizer_json + "\n");
  write_file_atomically(directory / "tokenizer_config.json", tokenizer.tokenizer_config_json + "\n");
  nlohmann::json generation = {{"bos_token_id", tokenizer.bos_id},
                               {"eos_token_id", tokenizer.eos_id},
                               {"pad_token_id", tokenizer.pad_id},
                               {"do_sample", false}};
  write_file_atomically(directory / "generation_config.json", generation.dump(2) + "\n");
}

}  // namespace vkt::model
