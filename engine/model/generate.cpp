#include "engine/model/generate.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>

#include "engine/base/error.hpp"
#include "engine/model/adapter.hpp"

namespace vkt::model {

Generator::Generator(vk::Context& context, const GeneratorOptions& options) : context_(context), options_(options) {
  spec::RunSettings settings;
  settings.method = spec::Method::lora;
  settings.training = false;
  settings.base_format = options.base_format;
  settings.double_quant = options.double_quant;
  settings.dtype = options.dtype;
  settings.batch = 1;
  settings.seq_len = options.prefill_rows;
  settings.kv_cache_tokens = options.max_tokens;
  LoraSettings lora;
  const LoraSettings* lora_pointer = nullptr;
  if (options.adapter) {
    lora = load_adapter_config(*options.adapter).settings;
    settings.with_adapter = true;
    lora_pointer = &lora;
  }
  ModelConfig config = load_model_config(options.model);
  if (options.max_tokens > config.max_position_embeddings && config.max_position_embeddings > 0)
    options_.max_tokens = static_cast<uint32_t>(config.max_position_embeddings);
  settings.kv_cache_tokens = options_.max_tokens;
  session_ = open_model(context, options.model, settings, lora_pointer);
  if (options.adapter) load_adapter_weights(context, *session_->buffers, session_->plan.shape, lora, *options.adapter);
  logits_buffer_ = context.allocate(static_cast<uint64_t>(session_->config.vocab_size) * 4, vk::Category::workspace,
                                    "generate.logits");
}

uint32_t sample_token(const std::vector<float>& logits, const SamplingOptions& options, double uniform) {
  if (options.temperature <= 0)
    return static_cast<uint32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  std::vector<uint32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  size_t keep = order.size();
  if (options.top_k > 0) keep = std::min<size_t>(keep, options.top_k);
  std::vector<double> probabilities(keep);
  double top = logits[order[0]] / options.temperature, total = 0;
  for (size_t i = 0; i < keep; i++) total += probabilities[i] = std::exp(logits[order[i]] / options.temperature - top);
  if (options.top_p < 1) {
    // Nucleus: the smallest prefix whose probability reaches top_p (at least one token).
    double cumulative = 0;
    size_t cut = keep;
    for (size_t i = 0; i < keep; i++) {
      cumulative += probabilities[i] / total;
      if (cumulative >= options.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
    total = std::accumulate(probabilities.begin(), probabilities.begin() + static_cast<long>(keep), 0.0);
  }
  double target = uniform * total, cumulative = 0;
  for (size_t i = 0; i < keep; i++) {
    cumulative += probabilities[i];
    if (target < cumulative) return order[i];
  }
  return order[keep - 1];
}

namespace {
std::string number_text(float value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", double(value));
  return text;
}
}  // namespace

void validate_sampling(const SamplingOptions& sampling) {
  if (!std::isfinite(sampling.temperature) || sampling.temperature < 0)
    throw UserError("--temperature must be a finite number >= 0, got " + number_text(sampling.temperature),
                    "0 is greedy decoding; 0.7 to 1 is usual for sampling");
  if (!std::isfinite(sampling.top_p) || !(sampling.top_p > 0 && sampling.top_p <= 1))
    throw UserError("--top-p must be in (0, 1], got " + number_text(sampling.top_p),
                    "1 keeps every token; 0.9 samples from the most likely tokens that make up 90%");
}

std::vector<uint32_t> Generator::generate(const std::vector<uint32_t>& text_prompt, const SamplingOptions& sampling,
                                          const std::function<void(uint32_t)>& on_token) {
  validate_sampling(sampling);
  if (text_prompt.empty()) throw UserError("the prompt is empty", "give a prompt, e.g. --prompt \"Hello\"");
  // A soft prompt's virtual tokens come first (placeholders: the transformer writes their rows).
  std::vector<uint32_t> prompt(session_->plan.settings.virtual_tokens, 0u);
  prompt.insert(prompt.end(), text_prompt.begin(), text_prompt.end());
  auto& buffers = *session_->buffers;
  auto& transformer = *session_->transformer;
  const uint32_t capacity = options_.max_tokens;
  if (prompt.size() >= capacity)
    throw UserError(
        "the prompt has " + std::to_string(prompt.size()) + " tokens, the KV cache holds " + std::to_string(capacity),
        "shorten the prompt or raise --max-tokens");
  std::mt19937_64 generator(sampling.seed);
  std::vector<uint32_t> output;
  std::vector<uint32_t> sequence;  // every token the cache holds (or is about to)
  uint32_t past = 0;
  auto run_block = [&](const uint32_t* ids, uint32_t rows, bool long_rope) {
    std::vector<uint32_t> positions(rows);
    for (uint32_t i = 0; i < rows; i++) positions[i] = past + i;
    context_.upload(buffers.buffer("input.ids"), ids, 0, rows * 4);
    context_.upload(buffers.buffer("input.positions"), positions.data(), 0, rows * 4);
    transformer.upload_dynamic_rope(past + rows);
    context_.run([&](vk::Recorder& r) { transformer.record_decode(r, rows, past, logits_buffer_.range(), long_rope); });
    past += rows;
  };
  const ModelConfig& config = session_->config;
  auto run = [&](const uint32_t* ids, uint32_t rows) {
    sequence.insert(sequence.end(), ids, ids + rows);
    const bool long_rope = config.rope_uses_long_factors(past + rows);
    if (long_rope && past > 0 && !config.rope_uses_long_factors(past) && config.architecture == Architecture::phi3) {
      // transformers' Phi-3 generation drops its cache when the sequence first passes the longrope
      // switch and recomputes it all with the long factors (Phi3ForCausalLM.prepare_inputs_for_generation).
      past = 0;
      for (uint32_t start = 0; start < sequence.size(); start += options_.prefill_rows)
        run_block(sequence.data() + start,
                  std::min<uint32_t>(options_.prefill_rows, static_cast<uint32_t>(sequence.size()) - start), true);
    } else {
      run_block(ids, rows, long_rope);
    }
    logits_.resize(logits_buffer_.size() / 4);
    context_.download(logits_buffer_, logits_.data());
  };
  for (uint32_t start = 0; start < prompt.size(); start += options_.prefill_rows)
    run(prompt.data() + start, std::min<uint32_t>(options_.prefill_rows, static_cast<uint32_t>(prompt.size()) - start));
  for (uint32_t step = 0; step < sampling.max_new_tokens; step++) {
    double uniform = static_cast<double>(generator() >> 11) * (1.0 / 9007199254740992.0);
    uint32_t token = sample_token(logits_, sampling, uniform);
    if (std::find(sampling.stop_ids.begin(), sampling.stop_ids.end(), token) != sampling.stop_ids.end()) break;
    output.push_back(token);
    if (on_token) on_token(token);
    if (past >= capacity || step + 1 == sampling.max_new_tokens) break;
    run(&token, 1);
  }
  return output;
}

}  // namespace vkt::model
