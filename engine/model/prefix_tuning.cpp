#include "engine/model/prefix_tuning.hpp"

#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/kernels/prefix.hpp"
#include "engine/model/soft_prompt.hpp"

namespace vkt::model {

uint64_t prefix_width(const spec::ModelShape& shape) { return shape.layers * 2 * shape.kv_heads * shape.head_dim; }

nlohmann::json peft_prefix_tuning_config(const spec::ModelShape& shape, const LoraSettings& settings,
                                         const std::string& base_model) {
  const uint64_t kv_dim = shape.kv_heads * shape.head_dim;
  return {{"auto_mapping", nullptr},
          {"base_model_name_or_path", base_model},
          {"encoder_hidden_size", kv_dim},
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
  kernels::prefix_kv_concat_backward(r, dk, dv, range("grad_act.k"), range("grad_act.v"),
                                     range("grad.prefix.key_values"), shape, layer, act_);
  return true;
}

}  // namespace vkt::model
