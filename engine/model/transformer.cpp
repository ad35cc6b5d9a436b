#include "engine/model/transformer.hpp"

#include <cmath>
#include <tuple>

#include "engine/base/error.hpp"
#include "engine/base/half.hpp"
#include "engine/kernels/activation.hpp"
#include "engine/kernels/attention.hpp"
#include "engine/kernels/distill.hpp"
#include "engine/kernels/elementwise.hpp"
#include "engine/kernels/embedding.hpp"
#include "engine/kernels/loss.hpp"
#include "engine/kernels/norm.hpp"
#include "engine/kernels/reduce.hpp"
#include "engine/kernels/rope.hpp"
#include "engine/kernels/s2_attention.hpp"
#include "engine/model/dora.hpp"
#include "engine/model/fused_mlp.hpp"
#include "engine/model/ia3.hpp"
#include "engine/model/p_tuning.hpp"

namespace vkt::model {

using kernels::DType;
using kernels::WeightFormat;
using spec::Module;

float LoraSettings::scale() const {
  return rslora ? alpha / std::sqrt(static_cast<float>(rank)) : alpha / static_cast<float>(rank);
}

std::string layer_tensor_name(uint32_t layer, Module module, const char* suffix) {
  return "model.layers." + std::to_string(layer) + "." + spec::module_path(module) + "." + suffix;
}

Transformer::Transformer(vk::Context& context, const ModelConfig& config, const plan::MemoryPlan& plan,
                         BufferSet& buffers, const LoraSettings* lora)
    : context_(context), config_(config), plan_(plan), buffers_(buffers) {
  const auto& s = plan.settings;
  batch_ = static_cast<uint32_t>(s.batch);
  seq_len_ = static_cast<uint32_t>(s.seq_len);
  rows_ = batch_ * seq_len_;
  hidden_ = static_cast<uint32_t>(config.hidden_size);
  intermediate_ = static_cast<uint32_t>(config.intermediate_size);
  heads_ = static_cast<uint32_t>(config.num_attention_heads);
  kv_heads_ = static_cast<uint32_t>(config.num_key_value_heads);
  head_dim_ = static_cast<uint32_t>(config.head_dim);
  vocab_ = static_cast<uint32_t>(config.vocab_size);
  layers_ = static_cast<uint32_t>(config.num_hidden_layers);
  full_ = s.method == spec::Method::full && s.training;
  checkpointing_ = s.gradient_checkpointing && s.training;
  s2_group_ = s.training ? s.s2_group : 0;
  compute_input_gradient_ = full_;
  dense_type_ = s.dtype;
  // An embedding or lm_head listed in modules_to_save is an fp32 adapter tensor (trained, or loaded
  // from the adapter); a tied model then has a separate lm_head.weight (the plan unties it).
  auto adapter_tensor = [&](const char* name) {
    return plan.contains(name) && plan.find(name).category == vk::Category::adapter_params;
  };
  // Full finetuning trains the tables in the run's type (16-bit with --bf16/--fp16: dense_type_).
  fp32_embedding_ = (full_ && dense_type_ == DType::f32) || adapter_tensor("model.embed_tokens.weight");
  head_name_ = plan.contains("lm_head.weight") ? "lm_head.weight" : "model.embed_tokens.weight";
  fp32_head_ = (full_ && dense_type_ == DType::f32) || adapter_tensor(head_name_.c_str());
  train_embedding_ = !full_ && s.training && adapter_tensor("model.embed_tokens.weight");
  train_head_ = !full_ && s.training && adapter_tensor(head_name_.c_str());
  if (plan.contains("model.embed_tokens.token_delta")) {
    token_rows_ = static_cast<uint32_t>(s.trainable_token_indices.size());
    context.upload(buffers.buffer("model.embed_tokens.token_indices"), s.trainable_token_indices.data());
  }
  if (plan.contains("prompt_embeddings")) {
    virtual_tokens_ = static_cast<uint32_t>(s.virtual_tokens);
    VKT_ASSERT(virtual_tokens_ > 0 && (!s.training || virtual_tokens_ < seq_len_), "soft prompt longer than a row");
    std::vector<uint32_t> indices(virtual_tokens_);
    for (uint32_t i = 0; i < virtual_tokens_; i++) indices[i] = i;
    context.upload(buffers.buffer("prompt.indices"), indices.data());
    if (plan.contains("prompt_encoder.embedding.weight"))
      encoder_hidden_ = static_cast<uint32_t>(s.prompt_encoder_hidden);
    if (lora && s.training) encoder_dropout_ = lora->encoder_dropout;  // the LSTM's (p_tuning_lstm.hpp)
    if (s.training) {  // cell t of a row: its virtual token t, or N (a real token: no prompt gradient)
      std::vector<uint32_t> slots(rows_);
      for (uint32_t i = 0; i < rows_; i++) slots[i] = std::min(i % seq_len_, virtual_tokens_);
      context.upload(buffers.buffer("input.prompt_slots"), slots.data());
    }
  }
  prefix_tokens_ = plan.contains("prefix.key_values") ? static_cast<uint32_t>(s.prefix_tokens) : 0;
  if (plan.contains("prefix_encoder.embedding.weight")) prefix_encoder_hidden_ = uint32_t(s.prefix_projection_hidden);
  compute_input_gradient_ =
      full_ || train_embedding_ || (token_rows_ > 0 && s.training) || (virtual_tokens_ > 0 && s.training) ||
      (prefix_tokens_ > 0 && s.training);  // prefix: checked against PEFT's d inputs_embeds (golden)
  act_ = s.activation_dtype;
  if (act_ != DType::f32 && !context.caps().storage_16bit)
    throw UserError("device " + context.caps().name + " cannot store 16-bit buffers (storageBuffer16BitAccess)",
                    "run without --bf16/--fp16 (fp32 activations)");
  // Full finetuning in 16 bits (16-bit weights, fp32 gradients and master weights): the bias
  // gradients' row sums read fp32 dy only (Qwen2's q/k/v biases).
  if (act_ != DType::f32 && full_ && config.qkv_bias)
    throw UserError(
        "full finetuning of a model with q/k/v biases (Qwen2) in 16 bits (--bf16/--fp16) is not supported "
        "yet",
        "finetune it fully in fp32 (leave --bf16/--fp16 out), or use --method lora with --bf16/--fp16");
  if (config.o_bias)
    throw UserError("this model has an o_proj bias (attention_bias with Llama), which vktune does not support yet",
                    "use a model without attention_bias, or Qwen2 (q/k/v biases only)");

  lora_.resize(layers_);
  has_lora_.assign(layers_, {});
  if (lora && !full_ && (s.training || s.with_adapter)) {
    for (uint32_t layer = 0; layer < layers_; layer++) {
      if (!lora->adapts_layer(layer)) continue;  // layers_to_transform leaves it out
      for (Module module : lora->targets) {
        auto m = static_cast<size_t>(module);
        LoraParams& p = lora_[layer][m];
        // A fused module's pieces (Phi-3's q/k/v, gate/up) share its A (and dA) and each take their
        // rows of B (and dB); each piece's forward/backward is then a plain LoRA linear whose
        // contributions to dA and dx add up to the fused module's, exactly PEFT's math with no new
        // kernel. The same dropout key gives the pieces the same mask, as PEFT's one dropout(x).
        const Module owner = spec::fused_owner(plan.shape, module);
        const uint32_t b_row_bytes = lora->rank * 4;
        const auto first_row = static_cast<uint32_t>(spec::fused_row_offset(plan.shape, module));
        const auto rows = static_cast<uint32_t>(spec::module_out_features(plan.shape, module));
        auto rows_of_b = [&](const BufferRange& b) { return b.bytes ? rows_of(b, first_row, rows, b_row_bytes) : b; };
        std::string base = "model.layers." + std::to_string(layer) + "." + spec::stored_module_path(plan.shape, module);
        p.a = range(base + ".lora_A");
        p.b = rows_of_b(range(base + ".lora_B"));
        p.grad_a = buffers.optional_range("grad." + base + ".lora_A");  // absent for inference
        p.grad_b = rows_of_b(buffers.optional_range("grad." + base + ".lora_B"));
        p.rank = lora->rank;
        p.scale = lora->scale();
        p.dropout = s.training ? lora->dropout : 0.0f;  // inference (generate, export) never drops out
        p.rng_layer = layer * static_cast<uint32_t>(spec::module_count) + static_cast<uint32_t>(owner);
        if (lora->peft_type == spec::PeftType::dora) {  // the magnitude's rows, as B's
          auto rows_of_m = [&](const BufferRange& m) { return m.bytes ? rows_of(m, first_row, rows, 4) : m; };
          p.magnitude = rows_of_m(range(base + ".lora_magnitude_vector"));
          p.grad_magnitude = rows_of_m(buffers.optional_range("grad." + base + ".lora_magnitude_vector"));
        }
        has_lora_[layer][m] = true;
      }
    }
  }
  ia3_.resize(layers_);
  if (lora && !full_ && (s.training || s.with_adapter))
    for (uint32_t layer = 0; layer < layers_; layer++)
      for (Module module : lora->ia3_targets) {
        Ia3Params& p = ia3_[layer][static_cast<size_t>(module)];
        p.l = range(ia3_buffer_name(layer, module));
        p.grad_l = buffers.optional_range("grad." + ia3_buffer_name(layer, module));
        p.feedforward = ia3_is_feedforward(lora->ia3_feedforward, module);
      }
  // dynamic NTK: the frequencies of the micro-batch length, as transformers recomputes them from
  // max(position_ids) + 1 (generate re-uploads them as the sequence grows: upload_dynamic_rope).
  std::vector<float> inv_freq = rope_inv_freq(config, false, seq_len_);
  context.upload(buffers.buffer("rope.inv_freq"), inv_freq.data());
  if (config.rope_scaling.type == "longrope") {
    std::vector<float> long_inv_freq = rope_inv_freq(config, true);
    context.upload(buffers.buffer("rope.inv_freq_long"), long_inv_freq.data());
  }
  if (config.gemma) {
    ModelConfig local = config;
    local.rope_theta = config.rope_local_theta;
    local.rope_scaling = RopeScaling{};
    std::vector<float> local_inv_freq = rope_inv_freq(local);
    context.upload(buffers.buffer("rope.inv_freq_local"), local_inv_freq.data());
  }
}

void Transformer::upload_dynamic_rope(int64_t positions) {
  if (config_.rope_scaling.type != "dynamic") return;
  std::vector<float> inv_freq = rope_inv_freq(config_, false, positions);
  context_.upload(buffers_.buffer("rope.inv_freq"), inv_freq.data());
}

const LoraParams* Transformer::lora(uint32_t layer, Module module) const {
  auto m = static_cast<size_t>(module);
  return adapter_enabled_ && has_lora_[layer][m] ? &lora_[layer][m] : nullptr;
}

BufferRange Transformer::rows_of(const BufferRange& range, uint32_t first_row, uint32_t rows,
                                 uint32_t row_bytes) const {
  BufferRange part = range;
  part.offset += static_cast<uint64_t>(first_row) * row_bytes;
  part.address += static_cast<uint64_t>(first_row) * row_bytes;
  part.bytes = static_cast<uint64_t>(rows) * row_bytes;
  VKT_ASSERT((first_row + rows) * static_cast<uint64_t>(row_bytes) <= range.bytes, "row slice out of range");
  return part;
}

kernels::WeightRef Transformer::weight_ref(const std::string& name) const {
  const auto& s = plan_.settings;
  kernels::WeightRef w;
  w.format = s.base_format;  // full finetuning: the plan's f32, bf16 or f16 (the run's type)
  w.block_size = s.quant_block;
  w.data = range(name);
  switch (w.format) {
    case WeightFormat::nf4:
      w.double_quant = s.double_quant;
      if (s.double_quant) {
        w.absmax_codes = range(name + ".absmax_codes");
        w.absmax_scales = range(name + ".absmax_scales");
        auto offset = absmax_offsets_.find(name);
        VKT_ASSERT(offset != absmax_offsets_.end(), "no double-quant offset loaded for " + name);
        w.absmax_offset = offset->second;
      } else {
        w.scales = range(name + ".scales");
      }
      break;
    case WeightFormat::int4_asym:
      w.zeros = range(name + ".zeros");
      [[fallthrough]];
    case WeightFormat::int8:
    case WeightFormat::int4:
      w.scales = range(name + ".scales");
      break;
    default:
      break;
  }
  return w;
}

Linear Transformer::linear(uint32_t layer, Module module) const {
  Linear l;
  std::string name = layer_tensor_name(layer, module);
  l.weight = weight_ref(name);
  if (!full_ && plan_.settings.base_format == WeightFormat::gguf) {  // a GGUF base: each weight in its stored type
    l.weight.format = spec::linear_weight_format(plan_.settings, layer, module);
    if (kernels::is_ggml_block(l.weight.format)) l.weight.block_size = kernels::ggml_block_elements(l.weight.format);
  }
  l.in = static_cast<uint32_t>(spec::module_in_features(plan_.shape, module));
  l.out = static_cast<uint32_t>(spec::module_out_features(plan_.shape, module));
  std::string bias = layer_tensor_name(layer, module, "bias");
  l.bias = buffers_.optional_range(bias);
  if (full_) {
    l.grad_weight = range("grad." + name);
    if (l.bias.bytes) l.grad_bias = range("grad." + bias);
  } else if (l.bias.bytes) {
    l.grad_bias = buffers_.optional_range("grad." + bias);  // BitFit trains the biases alone
  }
  l.lora = lora(layer, module);
  l.act = act_;
  if (ia3_[layer][static_cast<size_t>(module)].l.bytes) l.ia3 = &ia3_[layer][static_cast<size_t>(module)];
  if (plan_.settings.training) {  // --qat: the forward sees fq(W [+ s·B·A]) (engine/model/qat.hpp)
    l.qat = plan_.settings.qat_format;
    l.qat_block = plan_.settings.qat_block;
  }
  return l;
}

Transformer::LayerActivations Transformer::activations(uint32_t layer, bool recompute) const {
  std::string prefix = recompute ? "act.recompute." : "act.layers." + std::to_string(layer) + ".";
  LayerActivations a;
  a.input = layer_input(layer);
  for (auto [field, name] : std::initializer_list<std::pair<BufferRange LayerActivations::*, const char*>>{
           {&LayerActivations::rstd_attn, "rstd_attn"},
           {&LayerActivations::norm_attn, "norm_attn"},
           {&LayerActivations::q, "q"},
           {&LayerActivations::k, "k"},
           {&LayerActivations::v, "v"},
           {&LayerActivations::attn, "attn"},
           {&LayerActivations::lse, "lse"},
           {&LayerActivations::mid, "mid"},
           {&LayerActivations::rstd_mlp, "rstd_mlp"},
           {&LayerActivations::norm_mlp, "norm_mlp"},
           {&LayerActivations::gate, "gate"},
           {&LayerActivations::up, "up"},
           {&LayerActivations::act, "act"}})
    a.*field = range(prefix + name);
  if (config_.gemma)
    for (auto [field, name] : std::initializer_list<std::pair<BufferRange LayerActivations::*, const char*>>{
             {&LayerActivations::o_pre, "o_pre"},
             {&LayerActivations::rstd_post_attn, "rstd_post_attn"},
             {&LayerActivations::down_pre, "down_pre"},
             {&LayerActivations::rstd_post_mlp, "rstd_post_mlp"}})
      a.*field = range(prefix + name);
  if (config_.qk_norm) {
    a.q_pre_norm = range(prefix + "q_pre_norm");
    a.k_pre_norm = range(prefix + "k_pre_norm");
    a.rstd_q = range(prefix + "rstd_q");
    a.rstd_k = range(prefix + "rstd_k");
  }
  for (size_t m = 0; m < spec::module_count; m++)
    if (has_lora_[layer][m]) a.lora_t[m] = range(prefix + spec::module_name(Module(m)) + ".lora_t");
  for (size_t m = 0; m < spec::module_count; m++)
    a.ia3_z[m] = buffers_.optional_range(prefix + spec::module_name(Module(m)) + ".ia3_z");
  for (size_t m = 0; m < spec::module_count; m++) {
    a.dora_v[m] = buffers_.optional_range(prefix + spec::module_name(Module(m)) + ".dora_v");
    a.dora_scales[m] = buffers_.optional_range(prefix + spec::module_name(Module(m)) + ".dora_scales");
  }
  return a;
}

LinearScratch Transformer::scratch(const LayerActivations& acts, Module module) const {
  LinearScratch s;
  s.lora_t = acts.lora_t[static_cast<size_t>(module)];
  s.grad_lora_t = buffers_.optional_range("grad_act.lora_t");
  // No scratch, no LoRA dropout (linear.cpp, dora.cpp): a pass recorded in eval mode.
  if (dropout_active_) s.dropout_x = buffers_.optional_range("act.dropout");
  s.step_state = range("step_state");
  s.reduce_workspace = range("workspace.reduce");
  s.ia3_z = acts.ia3_z[static_cast<size_t>(module)];
  s.ia3_scratch = buffers_.optional_range("act.ia3_scratch");
  s.ia3_grad = buffers_.optional_range("grad_act.ia3");
  s.dora_v = acts.dora_v[static_cast<size_t>(module)];
  s.dora_scales = acts.dora_scales[static_cast<size_t>(module)];
  s.dora_weight = buffers_.optional_range("act.dora_weight");
  s.dora_grad = buffers_.optional_range("grad_act.dora");
  s.qat_weight = buffers_.optional_range("act.qat_weight");
  s.qat_codes = buffers_.optional_range("act.qat_codes");
  s.qat_scales = buffers_.optional_range("act.qat_scales");
  s.qat_zeros = buffers_.optional_range("act.qat_zeros");
  return s;
}

kernels::AttentionShape Transformer::attention_shape() const {
  kernels::AttentionShape shape;
  shape.batch = batch_;
  shape.seq_q = shape.seq_kv = seq_len_;
  shape.q_heads = heads_;
  shape.kv_heads = kv_heads_;
  shape.head_dim = head_dim_;
  shape.scale = 1.0f / std::sqrt(static_cast<float>(head_dim_));
  if (config_.gemma) {
    shape.scale = static_cast<float>(std::pow(config_.query_pre_attn_scalar, -0.5));
    shape.softcap = static_cast<float>(config_.attn_logit_softcapping);
  }
  return shape;
}

kernels::AttentionShape Transformer::layer_attention(kernels::AttentionShape base, uint32_t layer) const {
  if (config_.sliding_window && config_.sliding_window_layers[layer])
    base.window = static_cast<uint32_t>(*config_.sliding_window);
  return base;
}

float Transformer::embedding_scale() const {
  // transformers: torch.tensor(hidden_size**0.5) (fp32), then .to(the embedding weight's dtype):
  // a checkpoint run in its config dtype (bf16 for the published Gemmas) uses the rounded value
  // (sqrt(1152) = 33.94 -> 34.0), whatever --dtype or the method stores the table in here. Without
  // a dtype in config.json, the table's run dtype decides.
  float scale = static_cast<float>(std::sqrt(static_cast<double>(hidden_)));
  DType model_type = dense_type_;  // full finetuning: the run's type (make_plan sets dtype)
  if (config_.torch_dtype == "bfloat16")
    model_type = DType::bf16;
  else if (config_.torch_dtype == "float16")
    model_type = DType::f16;
  else if (!config_.torch_dtype.empty())
    model_type = DType::f32;
  if (model_type == DType::bf16) return bf16_to_float(float_to_bf16(scale));
  if (model_type == DType::f16) return half_to_float(float_to_half(scale));
  return scale;
}

BufferRange Transformer::layer_inv_freq(uint32_t layer, bool long_rope) const {
  bool local = config_.gemma && config_.sliding_window && config_.sliding_window_layers[layer];
  return range(local ? "rope.inv_freq_local" : long_rope ? "rope.inv_freq_long" : "rope.inv_freq");
}

Transformer::ForwardPass Transformer::training_pass() const {
  ForwardPass pass;
  pass.rows = rows_;
  pass.attention = attention_shape();
  // longrope picks its factors per pass from its length, as transformers does from max(position_ids)
  // + 1: here the micro-batch length (the same when a row fills it, as in a padded batch; packed
  // rows that all end earlier still get the factors of the full length).
  pass.long_rope = config_.rope_uses_long_factors(seq_len_);
  return pass;
}

void Transformer::layer_forward(Recorder& r, uint32_t layer, const LayerActivations& a, const BufferRange* out,
                                const ForwardPass& pass) {
  const float eps = static_cast<float>(config_.rms_norm_eps);
  const uint32_t rows = pass.rows;
  const std::string prefix = "model.layers." + std::to_string(layer) + ".";
  const BufferRange positions = range(prefix_active() ? "prefix.positions" : "input.positions");
  const BufferRange segments = range("input.segments");
  const BufferRange inv_freq = layer_inv_freq(layer, pass.long_rope);
  const bool gemma = config_.gemma;
  const float offset = norm_offset();
  const kernels::AttentionShape attention = layer_attention(pass.attention, layer);
  const float rope_scaling = rope_attention_factor();
  kernels::rmsnorm(r, a.input, range(prefix + "input_layernorm.weight"), a.norm_attn, a.rstd_attn, rows, hidden_, eps,
                   offset, act_);
  const bool qk_norm = config_.qk_norm;
  const BufferRange q_out = qk_norm ? a.q_pre_norm : a.q, k_out = qk_norm ? a.k_pre_norm : a.k;
  linear_forward(r, linear(layer, Module::q_proj), a.norm_attn, q_out, rows, scratch(a, Module::q_proj));
  linear_forward(r, linear(layer, Module::k_proj), a.norm_attn, k_out, rows, scratch(a, Module::k_proj));
  linear_forward(r, linear(layer, Module::v_proj), a.norm_attn, a.v, rows, scratch(a, Module::v_proj));
  if (qk_norm) {  // Qwen3, Gemma 3: each head of q and k is a row of head_dim to normalise, before RoPE
    kernels::rmsnorm(r, a.q_pre_norm, range(prefix + "self_attn.q_norm.weight"), a.q, a.rstd_q, rows * heads_,
                     head_dim_, eps, offset, act_);
    kernels::rmsnorm(r, a.k_pre_norm, range(prefix + "self_attn.k_norm.weight"), a.k, a.rstd_k, rows * kv_heads_,
                     head_dim_, eps, offset, act_);
  }
  kernels::rope(r, a.q, a.q, positions, inv_freq, rows, heads_, head_dim_, rope_scaling, act_);
  kernels::rope(r, a.k, a.k, positions, inv_freq, rows, kv_heads_, head_dim_, rope_scaling, act_);
  if (prefix_attention_forward(r, layer, a, pass, attention)) {  // prefix tuning's keys first
  } else if (!pass.decode) {
    if (s2_active_)
      kernels::s2_attention_forward(r, a.q, a.k, a.v, a.attn, a.lse, attention, s2_group_, range("s2.scratch"), act_,
                                    &segments);
    else
      kernels::attention_forward(r, a.q, a.k, a.v, a.attn, a.lse, attention, &segments, nullptr, nullptr, act_);
  } else {
    // Append this step's keys and values to the cache, then attend over everything cached.
    const uint32_t kv_bytes = kv_heads_ * head_dim_ * kernels::dtype_bytes(act_);  // the cache holds act_ rows
    const BufferRange k_cache = range("kv.layers." + std::to_string(layer) + ".k");
    const BufferRange v_cache = range("kv.layers." + std::to_string(layer) + ".v");
    r.copy(rows_of(a.k, 0, rows, kv_bytes), rows_of(k_cache, pass.past, rows, kv_bytes));
    r.copy(rows_of(a.v, 0, rows, kv_bytes), rows_of(v_cache, pass.past, rows, kv_bytes));
    const BufferRange workspace = buffers_.optional_range("attention.workspace");
    kernels::attention_forward(r, a.q, rows_of(k_cache, 0, pass.past + rows, kv_bytes),
                               rows_of(v_cache, 0, pass.past + rows, kv_bytes), a.attn, a.lse, attention, nullptr,
                               nullptr, workspace.bytes ? &workspace : nullptr, act_);
  }
  // mid = input + o_proj(attn)   (Gemma: input + post_attention_layernorm(o_proj(attn)))
  linear_forward(r, linear(layer, Module::o_proj), a.attn, gemma ? a.o_pre : a.mid, rows, scratch(a, Module::o_proj));
  if (gemma)
    kernels::rmsnorm(r, a.o_pre, range(prefix + "post_attention_layernorm.weight"), a.mid, a.rstd_post_attn, rows,
                     hidden_, eps, offset, act_);
  kernels::axpby(r, a.input, a.mid, rows * hidden_, 1.0f, 1.0f, act_);
  kernels::rmsnorm(r, a.mid, range(prefix + mlp_norm_name()), a.norm_mlp, a.rstd_mlp, rows, hidden_, eps, offset, act_);
  if (gemma) {
    linear_forward(r, linear(layer, Module::gate_proj), a.norm_mlp, a.gate, rows, scratch(a, Module::gate_proj));
    linear_forward(r, linear(layer, Module::up_proj), a.norm_mlp, a.up, rows, scratch(a, Module::up_proj));
    kernels::geglu(r, a.gate, a.up, a.act, rows * intermediate_, act_);
  } else {  // engine/model/fused_mlp.hpp
    gate_up_swiglu(r, linear(layer, Module::gate_proj), linear(layer, Module::up_proj), a.norm_mlp, a.gate, a.up, a.act,
                   rows, scratch(a, Module::gate_proj), scratch(a, Module::up_proj));
  }
  if (!out && !gemma) {
    // Recomputation for the backward needs no output, only down_proj's LoRA intermediate.
    linear_lora_intermediate(r, linear(layer, Module::down_proj), a.act, rows, scratch(a, Module::down_proj));
    return;
  }
  // out = mid + down_proj(act)   (Gemma: mid + post_feedforward_layernorm(down_proj(act)))
  linear_forward(r, linear(layer, Module::down_proj), a.act, gemma ? a.down_pre : *out, rows,
                 scratch(a, Module::down_proj));
  if (gemma) {
    // Recomputation keeps down_pre and the norm's rstd; its output goes to grad_act.norm, free then.
    kernels::rmsnorm(r, a.down_pre, range(prefix + "post_feedforward_layernorm.weight"),
                     out ? *out : range("grad_act.norm"), a.rstd_post_mlp, rows, hidden_, eps, offset, act_);
    if (!out) return;
  }
  kernels::axpby(r, a.mid, *out, rows * hidden_, 1.0f, 1.0f, act_);
}

void Transformer::layer_backward(Recorder& r, uint32_t layer, const LayerActivations& a) {
  const std::string prefix = "model.layers." + std::to_string(layer) + ".";
  const BufferRange residual = range("grad_act.residual"), d_norm = range("grad_act.norm");
  const BufferRange d_act = range("grad_act.act"), d_gate = range("grad_act.gate"), d_up = range("grad_act.up");
  const BufferRange d_attn = range("grad_act.attn");
  const BufferRange dq = range("grad_act.q"), dk = range("grad_act.k"), dv = range("grad_act.v");
  const BufferRange positions = range(prefix_active() ? "prefix.positions" : "input.positions");
  const BufferRange segments = range("input.segments");
  const BufferRange inv_freq = layer_inv_freq(layer, training_pass().long_rope);
  const BufferRange workspace = range("workspace.reduce");
  const bool gemma = config_.gemma;
  const float offset = norm_offset();
  // MLP: out = mid + down(swiglu(gate(n), up(n))), n = rmsnorm(mid).
  // Gemma: out = mid + post_ff_norm(down(geglu(...))), n = pre_ff_norm(mid); d(down) lands in d_norm.
  // Full finetuning: every norm's weight gradient (the (1 + w) offset does not change it).
  // modules_to_save norms (LongLoRA's "+"): theirs too; a norm has a gradient buffer exactly when it trains.
  auto norm_gradient = [&](const char* norm) { return buffers_.optional_range("grad." + prefix + norm); };
  if (gemma) {
    BufferRange d_post_mlp = norm_gradient("post_feedforward_layernorm.weight");
    kernels::rmsnorm_backward(r, residual, a.down_pre, range(prefix + "post_feedforward_layernorm.weight"),
                              a.rstd_post_mlp, d_norm, d_post_mlp.bytes ? &d_post_mlp : nullptr, workspace, rows_,
                              hidden_, false, offset, act_);
  }
  linear_backward(r, linear(layer, Module::down_proj), a.act, gemma ? d_norm : residual, d_act, false, rows_,
                  scratch(a, Module::down_proj));
  if (gemma)
    kernels::geglu_backward(r, d_act, a.gate, a.up, d_gate, d_up, rows_ * intermediate_, act_);
  else
    kernels::swiglu_backward(r, d_act, a.gate, a.up, d_gate, d_up, rows_ * intermediate_, act_);
  linear_backward(r, linear(layer, Module::gate_proj), a.norm_mlp, d_gate, d_norm, false, rows_,
                  scratch(a, Module::gate_proj));
  linear_backward(r, linear(layer, Module::up_proj), a.norm_mlp, d_up, d_norm, true, rows_,
                  scratch(a, Module::up_proj));
  BufferRange d_mlp_norm = norm_gradient(mlp_norm_name());
  kernels::rmsnorm_backward(r, d_norm, a.mid, range(prefix + mlp_norm_name()), a.rstd_mlp, residual,
                            d_mlp_norm.bytes ? &d_mlp_norm : nullptr, workspace, rows_, hidden_, true, offset, act_);
  // Attention: mid = input + o(attention(rope(q(n)), rope(k(n)), v(n))), n = rmsnorm(input).
  // Gemma: mid = input + post_attention_layernorm(o(...)), q and k through q_norm/k_norm before RoPE.
  if (gemma) {
    BufferRange d_post_attn = norm_gradient("post_attention_layernorm.weight");
    kernels::rmsnorm_backward(r, residual, a.o_pre, range(prefix + "post_attention_layernorm.weight"), a.rstd_post_attn,
                              d_norm, d_post_attn.bytes ? &d_post_attn : nullptr, workspace, rows_, hidden_, false,
                              offset, act_);
  }
  linear_backward(r, linear(layer, Module::o_proj), a.attn, gemma ? d_norm : residual, d_attn, false, rows_,
                  scratch(a, Module::o_proj));
  if (prefix_attention_backward(r, layer, a)) {  // prefix tuning: its keys' gradients too
  } else if (s2_active_) {
    kernels::s2_attention_backward(r, a.q, a.k, a.v, a.attn, d_attn, a.lse, range("grad_act.attn_delta"), dq, dk, dv,
                                   layer_attention(attention_shape(), layer), s2_group_, range("s2.scratch"), act_,
                                   &segments);
  } else
    kernels::attention_backward(r, a.q, a.k, a.v, a.attn, d_attn, a.lse, range("grad_act.attn_delta"), dq, dk, dv,
                                layer_attention(attention_shape(), layer), &segments, nullptr, act_);
  kernels::rope_backward(r, dq, dq, positions, inv_freq, rows_, heads_, head_dim_, rope_attention_factor(), act_);
  kernels::rope_backward(r, dk, dk, positions, inv_freq, rows_, kv_heads_, head_dim_, rope_attention_factor(), act_);
  if (config_.qk_norm) {  // back through q_norm/k_norm, in place (dq, dk now hold d(pre-norm q, k))
    for (auto [d, pre_norm, rstd, heads, norm] :
         {std::tuple{dq, a.q_pre_norm, a.rstd_q, heads_, "self_attn.q_norm.weight"},
          std::tuple{dk, a.k_pre_norm, a.rstd_k, kv_heads_, "self_attn.k_norm.weight"}}) {
      BufferRange d_weight = norm_gradient(norm);
      kernels::rmsnorm_backward(r, d, pre_norm, range(prefix + norm), rstd, d, d_weight.bytes ? &d_weight : nullptr,
                                workspace, rows_ * heads, head_dim_, false, offset, act_);
    }
  }
  // Below layer 0 only the embedding is left: LoRA runs skip the input gradient there.
  const BufferRange d_in_norm = norm_gradient("input_layernorm.weight");
  bool need_input_gradient = layer > 0 || compute_input_gradient_ || d_in_norm.bytes;
  BufferRange d_in = need_input_gradient ? d_norm : BufferRange{};
  linear_backward(r, linear(layer, Module::q_proj), a.norm_attn, dq, d_in, false, rows_, scratch(a, Module::q_proj));
  linear_backward(r, linear(layer, Module::k_proj), a.norm_attn, dk, d_in, true, rows_, scratch(a, Module::k_proj));
  linear_backward(r, linear(layer, Module::v_proj), a.norm_attn, dv, d_in, true, rows_, scratch(a, Module::v_proj));
  if (need_input_gradient) {
    kernels::rmsnorm_backward(r, d_norm, a.input, range(prefix + "input_layernorm.weight"), a.rstd_attn, residual,
                              d_in_norm.bytes ? &d_in_norm : nullptr, workspace, rows_, hidden_, true, offset, act_);
  }
}

kernels::WeightRef Transformer::lm_head_ref() const {
  kernels::WeightRef head;
  head.format = fp32_head_ ? WeightFormat::f32
                           : (dense_type_ == DType::f32   ? WeightFormat::f32
                              : dense_type_ == DType::f16 ? WeightFormat::f16
                                                          : WeightFormat::bf16);
  head.data = range(head_name_);
  return head;
}

void Transformer::lm_head_chunks(Recorder& r, bool loss, bool gradients, const BufferRange* logits_out) {
  const std::string& head_name = head_name_;
  const kernels::WeightRef head = lm_head_ref();
  // Trainable tokens on a tied lm_head: their rows are also output rows, with gradients of their own.
  const bool tied_token_rows = token_rows_ > 0 && head_name_ == "model.embed_tokens.weight";
  const BufferRange norm = range("act.final.norm");
  const uint32_t chunk = static_cast<uint32_t>(plan_.logits_chunk_rows);
  // The logits stay fp32 (a chunk of workspace, never saved): x and d(final norm) are activations.
  const uint32_t row_bytes = hidden_ * kernels::dtype_bytes(act_), logit_bytes = vocab_ * 4;
  for (uint32_t first = 0; first < rows_; first += chunk) {
    uint32_t count = std::min(chunk, rows_ - first);
    BufferRange x = rows_of(norm, first, count, row_bytes);
    BufferRange logits = logits_out ? rows_of(*logits_out, first, count, logit_bytes)
                                    : rows_of(range("logits.chunk"), 0, count, logit_bytes);
    kernels::matmul_nt(r, x, act_, head, logits, DType::f32, count, vocab_, hidden_);
    if (!loss) {  // output logits: Gemma 2 caps them (training caps inside the cross-entropy)
      if (config_.final_logit_softcapping > 0)
        kernels::softcap(r, logits, count * vocab_, static_cast<float>(config_.final_logit_softcapping));
      continue;
    }
    BufferRange loss_scale = buffers_.buffer("step_state").range(step_state_loss_scale_offset, 4);
    if (teacher_ && gradients) {  // distillation: the teacher's logits of the same rows, then the fused loss
      const BufferRange teacher_logits = rows_of(teacher_->range("logits.chunk"), 0, count, logit_bytes);
      teacher_->record_head_rows(r, first, count, teacher_logits);
      // The loss's KL and CE parts per row, for logging (summed into loss.step[1], [2] below).
      const kernels::DistillParts parts{rows_of(range("loss.distill_kl"), first, count, 4),
                                        rows_of(range("loss.distill_ce"), first, count, 4)};
      kernels::distill_loss(r, logits, teacher_logits, rows_of(range("input.targets"), first, count, 4),
                            rows_of(range("input.weights"), first, count, 4), loss_scale,
                            rows_of(range("loss.rows"), first, count, 4), count, vocab_, distill_temperature_,
                            distill_alpha_, kernels::ignore_target, true, &parts);
    } else {
      kernels::cross_entropy(r, logits, rows_of(range("input.targets"), first, count, 4),
                             rows_of(range("input.weights"), first, count, 4), loss_scale,
                             rows_of(range("loss.rows"), first, count, 4), count, vocab_, kernels::ignore_target,
                             gradients, static_cast<float>(config_.final_logit_softcapping));
    }
    if (!gradients) continue;
    // d(final norm) = dlogits · W_head ; full finetuning: dW_head += dlogitsᵀ · norm.
    kernels::matmul_nn(r, logits, DType::f32, head, rows_of(range("grad_act.norm"), first, count, row_bytes), act_,
                       count, vocab_, hidden_);
    if (full_ || train_head_)
      kernels::matmul_tn(r, logits, DType::f32, x, act_, range("grad." + head_name), count, vocab_, hidden_, 1.0f,
                         1.0f);
    if (tied_token_rows) {  // d(token rows) += dlogits[:, indices]ᵀ · norm
      const BufferRange token_logits = rows_of(range("grad_act.token_logits"), 0, count, token_rows_ * 4);
      kernels::gather_columns(r, logits, range("model.embed_tokens.token_indices"), token_logits, count, vocab_,
                              token_rows_);
      kernels::matmul_tn(r, token_logits, DType::f32, x, act_, range("grad.model.embed_tokens.token_delta"), count,
                         token_rows_, hidden_, 1.0f, 1.0f);
    }
  }
  if (loss)
    kernels::sum_rows(r, range("loss.rows"), buffers_.buffer("loss.step").range(0, 4), range("workspace.reduce"), rows_,
                      1, true);
  if (loss && teacher_ && gradients)  // loss.step: [0] the loss, [1] Σ w·T²·KL, [2] Σ w·CE
    for (uint32_t part = 0; part < 2; part++)
      kernels::sum_rows(r, range(part ? "loss.distill_ce" : "loss.distill_kl"),
                        buffers_.buffer("loss.step").range(4 + 4 * part, 4), range("workspace.reduce"), rows_, 1, true);
}

BufferRange Transformer::layer_input(uint32_t layer) const {
  // Inference keeps the residual stream in one buffer, updated in place by every layer.
  if (!plan_.settings.training) return range("act.stream");
  return range(layer < layers_ ? "act.layers." + std::to_string(layer) + ".input" : std::string("act.final.input"));
}

void Transformer::write_token_rows(Recorder& r) {
  if (token_rows_ == 0) return;
  kernels::scatter_rows(r, range("model.embed_tokens.token_delta"), range("model.embed_tokens.token_indices"),
                        range("model.embed_tokens.weight"), embedding_type(), token_rows_, vocab_, hidden_);
}

void Transformer::record_token_rows_init(Recorder& r) {
  if (token_rows_ == 0) return;
  kernels::embedding(r, range("model.embed_tokens.token_indices"), range("model.embed_tokens.weight"), embedding_type(),
                     range("model.embed_tokens.token_delta"), token_rows_, vocab_, hidden_);
}

void Transformer::record_dora_init(Recorder& r) {
  for (uint32_t layer = 0; layer < layers_; layer++)
    for (size_t m = 0; m < spec::module_count; m++) {
      Linear l = linear(layer, Module(m));
      if (l.lora && l.lora->magnitude.bytes)
        dora_weight_norm(r, l, scratch(activations(layer, checkpointing_ || !plan_.settings.training), Module(m)),
                         true);
    }
}

void Transformer::record_prompt_init(Recorder& r) {
  kernels::embedding(r, range("input.ids"), range("model.embed_tokens.weight"), embedding_type(),
                     range("prompt_embeddings"), virtual_tokens_, vocab_, hidden_);
}

void Transformer::record_prompt_encoder(Recorder& r) {
  if (encoder_hidden_) record_prompt_encoder_forward(r, buffers_, virtual_tokens_, hidden_, encoder_hidden_);
  record_prefix_encoder(r);
}

void Transformer::write_prompt_rows(Recorder& r, const BufferRange& out, uint32_t first, uint32_t count) {
  if (virtual_tokens_ == 0 || !adapter_enabled_) return;
  const uint32_t row_bytes = hidden_ * kernels::dtype_bytes(act_);
  const BufferRange indices = rows_of(range("prompt.indices"), first, count, 4);
  for (uint32_t b = 0; b < (plan_.settings.training ? batch_ : 1); b++)  // PEFT's torch.cat((prompts, inputs_embeds))
    kernels::embedding(r, indices, range("prompt_embeddings"), DType::f32, rows_of(out, b * seq_len_, count, row_bytes),
                       count, virtual_tokens_, hidden_, act_);
}

void Transformer::record_body(Recorder& r) {
  write_token_rows(r);
  record_prefix_inputs(r, batch_, seq_len_);
  DType table_type = embedding_type();
  kernels::embedding(r, range("input.ids"), range("model.embed_tokens.weight"), table_type, layer_input(0), rows_,
                     vocab_, hidden_, act_);
  if (encoder_hidden_)
    record_prompt_encoder_forward(r, buffers_, virtual_tokens_, hidden_, encoder_hidden_,
                                  dropout_active_ ? encoder_dropout_ : 0.0f);
  record_prefix_encoder(r);  // prefix_projection: the prefix keys/values the layers read
  write_prompt_rows(r, layer_input(0), 0, virtual_tokens_);  // before Gemma's scale: it scales inputs_embeds whole
  if (config_.gemma) kernels::scale(r, layer_input(0), rows_ * hidden_, embedding_scale(), nullptr, act_);
  const bool recompute_set = checkpointing_ || !plan_.settings.training;
  for (uint32_t layer = 0; layer < layers_; layer++) {
    BufferRange out = layer_input(layer + 1);
    layer_forward(r, layer, activations(layer, recompute_set), &out, training_pass());
  }
  kernels::rmsnorm(r, layer_input(layers_), range("model.norm.weight"), range("act.final.norm"),
                   range("act.final.rstd"), rows_, hidden_, static_cast<float>(config_.rms_norm_eps), norm_offset(),
                   act_);
}

void Transformer::set_distill_teacher(Transformer* teacher, float temperature, float alpha) {
  if (teacher) {
    VKT_ASSERT(teacher->rows_ == rows_ && teacher->vocab_ == vocab_ &&
                   teacher->plan_.logits_chunk_rows >= plan_.logits_chunk_rows,
               "distillation teacher planned for another batch shape or vocabulary");
    if (config_.final_logit_softcapping > 0 || teacher->config_.final_logit_softcapping > 0)
      throw UserError("distillation does not support final_logit_softcapping (Gemma 2) yet",
                      "use a student and a teacher without final_logit_softcapping");
  }
  teacher_ = teacher;
  distill_temperature_ = temperature;
  distill_alpha_ = alpha;
}

void Transformer::record_head_rows(Recorder& r, uint32_t first, uint32_t count, const BufferRange& logits) {
  const uint32_t row_bytes = hidden_ * kernels::dtype_bytes(act_);
  kernels::matmul_nt(r, rows_of(range("act.final.norm"), first, count, row_bytes), act_, lm_head_ref(),
                     rows_of(logits, 0, count, vocab_ * 4), DType::f32, count, vocab_, hidden_);
}

void Transformer::record_forward(Recorder& r, bool loss, bool gradients, bool dropout) {
  if (teacher_ && loss && gradients) {  // the teacher reads the same micro-batch
    for (const char* input : {"input.ids", "input.positions", "input.segments"})
      r.copy(range(input), teacher_->range(input));
    teacher_->record_hidden(r);
  }
  s2_active_ = gradients && s2_group_ > 0;
  dropout_active_ = dropout;
  record_body(r);
  lm_head_chunks(r, loss, gradients, nullptr);
}

void Transformer::record_backward(Recorder& r) { record_backward(r, 0, layers_); }

void Transformer::record_backward(Recorder& r, uint32_t layer_begin, uint32_t layer_end) {
  s2_active_ = s2_group_ > 0;
  dropout_active_ = true;                                                   // the masks of the forward it follows
  BufferRange d_final = buffers_.optional_range("grad.model.norm.weight");  // full, or a trained norm
  if (layer_end == layers_)
    kernels::rmsnorm_backward(r, range("grad_act.norm"), layer_input(layers_), range("model.norm.weight"),
                              range("act.final.rstd"), range("grad_act.residual"), d_final.bytes ? &d_final : nullptr,
                              range("workspace.reduce"), rows_, hidden_, false, norm_offset(), act_);
  for (uint32_t layer = layer_end; layer-- > layer_begin;) {
    LayerActivations acts = activations(layer, checkpointing_);
    if (checkpointing_) layer_forward(r, layer, acts, nullptr, training_pass());  // recompute its activations
    layer_backward(r, layer, acts);
  }
  if (layer_begin > 0) return;
  // The layers saw the table's rows times the scale: so do the gradients of the trained rows.
  if ((full_ || train_embedding_ || token_rows_ > 0 || virtual_tokens_ > 0) && config_.gemma)
    kernels::scale(r, range("grad_act.residual"), rows_ * hidden_, embedding_scale(), nullptr, act_);
  if (full_ || train_embedding_)
    kernels::embedding_backward(r, range("input.ids"), range("grad_act.residual"),
                                range("grad.model.embed_tokens.weight"), range("workspace.reduce"), rows_, vocab_,
                                hidden_, act_);
  if (token_rows_ > 0) {  // the trained rows' gradients: the embedding's, summed by slot
    const BufferRange slots = range("input.token_slots");
    kernels::token_slots(r, range("input.ids"), range("model.embed_tokens.token_indices"), slots, rows_, token_rows_);
    kernels::embedding_backward(r, slots, range("grad_act.residual"), range("grad.model.embed_tokens.token_delta"),
                                range("workspace.reduce"), rows_, token_rows_, hidden_, act_);
  }
  if (virtual_tokens_ > 0 && adapter_enabled_) {  // the prompt's gradient: its cells' rows, summed over the batch
    // P-tuning: this micro-batch's alone (embedding_backward adds), then through the encoder into its grad.*.
    const BufferRange d_prompt = range(encoder_hidden_ ? "prompt_encoder.grad_output" : "grad.prompt_embeddings");
    if (encoder_hidden_) r.fill(d_prompt);
    kernels::embedding_backward(r, range("input.prompt_slots"), range("grad_act.residual"), d_prompt,
                                range("workspace.reduce"), rows_, virtual_tokens_, hidden_, act_);
    if (encoder_hidden_)
      record_prompt_encoder_backward(r, buffers_, virtual_tokens_, hidden_, encoder_hidden_, encoder_dropout_);
  }
  s2_active_ = false;  // what is recorded next (evaluation, logits) attends in full
}

void Transformer::record_decode(Recorder& r, uint32_t rows, uint32_t past, const BufferRange& logits, bool long_rope) {
  VKT_ASSERT(!plan_.settings.training && plan_.settings.kv_cache_tokens > 0, "record_decode needs an inference plan");
  VKT_ASSERT(rows >= 1 && rows <= rows_ && past + rows <= plan_.settings.kv_cache_tokens, "decode beyond the cache");
  ForwardPass pass;
  pass.rows = rows;
  pass.decode = true;
  pass.past = past;
  pass.attention = attention_shape();
  pass.attention.batch = 1;
  pass.attention.seq_q = rows;
  pass.attention.seq_kv = past + rows;
  pass.attention.q_offset = past;
  pass.long_rope = long_rope && config_.rope_scaling.type == "longrope";  // cached keys keep the factors they had
  write_token_rows(r);
  record_prefix_inputs(r, 1, rows);
  DType table_type = embedding_type();
  const BufferRange stream = range("act.stream");
  const uint32_t row_bytes = hidden_ * kernels::dtype_bytes(act_);
  kernels::embedding(r, range("input.ids"), range("model.embed_tokens.weight"), table_type, stream, rows, vocab_,
                     hidden_, act_);
  if (past < virtual_tokens_)  // the cache's first N rows are the soft prompt's
    write_prompt_rows(r, stream, past, std::min(rows, virtual_tokens_ - past));
  if (config_.gemma)
    kernels::scale(r, rows_of(stream, 0, rows, row_bytes), rows * hidden_, embedding_scale(), nullptr, act_);
  for (uint32_t layer = 0; layer < layers_; layer++) layer_forward(r, layer, activations(layer, true), &stream, pass);
  // Only the last row's logits are needed to pick the next token.
  BufferRange last = rows_of(stream, rows - 1, 1, row_bytes);
  BufferRange norm = rows_of(range("act.final.norm"), 0, 1, row_bytes);
  kernels::rmsnorm(r, last, range("model.norm.weight"), norm, rows_of(range("act.final.rstd"), 0, 1, 4), 1, hidden_,
                   static_cast<float>(config_.rms_norm_eps), norm_offset(), act_);
  kernels::matmul_nt(r, norm, act_, lm_head_ref(), rows_of(logits, 0, 1, vocab_ * 4), DType::f32, 1, vocab_, hidden_);
  if (config_.final_logit_softcapping > 0)
    kernels::softcap(r, rows_of(logits, 0, 1, vocab_ * 4), vocab_, static_cast<float>(config_.final_logit_softcapping));
}

void Transformer::record_logits(Recorder& r, const BufferRange& logits) {
  VKT_ASSERT(logits.bytes >= static_cast<uint64_t>(rows_) * vocab_ * 4, "logits buffer too small");
  s2_active_ = dropout_active_ = false;
  record_body(r);
  lm_head_chunks(r, false, false, &logits);
}

}  // namespace vkt::model
