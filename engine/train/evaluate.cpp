#include "engine/train/evaluate.hpp"

#include <cmath>

#include "engine/base/error.hpp"
#include "engine/kernels/optimizer.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/gguf_tokenizer.hpp"
#include "engine/text/tokenizer.hpp"
#include "engine/vk/recorder.hpp"

namespace vkt::train {

namespace fs = std::filesystem;

EvalData tokenize_eval_file(const fs::path& model_dir, const fs::path& data, uint32_t max_length,
                            double prompt_loss_weight) {
  if (!(prompt_loss_weight >= 0 && prompt_loss_weight <= 1))  // NaN fails too
    throw UserError("--prompt-loss-weight must be in [0, 1]", "0 scores completions only, 1 weighs prompts fully");
  model::ModelConfig config = model::load_model_config(model_dir);
  text::Tokenizer tokenizer = model::load_model_tokenizer(model_dir);
  model::check_tokenizer_fits(config, tokenizer.vocab_size(), model::tokenizer_location(model_dir));
  text::ChatFormat chat = model::load_model_chat_format(model_dir);
  TokenizerHooks hooks;
  hooks.encode = [&tokenizer](const std::string& text) { return tokenizer.encode(text, false); };
  hooks.add_bos = tokenizer.adds_bos();
  hooks.bos_id = tokenizer.bos_id().value_or(0);
  for (int64_t id : config.eos_token_ids) hooks.eos_ids.push_back(static_cast<uint32_t>(id));
  if (hooks.eos_ids.empty() && tokenizer.eos_id()) hooks.eos_ids.push_back(*tokenizer.eos_id());
  EvalData result;
  auto parsed = read_jsonl(data.string(), chat);
  result.examples =
      tokenize_examples(parsed, hooks, prompt_loss_weight, max_length, data.string(), result.report, false);
  if (result.examples.empty())
    throw UserError(data.string() + " has no example with a scored token",
                    "give a JSONL file in the trainer's formats");
  result.seq_len = choose_seq_len(result.examples, max_length, false);
  result.pad_id = static_cast<uint32_t>(config.pad_token_id.value_or(hooks.eos_ids.empty() ? 0 : hooks.eos_ids[0]));
  return result;
}

void upload_micro_batch(vk::Context& context, model::BufferSet& buffers, const MicroBatch& batch) {
  context.upload(buffers.buffer("input.ids"), batch.ids.data(), 0, batch.ids.size() * 4);
  context.upload(buffers.buffer("input.targets"), batch.targets.data(), 0, batch.targets.size() * 4);
  context.upload(buffers.buffer("input.weights"), batch.weights.data(), 0, batch.weights.size() * 4);
  context.upload(buffers.buffer("input.positions"), batch.positions.data(), 0, batch.positions.size() * 4);
  context.upload(buffers.buffer("input.segments"), batch.segments.data(), 0, batch.segments.size() * 4);
}

double weighted_loss(vk::Context& context, model::ModelSession& session, vk::Sequence& forward,
                     const std::vector<MicroBatch>& batches) {
  vk::Buffer& loss_step = session.buffers->buffer("loss.step");
  double weight_sum = 0;
  context.run([&](vk::Recorder& r) { r.fill(loss_step.range(0, 4)); });
  for (const MicroBatch& batch : batches) {
    weight_sum += batch.weight_sum;
    upload_micro_batch(context, *session.buffers, batch);
    context.submit({&forward});
  }
  float sum = 0;
  context.download(loss_step, &sum, 0, 4);
  context.run([&](vk::Recorder& r) { r.fill(loss_step.range(0, 4)); });
  return weight_sum > 0 ? sum / weight_sum : 0;
}

EvalResult evaluate_examples(vk::Context& context, model::ModelSession& session, const EvalData& data) {
  auto& buffers = *session.buffers;
  VKT_ASSERT(buffers.has("loss.step"), "evaluate_examples needs a training-shaped session");
  VKT_ASSERT(session.plan.settings.seq_len >= data.seq_len + session.plan.settings.virtual_tokens,
             "the session is planned for shorter rows than the data");
  BatcherSettings settings;
  settings.virtual_tokens = static_cast<uint32_t>(session.plan.settings.virtual_tokens);  // a soft prompt's cells
  settings.batch = static_cast<uint32_t>(session.plan.settings.batch);
  settings.seq_len = static_cast<uint32_t>(session.plan.settings.seq_len);
  settings.shuffle = false;
  settings.packing = false;
  settings.wrap_epochs = false;  // every example exactly once, the last batch padded with zero weights
  settings.pad_id = data.pad_id;
  Batcher batcher(data.examples, settings);
  EvalResult result;
  std::vector<MicroBatch> batches;
  for (int64_t i = 0; i < batcher.micro_batches_per_epoch(); i++) {
    batches.push_back(batcher.next());
    result.weight_sum += batches.back().weight_sum;
    result.tokens += batches.back().tokens;
  }
  kernels::StepState state;  // defined contents (the loss kernels read the loss scale; 1 = unscaled)
  state.spare[0] = 1.0f;
  kernels::write_step_state(context, buffers.buffer("step_state"), state);
  vk::Sequence forward(context);
  forward.record([&](vk::Recorder& r) { session.transformer->record_forward(r, true, false); });
  result.loss = weighted_loss(context, session, forward, batches);
  result.examples = static_cast<int64_t>(data.examples.size());
  result.perplexity = std::exp(result.loss);
  return result;
}

EvalResult evaluate_model(vk::Context& context, const fs::path& model_dir, const fs::path& data,
                          const EvalOptions& options) {
  EvalData tokens = tokenize_eval_file(model_dir, data, options.max_length, options.prompt_loss_weight);
  spec::RunSettings settings;
  settings.method = spec::Method::lora;
  settings.training = true;  // loss buffers; no gradient buffers without LoRA targets
  // Quantized folders (bitsandbytes NF4, vktune int formats) load as stored: open_model decides.
  settings.target_modules = {};
  settings.batch = options.batch;
  settings.seq_len = tokens.seq_len;
  settings.lora_dropout = 0;
  settings.base_format = options.base_format;
  settings.double_quant = options.double_quant;
  settings.dtype = options.dtype;
  std::optional<model::LoraSettings> lora;
  if (options.adapter) {
    lora = model::load_adapter_config(*options.adapter).settings;
    lora->dropout = 0;  // evaluation: no dropout
  }
  if (lora) settings.seq_len += lora->virtual_tokens;  // a soft prompt lengthens every row
  auto session = model::open_model(context, model_dir, settings, lora ? &*lora : nullptr);
  if (lora) model::load_adapter_weights(context, *session->buffers, session->plan.shape, *lora, *options.adapter);
  return evaluate_examples(context, *session, tokens);
}

}  // namespace vkt::train
