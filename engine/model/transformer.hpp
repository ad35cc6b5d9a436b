#pragma once
// The Llama-family decoder as recorded compute work: one micro-batch's forward (embedding ->
// L x [rmsnorm -> q,k,v (+LoRA) -> rope -> attention -> o (+LoRA) -> residual -> rmsnorm ->
// gate,up (+LoRA) -> swiglu -> down (+LoRA) -> residual] -> norm -> lm_head + weighted
// cross-entropy in row chunks) and the explicit per-layer backward, recomputing each layer
// first under gradient checkpointing. Every buffer comes from the memory plan by name.
#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/kernels/attention.hpp"
#include "engine/model/buffers.hpp"
#include "engine/model/config.hpp"
#include "engine/model/linear.hpp"
#include "engine/plan/plan.hpp"

namespace vkt::model {

// LoRA settings of a run (PEFT's LoraConfig subset that changes the math).
struct LoraSettings {
  uint32_t rank = 8;
  float alpha = 16;
  float dropout = 0;
  bool rslora = false;
  std::vector<spec::Module> targets;
  std::vector<uint32_t> layers;  // PEFT layers_to_transform: the layers with LoRA (empty: all)
  bool adapts_layer(uint32_t layer) const {
    return layers.empty() || std::find(layers.begin(), layers.end(), layer) != layers.end();
  }
  // PEFT's modules_to_save (embed_tokens, lm_head: trained whole) and trainable_token_indices
  // (rows of embed_tokens, and of a tied lm_head, trained alone).
  bool save_embed_tokens = false, save_lm_head = false;
  std::vector<std::string> saved_norms;  // norms in modules_to_save (spec::peft_saves_module)
  std::vector<uint32_t> token_indices;
  // --peft-type: IA3 (targets then empty) trains one vector per module of ia3_targets (engine/model/ia3.hpp).
  spec::PeftType peft_type = spec::PeftType::lora;
  std::vector<spec::Module> ia3_targets, ia3_feedforward;
  // Soft prompts (engine/model/soft_prompt.hpp): the virtual tokens, and PEFT's init options
  // (prompt_tuning_init "RANDOM" or "TEXT", its text, tokenizer_name_or_path) as the config names them.
  uint32_t virtual_tokens = 0;
  std::string prompt_init = "RANDOM", prompt_init_text, prompt_tokenizer;
  // P-tuning (engine/model/p_tuning.hpp): PromptEncoderConfig's encoder fields, and whether this run
  // trains the encoder (a saved P_TUNING adapter holds its output only: then the prompt is fixed).
  uint32_t encoder_hidden = 0, encoder_layers = 2;
  std::string encoder_type = "MLP";
  float encoder_dropout = 0;
  bool train_encoder = false;
  // Prefix tuning (engine/model/prefix_tuning.hpp): PEFT's num_virtual_tokens past keys/values per layer;
  // prefix_projection as the config says (while training it, train_encoder: encoder_hidden is its width).
  uint32_t prefix_tokens = 0;
  bool prefix_projection = false;
  float scale() const;  // alpha/r, or alpha/sqrt(r) with rsLoRA
};

// Offsets of the trainer's per-step values inside kernels::StepState.spare (see optimizer.hpp).
constexpr uint32_t step_state_loss_scale_offset = 40;  // spare[0]: 1 / Σ loss weights of the step

class Transformer {
 public:
  // `lora` is required for lora/qlora runs and ignored for full finetuning and inference.
  Transformer(vk::Context& context, const ModelConfig& config, const plan::MemoryPlan& plan, BufferSet& buffers,
              const LoraSettings* lora = nullptr);

  // Forward of the micro-batch in input.*; with `loss`, the weighted cross-entropy of every
  // row is added into loss.step (Σ w·CE) and, with `gradients`, dlogits are pushed through the
  // lm_head into grad_act.norm as the chunks go (fused: full logits never exist). `dropout`: LoRA
  // and encoder dropout apply (torch's train mode); evaluation during training passes false
  // (HF's Trainer evaluates in eval mode), a scoring pass whose loss is backpropagated later true.
  void record_forward(Recorder& recorder, bool loss, bool gradients, bool dropout);
  void record_forward(Recorder& recorder, bool loss, bool gradients) {
    record_forward(recorder, loss, gradients, gradients);
  }
  // Backward after record_forward(recorder, true, true): accumulates every trainable gradient.
  void record_backward(Recorder& recorder);
  // The same backward in pieces (data parallelism sums finished layers' gradients while earlier
  // layers run): layers [layer_begin, layer_end) in reverse; the final norm's backward when
  // layer_end is the layer count, the embedding's when layer_begin is 0.
  void record_backward(Recorder& recorder, uint32_t layer_begin, uint32_t layer_end);
  uint32_t layer_count() const { return layers_; }
  // Forward writing the logits of every row into `logits` (rows, vocab) fp32 (tests, scoring).
  void record_logits(Recorder& recorder, const BufferRange& logits);
  // Generation (inference plans with a KV cache): the forward of `rows` new tokens of one
  // sequence (input.ids / input.positions rows [0, rows)) whose first `past` tokens are cached;
  // appends their keys and values to the cache and writes the last row's logits into `logits`
  // (vocab) fp32. `long_rope`: longrope's long factors for these rows (the caller decides, as
  // transformers' generation does; engine/model/generate.cpp).
  void record_decode(Recorder& recorder, uint32_t rows, uint32_t past, const BufferRange& logits,
                     bool long_rope = false);
  // dynamic RoPE only (a no-op otherwise): uploads the frequencies for a forward whose positions
  // reach `positions` (max(position_ids) + 1); cached keys keep the ones they were rotated with, as
  // in transformers.
  void upload_dynamic_rope(int64_t positions);

  // Trainable tokens start as the base rows (PEFT copies them): gathers them from the table
  // (before the first forward writes the rows back).
  void record_token_rows_init(Recorder& recorder);
  // DoRA: every magnitude vector set to the norm of its base weight's rows (PEFT's initial m).
  void record_dora_init(Recorder& recorder);
  // Prompt tuning's TEXT init: the prompt's rows become the embedding table's rows of input.ids[0, N)
  // (the caller uploads the N ids there), unscaled, as PEFT's word_embeddings(init_token_ids).
  void record_prompt_init(Recorder& recorder);
  // P-tuning while training: prompt_embeddings = the encoder's output (p_tuning.hpp); prefix tuning with
  // prefix_projection: prefix.key_values = its encoder's (prefix_tuning.hpp); nothing otherwise.
  void record_prompt_encoder(Recorder& recorder);

  // NF4 double quantization keeps one host-side float per weight (the mean of its absmax
  // values); the loader provides them by tensor name.
  void set_absmax_offsets(std::unordered_map<std::string, float> offsets) { absmax_offsets_ = std::move(offsets); }

  // Also compute d loss / d (embedding output) in grad_act.residual (LoRA runs skip it: nothing
  // below layer 0 is trained). Full finetuning always computes it.
  void set_compute_input_gradient(bool enabled) { compute_input_gradient_ = enabled; }

  // Off: passes recorded from now on skip every LoRA update (the frozen base, as PEFT's
  // disable_adapter()): preference training's reference log-probs, with no second model copy.
  void set_adapter_enabled(bool enabled) { adapter_enabled_ = enabled; }

  // Knowledge distillation (--objective distill): a frozen teacher (an inference plan with this
  // plan's batch, seq_len and vocabulary) whose forward runs on the same inputs inside this model's
  // training forward, and whose logits enter the fused loss chunk by chunk (kernels::distill_loss)
  // in place of the plain cross-entropy. Evaluation (record_forward without gradients) stays plain CE.
  // nullptr: none.
  void set_distill_teacher(Transformer* teacher, float temperature, float alpha);
  // A teacher's parts: its forward up to the final norm (act.final.norm) of the micro-batch in
  // input.*, and the logits of rows [first, first + count) from it into `logits` (count, vocab) fp32.
  void record_hidden(Recorder& recorder) { record_body(recorder); }
  void record_head_rows(Recorder& recorder, uint32_t first, uint32_t count, const BufferRange& logits);

  uint32_t rows() const { return rows_; }
  uint32_t batch() const { return batch_; }
  uint32_t seq_len() const { return seq_len_; }
  const ModelConfig& config() const { return config_; }
  const plan::MemoryPlan& plan() const { return plan_; }
  BufferSet& buffers() { return buffers_; }
  // The LoRA parameters of (layer, module), or nullptr when that module has no adapter.
  const LoraParams* lora(uint32_t layer, spec::Module module) const;

 private:
  struct LayerActivations {
    BufferRange input, rstd_attn, norm_attn, q, k, v, attn, lse, mid, rstd_mlp, norm_mlp, gate, up, act;
    // Qwen3's and Gemma 3's q_norm/k_norm (empty otherwise): q/k as projected, (rows, heads * head_dim),
    // and the rstd of each (row, head), saved for the backward.
    BufferRange q_pre_norm, k_pre_norm, rstd_q, rstd_k;
    // Gemma only: inputs of the norms after attention and after the MLP, and their rstd.
    BufferRange o_pre, rstd_post_attn, down_pre, rstd_post_mlp;
    std::array<BufferRange, spec::module_count> lora_t;
    std::array<BufferRange, spec::module_count> ia3_z;  // IA3, output-scaled modules: x·Wᵀ + b (rows, out)
    // DoRA: v = x·Wᵀ + s·t·Bᵀ (rows, out) (training) and the scales (3·out) fp32 (engine/model/dora.hpp).
    std::array<BufferRange, spec::module_count> dora_v, dora_scales;
  };
  LayerActivations activations(uint32_t layer, bool recompute) const;
  Linear linear(uint32_t layer, spec::Module module) const;
  LinearScratch scratch(const LayerActivations& acts, spec::Module module) const;
  // How a forward pass attends: the training shape over the micro-batch with segment masks, or a
  // decode step over the KV cache.
  struct ForwardPass {
    uint32_t rows = 0;
    kernels::AttentionShape attention;
    bool decode = false;
    uint32_t past = 0;       // decode: cached tokens before these rows
    bool long_rope = false;  // longrope: the long_factor frequencies (rope.inv_freq_long)
  };
  ForwardPass training_pass() const;
  void layer_forward(Recorder& recorder, uint32_t layer, const LayerActivations& acts, const BufferRange* out,
                     const ForwardPass& pass);
  void layer_backward(Recorder& recorder, uint32_t layer, const LayerActivations& acts);
  BufferRange layer_input(uint32_t layer) const;  // layer == layers: the final norm's input
  void record_body(Recorder& recorder);           // embedding, layers, final norm
  void lm_head_chunks(Recorder& recorder, bool loss, bool gradients, const BufferRange* logits_out);
  kernels::WeightRef weight_ref(const std::string& name) const;
  kernels::WeightRef lm_head_ref() const;
  kernels::AttentionShape attention_shape() const;
  // `base` with this layer's sliding window (0 for a global layer).
  kernels::AttentionShape layer_attention(kernels::AttentionShape base, uint32_t layer) const;
  // RoPE frequencies: Gemma's local layers have their own, longrope a long set.
  BufferRange layer_inv_freq(uint32_t layer, bool long_rope) const;
  // longrope's factor on cos and sin (1 otherwise).
  float rope_attention_factor() const { return static_cast<float>(config_.rope_scaling.attention_factor); }
  float norm_offset() const { return config_.gemma ? 1.0f : 0.0f; }  // Gemma's (1 + w) norms
  // The norm before the MLP: Gemma's pre_feedforward_layernorm (its post_attention_layernorm
  // follows attention), Llama's post_attention_layernorm.
  const char* mlp_norm_name() const {
    return config_.gemma ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight";
  }
  float embedding_scale() const;  // Gemma: sqrt(hidden_size) rounded to the checkpoint's config dtype
  kernels::DType embedding_type() const { return fp32_embedding_ ? kernels::DType::f32 : dense_type_; }
  void write_token_rows(Recorder& recorder);  // trainable tokens: their rows into the table
  // Soft prompt: the prompt's rows over the first `count` virtual cells from `first` (decode: of the
  // cache) into `out`, whose rows are those cells; every row of the micro-batch when training.
  void write_prompt_rows(Recorder& recorder, const BufferRange& out, uint32_t first, uint32_t count);
  // Prefix tuning (engine/model/prefix_tuning.cpp): the shifted positions and key segments of the
  // micro-batch, then each layer's attention over the prefix and the sequence (false: no prefix).
  void record_prefix_inputs(Recorder& recorder, uint32_t batch, uint32_t seq);
  bool prefix_active() const { return prefix_tokens_ > 0 && adapter_enabled_; }
  bool prefix_attention_forward(Recorder& recorder, uint32_t layer, const LayerActivations& acts,
                                const ForwardPass& pass, const kernels::AttentionShape& attention);
  bool prefix_attention_backward(Recorder& recorder, uint32_t layer, const LayerActivations& acts);
  void record_prefix_encoder(Recorder& recorder);  // prefix_projection: the encoder's prefix
  BufferRange range(const std::string& name) const { return buffers_.range(name); }
  BufferRange rows_of(const BufferRange& range, uint32_t first_row, uint32_t rows, uint32_t row_bytes) const;

  vk::Context& context_;
  ModelConfig config_;
  const plan::MemoryPlan& plan_;
  BufferSet& buffers_;
  uint32_t batch_ = 0, seq_len_ = 0, rows_ = 0;
  uint32_t hidden_ = 0, intermediate_ = 0, heads_ = 0, kv_heads_ = 0, head_dim_ = 0, vocab_ = 0, layers_ = 0;
  bool full_ = false, checkpointing_ = false, compute_input_gradient_ = false;
  // PEFT's extras beside LoRA: embed_tokens / lm_head trained in fp32 (modules_to_save), and the
  // rows of trainable tokens (0: none) written into the embedding table before every forward.
  bool train_embedding_ = false, train_head_ = false, fp32_embedding_ = false, fp32_head_ = false;
  uint32_t token_rows_ = 0;
  uint32_t encoder_hidden_ = 0;  // P-tuning while training: the encoder's hidden size (0: no encoder)
  // P-tuning's LSTM dropout between layers (encoder_dropout).
  float encoder_dropout_ = 0;
  // LoRA and encoder dropout in the pass being recorded (train mode): record_forward's `dropout`.
  bool dropout_active_ = false;
  uint32_t prefix_tokens_ = 0;          // prefix tuning: past key/value rows before every sequence, per layer
  uint32_t prefix_encoder_hidden_ = 0;  // prefix_projection while training: the encoder's hidden size (0: none)
  uint32_t virtual_tokens_ = 0;         // soft prompt: cells [0, N) of every row take prompt_embeddings (N, hidden)
  bool adapter_enabled_ = true;
  // --s2-attn: training's group size (0: off); active while recording a forward with gradients and
  // its backward, so that evaluation and generation attend in full.
  uint32_t s2_group_ = 0;
  bool s2_active_ = false;
  Transformer* teacher_ = nullptr;  // distillation's frozen teacher (not owned)
  float distill_temperature_ = 1, distill_alpha_ = 0.5f;
  std::string head_name_;  // the lm_head's table: "lm_head.weight", or the tied embedding
  kernels::DType dense_type_ = kernels::DType::f32;
  // Storage of every saved activation and activation gradient, and of the KV cache's rows
  // (RunSettings::activation_dtype). rstd, lse, logits and losses stay fp32.
  kernels::DType act_ = kernels::DType::f32;
  std::vector<std::array<LoraParams, spec::module_count>> lora_;
  std::vector<std::array<bool, spec::module_count>> has_lora_;
  std::vector<std::array<Ia3Params, spec::module_count>> ia3_;  // IA3 vectors (l empty: none)
  std::unordered_map<std::string, float> absmax_offsets_;
};

// HF names of a layer's tensors: "model.layers.3.self_attn.q_proj.weight".
std::string layer_tensor_name(uint32_t layer, spec::Module module, const char* suffix = "weight");

}  // namespace vkt::model
