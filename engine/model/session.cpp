#include "engine/model/session.hpp"

#include "engine/base/log.hpp"
#include "engine/model/gguf_model.hpp"
#include "engine/model/gguf_weights.hpp"

namespace vkt::model {

spec::ModelShape model_shape(const ModelConfig& c) {
  spec::ModelShape shape;
  shape.hidden = static_cast<uint64_t>(c.hidden_size);
  shape.intermediate = static_cast<uint64_t>(c.intermediate_size);
  shape.layers = static_cast<uint64_t>(c.num_hidden_layers);
  shape.heads = static_cast<uint64_t>(c.num_attention_heads);
  shape.kv_heads = static_cast<uint64_t>(c.num_key_value_heads);
  shape.head_dim = static_cast<uint64_t>(c.head_dim);
  shape.vocab = static_cast<uint64_t>(c.vocab_size);
  shape.tied_embeddings = c.tie_word_embeddings;
  shape.qkv_bias = c.qkv_bias;
  shape.gemma = c.gemma;
  shape.qk_norm = c.qk_norm;
  shape.fused_projections = c.fused_projections();
  shape.longrope = c.rope_scaling.type == "longrope";
  return shape;
}

void apply_adapter_settings(spec::RunSettings& settings, const LoraSettings& lora) {
  settings.lora_r = lora.rank;
  settings.target_modules = lora.targets;
  settings.lora_layers = lora.layers;
  settings.lora_dropout = lora.dropout;
  settings.save_embed_tokens = lora.save_embed_tokens;
  settings.save_lm_head = lora.save_lm_head;
  settings.saved_norms = lora.saved_norms;
  settings.trainable_token_indices = lora.token_indices;
  settings.peft_type = lora.peft_type;
  settings.ia3_targets = lora.ia3_targets;
  settings.ia3_feedforward = lora.ia3_feedforward;
  settings.virtual_tokens = lora.virtual_tokens;
  settings.prompt_encoder_hidden = lora.train_encoder && !lora.prefix_projection ? lora.encoder_hidden : 0;
  settings.prompt_encoder_lstm_layers = lora.train_encoder && lora.encoder_type == "LSTM" ? lora.encoder_layers : 0;
  settings.prefix_tokens = lora.prefix_tokens;
  settings.prefix_projection_hidden = lora.prefix_projection && lora.train_encoder ? lora.encoder_hidden : 0;
}

std::unique_ptr<ModelSession> open_model(vk::Context& context, const std::filesystem::path& model_dir,
                                         const spec::RunSettings& settings, const LoraSettings* lora,
                                         ProgressBar* progress, const ModelConfig* config) {
  auto session = std::make_unique<ModelSession>();
  session->config = config ? *config : load_model_config(model_dir);
  spec::RunSettings adjusted = settings;
  // A checkpoint written by `vktune quantize` (int8/int4/int4-asym) is used as stored unless the
  // run asked for a quantized format of its own (then it is converted) or trains every weight
  // (then it is dequantized to fp32).
  if (auto stored = vktune_quantization(session->config, (model_dir / "config.json").string())) {
    const bool full = adjusted.method == spec::Method::full && adjusted.training;
    if (full) {
      log::warn(model_dir.string() + " is quantized (" + quantized_format_name(stored->format) +
                "): full finetuning starts from its dequantized values");
    } else if (!kernels::is_quantized(adjusted.base_format)) {
      adjusted.base_format = stored->format;
      adjusted.quant_block = stored->block_size;
    }
  }
  if (lora) apply_adapter_settings(adjusted, *lora);
  // A GGUF file: its linear weights stay in their stored types (gguf_weights.hpp) unless the run
  // asks for another format; other tensors are dequantized to fp32 on load (gguf_model.hpp).
  const bool gguf = is_gguf_file(model_dir);
  std::unique_ptr<SafetensorsFolder> folder = gguf ? nullptr : std::make_unique<SafetensorsFolder>(model_dir);
  // A bitsandbytes 4-bit checkpoint likewise loads as stored (NF4, its block size) when the run did
  // not ask for a quantized format; full finetuning still refuses it (load_weights says why).
  if (folder && is_bitsandbytes_nf4(*folder, session->config) && !kernels::is_quantized(adjusted.base_format) &&
      !(adjusted.method == spec::Method::full && adjusted.training)) {
    adjusted.base_format = kernels::WeightFormat::nf4;
    adjusted.quant_block =
        read_bitsandbytes_nf4(*folder, layer_tensor_name(0, spec::Module::q_proj),
                              static_cast<uint32_t>(session->config.num_attention_heads * session->config.head_dim),
                              static_cast<uint32_t>(session->config.hidden_size))
            .block_size;
  }
  if (folder && is_bitsandbytes_nf4(*folder, session->config) && adjusted.base_format == kernels::WeightFormat::nf4 &&
      adjusted.double_quant && !bitsandbytes_keeps_double_quant(*folder, session->config)) {
    // Its nested map differs from ours in the last ulp: keep the exact absmax values instead.
    adjusted.double_quant = false;
  }
  if (gguf) {
    resolve_gguf_formats(model_dir, session->config, adjusted);
  } else if (adjusted.base_format == kernels::WeightFormat::gguf) {
    throw UserError(
        "--quant gguf keeps a GGUF file's own tensor types, and " + model_dir.string() + " is not a GGUF file",
        "pass a .gguf to --model, or pick nf4, int8, int4, int4-asym or none");
  }
  session->plan = plan::make_plan(model_shape(session->config), adjusted);
  session->buffers = std::make_unique<BufferSet>(context, session->plan);
  std::unique_ptr<TensorSource> source;
  if (folder)
    source = std::make_unique<SafetensorsSource>(*folder);
  else
    source = std::make_unique<GgufTensorSource>(model_dir, session->config);
  session->loaded = load_weights(context, *source, session->config, session->plan, *session->buffers, progress);
  session->transformer =
      std::make_unique<Transformer>(context, session->config, session->plan, *session->buffers, lora);
  session->transformer->set_absmax_offsets(session->loaded.absmax_offsets);
  return session;
}

}  // namespace vkt::model
