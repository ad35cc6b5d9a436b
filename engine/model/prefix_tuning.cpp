#include "engine/model/prefix_tuning.hpp"

#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/kernels/prefix.hpp"
#include "engine/model/encoder_mlp.hpp"
#include "engine/model/soft_prompt.hpp"
#include "engine/plan/prefix_encoder_plan.hpp"

namespace vkt::model {

uint64_t prefix_width(const spec::ModelShape& shape) { return shape.layers * 2 * shape.kv_heads * shape.head_dim; }

nlohmann::json peft_prefix_tuning_config(const spec::ModelShape& shape, const LoraSettings& settings,
                                         const std::string& base_model) {
  const uint64_t kv_dim = shape.kv_heads * shape.head_dim;
  // PEFT writes the encoder's width as given, else token_dim (_prepare_prompt_learning_config).
  const uint64_t encoder_hidden =
      settings.prefix_projection && settings.encoder_hidden ? settings.encoder_hidden : kv_dim;
  return {{"auto_mapping", nullptr},
          {"base_model_name_or_path", base_model},
          {"encoder_hidden_size", encoder_hidden},
          {"inference_mode", true},
          {"init_weights", nullptr},
          {"modules_to_save", nullptr},
          {"num_attention_heads", shape.kv_heads},
          {"num_layers", shape.layers},
          {"num_transformer_submodules", 1},
          {"num_virtual_tokens", settings.prefix_tokens},
          {"peft_type", "PREFIX_TUNING"},
          {"prefix_projection", settings.prefix_projection},
          {"revision", nullptr},
          {"task_type", "CAUSAL_LM"},
          {"token_dim", kv_dim}};
}

void read_prefix_tuning_config(const nlohmann::json& config, const std::string& path, LoraSettings& settings) {
  settings.peft_type = spec::PeftType::prefix_tuning;
  settings.targets.clear();
  settings.prefix_tokens = read_virtual_token_count(config, path, 4096, "PREFIX_TUNING", "prefix");
  settings.prefix_projection = config.value("prefix_projection", false);
  const nlohmann::json& hidden = config.contains("encoder_hidden_size") ? config["encoder_hidden_size"] : nullptr;
  if (settings.prefix_projection && hidden.is_number_unsigned()) settings.encoder_hidden = hidden.get<uint32_t>();
}

std::vector<AdapterExtraTensor> prefix_encoder_tensors(const spec::ModelShape& shape, const LoraSettings& settings) {
  std::vector<AdapterExtraTensor> tensors;
  if (settings.peft_type != spec::PeftType::prefix_tuning || !settings.prefix_projection || !settings.train_encoder)
    return tensors;
  for (const auto& t : plan::prefix_encoder_parameters(settings.prefix_tokens, shape.kv_heads * shape.head_dim,
                                                       settings.encoder_hidden, shape.layers))
    tensors.push_back({t.name, "prompt_encoder.default." + t.name.substr(15), t.shape});  // after "prefix_encoder."
  return tensors;
}

namespace {
// PEFT's transform: Linear(T, H), Tanh, Linear(H, L*2*T), on the embedding (P, T).
std::vector<EncoderLinear> prefix_encoder_layers(uint32_t token_dim, uint32_t hidden, uint32_t layers) {
  using enum EncoderActivation;
  return {{"prefix_encoder.transform.0.weight", "prefix_encoder.transform.0.bias", "prefix_encoder.embedding.weight",
           "prefix_encoder.hidden", "prefix_encoder.grad_hidden", token_dim, hidden, tanh},
          {"prefix_encoder.transform.2.weight", "prefix_encoder.transform.2.bias", "prefix_encoder.hidden",
           "prefix.key_values", "prefix_encoder.grad_output", hidden, layers * 2 * token_dim, none}};
}
uint32_t token_dim_of(const spec::ModelShape& shape) { return static_cast<uint32_t>(shape.kv_heads * shape.head_dim); }
}  // namespace

void init_prefix_encoder(vk::Context& context, BufferSet& buffers, const spec::ModelShape& shape,
                         const LoraSettings& settings, uint64_t seed) {
  if (prefix_encoder_tensors(shape, settings).empty()) return;
  std::vector<float> table = prompt_random_init(settings.prefix_tokens, token_dim_of(shape), seed);
  context.upload(buffers.buffer("prefix_encoder.embedding.weight"), table.data());
  const auto layers = prefix_encoder_layers(token_dim_of(shape), settings.encoder_hidden, uint32_t(shape.layers));
  init_encoder_mlp(context, buffers, layers, seed, 0x71000000u);  // streams apart from P-tuning's and LoRA's
}

void record_prefix_encoder_forward(Recorder& r, const BufferSet& buffers, const spec::ModelShape& shape,
                                   const LoraSettings& settings) {
  record_encoder_mlp_forward(
      r, buffers, prefix_encoder_layers(token_dim_of(shape), settings.encoder_hidden, uint32_t(shape.layers)),
      settings.prefix_tokens);
}

void Transformer::record_prefix_encoder(Recorder& r) {
  if (prefix_encoder_hidden_ == 0) return;
  record_encoder_mlp_forward(r, buffers_, prefix_encoder_layers(kv_heads_ * head_dim_, prefix_encoder_hidden_, layers_),
                             prefix_tokens_);
}

void Transformer::record_prefix_inputs(Recorder& r, uint32_t batch, uint32_t seq) {
  if (!prefix_active()) return;
  kernels::prefix_attention_inputs(r, range("input.positions"), range("input.segments"), range("prefix.positions"),
                                   range("prefix.kv_segments"),
                                   {.batch = batch, .seq = seq, .prefix = prefix_tokens_, .layers = layers_});
}

bool Transformer::prefix_attention_forward(Recorder& r, uint32_t layer, const LayerActivations& a,
                                           const ForwardPass& pass, const kernels::AttentionShape& attention) {
  if (!prefix_active()) return false;
  const uint32_t kv_dim = kv_heads_ * head_dim_, row_bytes = kv_dim * kernels::dtype_bytes(act_);
  kernels::AttentionShape joined = attention;
  joined.seq_kv += prefix_tokens_;
  joined.q_offset += prefix_tokens_;
  if (pass.decode) {  // the cache's first P rows hold the prefix, the sequence's rows follow
    const BufferRange k_cache = range("kv.layers." + std::to_string(layer) + ".k");
    const BufferRange v_cache = range("kv.layers." + std::to_string(layer) + ".v");
    kernels::prefix_kv_concat(r, range("prefix.key_values"), a.k, a.v, rows_of(k_cache, 0, prefix_tokens_, row_bytes),
                              rows_of(v_cache, 0, prefix_tokens_, row_bytes),
                              {.batch = 1, .seq = 0, .prefix = prefix_tokens_, .kv_dim = kv_dim, .layers = layers_},
                              layer, act_);
    const uint32_t first = prefix_tokens_ + pass.past;
    r.copy(rows_of(a.k, 0, pass.rows, row_bytes), rows_of(k_cache, first, pass.rows, row_bytes));
    r.copy(rows_of(a.v, 0, pass.rows, row_bytes), rows_of(v_cache, first, pass.rows, row_bytes));
    const BufferRange workspace = buffers_.optional_range("attention.workspace");
    kernels::attention_forward(r, a.q, rows_of(k_cache, 0, first + pass.rows, row_bytes),
                               rows_of(v_cache, 0, first + pass.rows, row_bytes), a.attn, a.lse, joined, nullptr,
                               nullptr, workspace.bytes ? &workspace : nullptr, act_);
    return true;
  }
  const kernels::PrefixShape shape{
      .batch = batch_, .seq = seq_len_, .prefix = prefix_tokens_, .kv_dim = kv_dim, .layers = layers_};
  const BufferRange k = range("prefix.k"), v = range("prefix.v");
  const BufferRange q_segments = range("input.segments"), kv_segments = range("prefix.kv_segments");
  kernels::prefix_kv_concat(r, range("prefix.key_values"), a.k, a.v, k, v, shape, layer, act_);
  kernels::attention_forward(r, a.q, k, v, a.attn, a.lse, joined, &q_segments, &kv_segments, nullptr, act_);
  return true;
}

bool Transformer::prefix_attention_backward(Recorder& r, uint32_t layer, const LayerActivations& a) {
  if (!prefix_active()) return false;
  const uint32_t kv_dim = kv_heads_ * head_dim_;
  const kernels::PrefixShape shape{
      .batch = batch_, .seq = seq_len_, .prefix = prefix_tokens_, .kv_dim = kv_dim, .layers = layers_};
  kernels::AttentionShape joined = layer_attention(attention_shape(), layer);
  joined.seq_kv += prefix_tokens_;
  joined.q_offset += prefix_tokens_;
  const BufferRange k = range("prefix.k"), v = range("prefix.v"), dk = range("prefix.dk"), dv = range("prefix.dv");
  const BufferRange q_segments = range("input.segments"), kv_segments = range("prefix.kv_segments");
  // The joined keys of this layer again (the forward's were overwritten by the later layers').
  kernels::prefix_kv_concat(r, range("prefix.key_values"), a.k, a.v, k, v, shape, layer, act_);
  kernels::attention_backward(r, a.q, k, v, a.attn, range("grad_act.attn"), a.lse, range("grad_act.attn_delta"),
                              range("grad_act.q"), dk, dv, joined, &q_segments, &kv_segments, act_);
  // prefix_projection: this micro-batch's d prefix alone (the layers add theirs, from the last one
  // down), then after layer 0 through the encoder into its grad.*.
  const BufferRange d_prefix = range(prefix_encoder_hidden_ ? "prefix_encoder.grad_output" : "grad.prefix.key_values");
  if (prefix_encoder_hidden_ && layer + 1 == layers_) r.fill(d_prefix);
  kernels::prefix_kv_concat_backward(r, dk, dv, range("grad_act.k"), range("grad_act.v"), d_prefix, shape, layer, act_);
  if (prefix_encoder_hidden_ && layer == 0)
    record_encoder_mlp_backward(r, buffers_, prefix_encoder_layers(kv_dim, prefix_encoder_hidden_, layers_),
                                prefix_tokens_, range("prefix_encoder.reduce"));
  return true;
}

}  // namespace vkt::model
