#include "engine/plan/plan.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/sizes.hpp"
#include "engine/kernels/adafactor.hpp"
#include "engine/kernels/attention.hpp"
#include "engine/kernels/embedding.hpp"
#include "engine/kernels/norm.hpp"
#include "engine/kernels/optimizer.hpp"
#include "engine/kernels/optimizer_8bit.hpp"
#include "engine/kernels/reduce.hpp"
#include "engine/kernels/s2_attention.hpp"
#include "engine/plan/data_parallel.hpp"
#include "engine/plan/prefix_encoder_plan.hpp"
#include "engine/plan/prompt_encoder_plan.hpp"
#include "engine/quant/fake_quant.hpp"
#include "engine/spec/modules_to_save.hpp"

namespace vkt::plan {

using spec::Method;
using spec::ModelShape;
using spec::Module;
using spec::module_count;
using spec::module_in_features;
using spec::module_name;
using spec::module_out_features;
using spec::module_path;
using spec::Optimizer;
using spec::optimizer_states_per_parameter;
using spec::RunSettings;
using vk::Category;
using vk::MemoryKind;

uint64_t weight_bytes(uint64_t elements, WeightFormat format, uint32_t block, bool double_quant) {
  // ggml blocks as stored in the GGUF file (Q8_0 34 B per 32, Q4_K 144 B per 256, ...), + the tail word.
  if (kernels::is_ggml_block(format)) return kernels::ggml_data_bytes(format, elements);
  uint64_t blocks = (elements + block - 1) / block;
  uint64_t packed_nibbles = (blocks * block + 1) / 2;  // tail block padded
  switch (format) {
    case WeightFormat::f32:
      return elements * 4;
    case WeightFormat::f16:
    case WeightFormat::bf16:
      return elements * 2;
    case WeightFormat::int8:
      return blocks * block + blocks * 4;
    case WeightFormat::int4:
      return packed_nibbles + blocks * 4;
    case WeightFormat::int4_asym:
      return packed_nibbles + blocks * 4 + blocks;
    case WeightFormat::nf4:
      return packed_nibbles + (double_quant ? blocks + ((blocks + 255) / 256) * 4 : blocks * 4);
    case WeightFormat::gguf:
      VKT_ASSERT(false, "weight_bytes of gguf: each weight has its own GGUF type");
      return 0;
    default:
      break;
  }
  return 0;
}

uint64_t MemoryPlan::bytes(Category category) const {
  uint64_t sum = 0;
  for (const auto& buffer : buffers)
    if (buffer.category == category) sum += buffer.bytes;
  return sum;
}

uint64_t MemoryPlan::bytes(Category category, MemoryKind kind) const {
  uint64_t sum = 0;
  for (const auto& buffer : buffers)
    if (buffer.category == category && buffer.kind == kind) sum += buffer.bytes;
  return sum;
}

uint64_t MemoryPlan::total_bytes() const {
  uint64_t sum = 0;
  for (const auto& buffer : buffers) sum += buffer.bytes;
  return sum;
}

uint64_t MemoryPlan::device_bytes() const {
  uint64_t sum = 0;
  for (const auto& buffer : buffers)
    if (buffer.kind == MemoryKind::device) sum += buffer.bytes;
  return sum;
}

bool MemoryPlan::contains(const std::string& name) const {
  return std::any_of(buffers.begin(), buffers.end(), [&](const BufferSpec& b) { return b.name == name; });
}

const BufferSpec& MemoryPlan::find(const std::string& name) const {
  for (const auto& buffer : buffers)
    if (buffer.name == name) return buffer;
  VKT_ASSERT(false, "the memory plan has no buffer named " + name);
  return buffers.front();
}

std::vector<uint64_t> hf_parameter_shape(const spec::ModelShape& shape, uint32_t lora_r, const std::string& name,
                                         uint64_t elements) {
  if (lora_r > 0 && name.ends_with(".lora_A")) return {lora_r, elements / lora_r};
  if (lora_r > 0 && name.ends_with(".lora_B")) return {elements / lora_r, lora_r};
  for (size_t m = 0; m < spec::module_count; m++)
    if (name.find(spec::module_path(spec::Module(m)) + ".weight") != std::string::npos)
      return {spec::module_out_features(shape, spec::Module(m)), spec::module_in_features(shape, spec::Module(m))};
  if (name == "model.embed_tokens.weight" || name == "lm_head.weight") return {shape.vocab, shape.hidden};
  return {elements};
}

namespace {

// --paged-optimizer: bitsandbytes' paged optimizers keep states in unified memory that the driver
// evicts to the host only under pressure. Vulkan has no such paging, so the plan does it up front:
// states stay on the device while the plan fits the budget; beyond it, states move to host memory
// (the kernels read them over the bus) from the last trainable tensor backwards, just enough to fit.
void page_optimizer_states(MemoryPlan& plan) {
  const RunSettings& s = plan.settings;
  if (!s.page_optimizer || s.offload_optimizer || s.paging_budget_bytes == 0 || !s.training) return;
  uint64_t device = plan.device_bytes();
  for (auto it = plan.buffers.rbegin(); it != plan.buffers.rend() && device > s.paging_budget_bytes; ++it)
    if (it->category == Category::optimizer_state && it->kind == MemoryKind::device) {
      it->kind = MemoryKind::offload;
      device -= it->bytes;
    }
}

class Builder {
 public:
  explicit Builder(MemoryPlan& plan) : plan_(plan) {}
  void add(const std::string& name, Category category, uint64_t bytes, MemoryKind kind = MemoryKind::device) {
    if (bytes == 0) return;
    plan_.buffers.push_back({name, category, kind, bytes});
  }
  // A trainable tensor: the parameter (if `with_parameter`), its gradient and optimizer states.
  // `parameter_bytes` 2: a 16-bit weight of full finetuning with --bf16/--fp16 (embeddings, linear
  // weights, lm_head; norms and biases stay fp32): its gradient stays fp32 (the matmuls accumulate
  // micro-batches into it), and an fp32 master copy (category master_weights, which the optimizer
  // updates and StepRunner::reset keeps) unless --pure-bf16; the optimizer states stay fp32.
  void trainable(const std::string& name, Category parameter_category, uint64_t elements, bool with_parameter,
                 uint64_t parameter_bytes = 4) {
    const RunSettings& s = plan_.settings;
    const bool sixteen_bit = parameter_bytes == 2;
    if (with_parameter) add(name, parameter_category, elements * parameter_bytes);
    add("grad." + name, Category::gradients, elements * 4);
    MemoryKind state_kind = s.offload_optimizer ? MemoryKind::offload : MemoryKind::device;
    if (sixteen_bit && !s.pure_bf16 && s.optimizer_shards > 1)
      sharded_masters_ = true;  // ZeRO-1: the masters of this rank's slice only ("master.shard")
    else if (sixteen_bit && !s.pure_bf16)
      add("master." + name, Category::master_weights, elements * 4, state_kind);
    trainable_elements_ += elements;
    trainable_counts_.push_back(elements);  // optimizer order: ZeRO-1's slices
    if (s.optimizer_shards > 1) return;     // ZeRO-1: sharded_optimizer_states() adds this rank's slice
    if (s.optimizer == Optimizer::adamw) {
      add("adam_m." + name, Category::optimizer_state, elements * 4, state_kind);
      add("adam_v." + name, Category::optimizer_state, elements * 4, state_kind);
    } else if (s.optimizer == Optimizer::adamw_8bit) {
      add("adam_m." + name, Category::optimizer_state, kernels::adamw_8bit_state_bytes(elements), state_kind);
      add("adam_v." + name, Category::optimizer_state, kernels::adamw_8bit_state_bytes(elements), state_kind);
    } else if (s.optimizer == Optimizer::momentum) {
      add("momentum." + name, Category::optimizer_state, elements * 4, state_kind);
    } else if (s.optimizer == Optimizer::adafactor) {  // factored: rows + columns of a matrix
      const std::vector<uint64_t> dims = hf_parameter_shape(plan_.shape, s.lora_r, name, elements);
      if (dims.size() == 2) {
        add("adafactor_row." + name, Category::optimizer_state, dims[0] * 4, state_kind);
        add("adafactor_col." + name, Category::optimizer_state, dims[1] * 4, state_kind);
      } else {
        add("adafactor_v." + name, Category::optimizer_state, elements * 4, state_kind);
      }
    }
  }
  // --shard-optimizer (ZeRO-1): each rank holds the states of a 1/N slice of the flattened
  // trainable elements, at most ceil(total / N) (train/optimizer_shard.hpp), plus the slice's own
  // multi-tensor table and norm partials (one entry per tensor the slice touches: at most all).
  void sharded_optimizer_states(uint32_t tensors) {
    const RunSettings& s = plan_.settings;
    if (s.optimizer_shards <= 1 || !s.training) return;
    const bool blockwise_8bit = s.optimizer == Optimizer::adamw_8bit;
    const std::vector<uint64_t> bounds = optimizer_shard_bounds(trainable_counts_, s.optimizer_shards, blockwise_8bit);
    uint64_t slice = 0;  // the widest slice's elements
    for (size_t r = 0; r + 1 < bounds.size(); r++) slice = std::max(slice, bounds[r + 1] - bounds[r]);
    const MemoryKind state_kind = s.offload_optimizer ? MemoryKind::offload : MemoryKind::device;
    const uint32_t states = optimizer_states_per_parameter(s.optimizer);
    // adamw_8bit: whole 256-element blocks per slice, each part of a tensor in its own 8-bit layout
    const uint64_t state_bytes = optimizer_shard_state_bytes(trainable_counts_, s.optimizer_shards, blockwise_8bit);
    if (states >= 1)
      add(states == 2 ? "adam_m.shard" : "momentum.shard", Category::optimizer_state, state_bytes, state_kind);
    if (states == 2) add("adam_v.shard", Category::optimizer_state, state_bytes, state_kind);
    // 16-bit full finetuning: the slice's fp32 masters, at the slice's element offsets (the few
    // fp32 tensors' places, norms, unused)
    if (sharded_masters_) add("master.shard", Category::master_weights, slice * 4, state_kind);
    plan_.buffers.push_back({"optimizer.shard_table", Category::workspace, MemoryKind::device,
                             kernels::TensorList::table_bytes(tensors), true});
    plan_.buffers.push_back({"optimizer.shard_partials", Category::workspace, MemoryKind::device,
                             kernels::TensorList::partials_bytes(static_cast<uint32_t>(slice / 4096 + tensors)), true});
  }
  // A tensor of a PEFT adapter beside LoRA (modules_to_save, trainable tokens): fp32, trained
  // when the run trains, else only loaded from the adapter.
  void adapter_tensor(const std::string& name, uint64_t elements) {
    if (plan_.settings.training)
      trainable(name, Category::adapter_params, elements, true);
    else
      add(name, Category::adapter_params, elements * 4);
  }
  // A stored linear weight in the run's base format (codes and statistics as separate buffers).
  void linear_weight(const std::string& name, uint64_t elements, WeightFormat format) {
    const RunSettings& s = plan_.settings;
    if (kernels::is_ggml_block(format)) {
      add(name, Category::quantized_weights, weight_bytes(elements, format, 0, false));
      return;
    }
    uint64_t blocks = (elements + s.quant_block - 1) / s.quant_block;
    uint64_t nibbles = (blocks * s.quant_block + 1) / 2;
    switch (format) {
      case WeightFormat::f32:
      case WeightFormat::f16:
      case WeightFormat::bf16:
        add(name, Category::base_weights, weight_bytes(elements, format, s.quant_block, false));
        break;
      default:
        VKT_ASSERT(false, "linear_weight: unplanned format " + std::string(kernels::weight_format_name(format)));
        break;
      case WeightFormat::int8:
        add(name, Category::quantized_weights, blocks * s.quant_block);
        add(name + ".scales", Category::quantized_weights, blocks * 4);
        break;
      case WeightFormat::int4:
        add(name, Category::quantized_weights, nibbles);
        add(name + ".scales", Category::quantized_weights, blocks * 4);
        break;
      case WeightFormat::int4_asym:
        add(name, Category::quantized_weights, nibbles);
        add(name + ".scales", Category::quantized_weights, blocks * 4);
        add(name + ".zeros", Category::quantized_weights, blocks);
        break;
      case WeightFormat::nf4:
        add(name, Category::quantized_weights, nibbles);
        if (s.double_quant) {
          add(name + ".absmax_codes", Category::quantized_weights, blocks);
          add(name + ".absmax_scales", Category::quantized_weights, ((blocks + 255) / 256) * 4);
        } else {
          add(name + ".scales", Category::quantized_weights, blocks * 4);
        }
        break;
    }
  }

 private:
  MemoryPlan& plan_;
  uint64_t trainable_elements_ = 0;         // Σ elements of the trainable tensors so far
  std::vector<uint64_t> trainable_counts_;  // (trainable tensors) elements, in optimizer order
  bool sharded_masters_ = false;            // a 16-bit trained weight under --shard-optimizer
};

bool is_target(const RunSettings& s, Module module) {
  return std::find(s.target_modules.begin(), s.target_modules.end(), module) != s.target_modules.end();
}

// IA3 (peft_type ia3): whether `module` scales its input (feedforward) and its vector's length.
bool ia3_feedforward(const RunSettings& s, Module module) {
  return std::find(s.ia3_feedforward.begin(), s.ia3_feedforward.end(), module) != s.ia3_feedforward.end();
}
// The widest side any IA3 module scales or saves: its scratches hold (rows, widest).
uint64_t ia3_widest(const ModelShape& m, const RunSettings& s) {
  uint64_t widest = 0;
  for (Module module : s.ia3_targets)
    widest = std::max({widest, module_in_features(m, module), module_out_features(m, module)});
  return widest;
}

// The activations one layer's forward produces and its backward reads, with `prefix` naming
// the set ("act.layers.3." or "act.recompute."). `include_input` adds the layer input.
void layer_activations(Builder& b, const std::string& prefix, const ModelShape& m, const RunSettings& s, uint64_t rows,
                       bool include_input) {
  const uint64_t f = activation_value_bytes(s);  // tensors in the run's activation type
  const uint64_t stat = 4;                       // per-row statistics (rstd, lse) stay fp32
  if (include_input) b.add(prefix + "input", Category::activations, rows * m.hidden * f);
  b.add(prefix + "rstd_attn", Category::activations, rows * stat);
  b.add(prefix + "norm_attn", Category::activations, rows * m.hidden * f);
  b.add(prefix + "q", Category::activations, rows * m.heads * m.head_dim * f);
  b.add(prefix + "k", Category::activations, rows * m.kv_heads * m.head_dim * f);
  b.add(prefix + "v", Category::activations, rows * m.kv_heads * m.head_dim * f);
  if (m.qk_norm) {  // Qwen3: q/k before their per-head norm, and its rstd per (token, head)
    b.add(prefix + "q_pre_norm", Category::activations, rows * m.heads * m.head_dim * f);
    b.add(prefix + "k_pre_norm", Category::activations, rows * m.kv_heads * m.head_dim * f);
    b.add(prefix + "rstd_q", Category::activations, rows * m.heads * stat);
    b.add(prefix + "rstd_k", Category::activations, rows * m.kv_heads * stat);
  }
  b.add(prefix + "attn", Category::activations, rows * m.heads * m.head_dim * f);
  b.add(prefix + "lse", Category::activations, rows * m.heads * stat);
  b.add(prefix + "mid", Category::activations, rows * m.hidden * f);
  b.add(prefix + "rstd_mlp", Category::activations, rows * stat);
  b.add(prefix + "norm_mlp", Category::activations, rows * m.hidden * f);
  b.add(prefix + "gate", Category::activations, rows * m.intermediate * f);
  b.add(prefix + "up", Category::activations, rows * m.intermediate * f);
  b.add(prefix + "act", Category::activations, rows * m.intermediate * f);
  if (m.gemma) {  // inputs of the post-attention / post-MLP norms, and their rstd
    b.add(prefix + "o_pre", Category::activations, rows * m.hidden * f);
    b.add(prefix + "rstd_post_attn", Category::activations, rows * stat);
    b.add(prefix + "down_pre", Category::activations, rows * m.hidden * f);
    b.add(prefix + "rstd_post_mlp", Category::activations, rows * stat);
  }
  if (s.method != Method::full)
    for (Module module : s.target_modules)
      b.add(prefix + std::string(module_name(module)) + ".lora_t", Category::activations, rows * s.lora_r * f);
  if (s.method != Method::full && s.peft_type == spec::PeftType::dora)  // DoRA: v (training) and the scales
    for (Module module : s.target_modules) {
      const std::string name = prefix + std::string(module_name(module));
      b.add(name + ".dora_scales", Category::activations, 3 * module_out_features(m, module) * 4);
      if (s.training) b.add(name + ".dora_v", Category::activations, rows * module_out_features(m, module) * 4);
    }
  if (s.method != Method::full && s.training)  // IA3's output-scaled modules keep z = x·Wᵀ + b
    for (Module module : s.ia3_targets)
      if (!ia3_feedforward(s, module))
        b.add(prefix + std::string(module_name(module)) + ".ia3_z", Category::activations,
              rows * module_out_features(m, module) * f);
}

// a * b, or a UserError naming what overflowed: the plan's byte counts are uint64 products of
// config sizes, and a wrapped product would plan a tiny buffer for a huge tensor.
uint64_t checked_product(uint64_t a, uint64_t b, const std::string& what) {
  std::optional<uint64_t> product = checked_multiply(a, b);
  if (!product)
    throw UserError(
        "the memory plan overflows 64-bit sizes: " + what + " (" + std::to_string(a) + " x " + std::to_string(b) + ")",
        "check config.json's sizes and the batch / sequence length flags");
  return *product;
}

// Proves, before any buffer is sized, that every product the plan forms fits in 64 bits: each
// buffer is at most 16 bytes per element of (widest x widest) or (rows x widest), and a plan has
// fewer than 64 buffers per layer plus 128 others.
void check_sizes_fit(const ModelShape& m, const RunSettings& s) {
  for (uint64_t size : {m.hidden, m.intermediate, m.vocab, m.heads, m.kv_heads, m.head_dim, m.layers})
    if (size > (uint64_t{1} << 32))
      throw UserError("the memory plan cannot size a model dimension of " + std::to_string(size),
                      "check config.json's sizes: real models stay far below 2^32");
  const uint64_t widest = std::max({m.hidden, m.intermediate, m.vocab, m.heads * m.head_dim, m.kv_heads * m.head_dim,
                                    uint64_t{s.lora_r}, m.head_dim});  // products of two sizes <= 2^32
  const uint64_t rows = checked_product(s.batch, std::max(s.seq_len, s.kv_cache_tokens), "batch x tokens");
  checked_product(rows, std::max(m.heads, m.kv_heads), "tokens x heads");
  const uint64_t per_buffer = checked_product(std::max(widest, rows), widest, "the largest tensor's elements");
  const uint64_t buffers = checked_product(m.layers + 2, 64, "layers x buffers per layer");
  checked_product(checked_product(per_buffer, 16, "the largest buffer's bytes"), buffers, "the plan's total bytes");
}

// Phi-3's fused modules are adapted whole (PEFT has no q_proj there): all of q/k/v or none, all of
// gate/up or none; full finetuning would have to write the fused weights back (not done yet).
// A LoRA rank above min(in, out) of the narrowest targeted module adds parameters but no
// expressiveness (and --lora-r 100000 on hidden 256 would plan gigabytes of adapter).
void check_lora_rank(const ModelShape& shape, const RunSettings& settings) {
  if (settings.method == Method::full || settings.target_modules.empty()) return;
  spec::Module narrowest = settings.target_modules.front();
  auto side = [&](spec::Module module) {
    return std::min(spec::module_in_features(shape, module), spec::module_out_features(shape, module));
  };
  for (spec::Module module : settings.target_modules)
    if (side(module) < side(narrowest)) narrowest = module;
  if (settings.lora_r > side(narrowest))
    throw UserError("--lora-r " + std::to_string(settings.lora_r) + " is larger than " + spec::module_name(narrowest) +
                        "'s smaller side (" + std::to_string(spec::module_in_features(shape, narrowest)) + " in, " +
                        std::to_string(spec::module_out_features(shape, narrowest)) + " out features)",
                    "a rank above min(in, out) adds parameters but no expressiveness: use at most " +
                        std::to_string(side(narrowest)));
}

void check_fused_targets(const ModelShape& m, const RunSettings& s) {
  if (!m.fused_projections) return;
  if (s.method == Method::full && s.training)
    throw UserError("full finetuning of Phi-3 (fused qkv_proj / gate_up_proj) is not supported yet",
                    "use --method lora or --method qlora");
  if (s.method == Method::full) return;
  for (auto [first, last, name] : {std::tuple{Module::q_proj, Module::v_proj, "qkv_proj"},
                                   std::tuple{Module::gate_proj, Module::up_proj, "gate_up_proj"}}) {
    size_t targeted = 0, pieces = 0;
    for (auto module = static_cast<size_t>(first); module <= static_cast<size_t>(last); module++, pieces++)
      targeted += is_target(s, static_cast<Module>(module));
    if (targeted != 0 && targeted != pieces)
      throw UserError(
          std::string("this model fuses its projections into ") + name + ": LoRA adapts it whole, not its pieces",
          std::string("target ") + name + " (or all-linear) instead of its parts");
  }
}

}  // namespace

uint64_t activation_value_bytes(const RunSettings& settings) { return kernels::dtype_bytes(settings.activation_dtype); }

uint64_t saved_activation_bytes_per_layer(const ModelShape& shape, const RunSettings& settings) {
  check_sizes_fit(shape, settings);
  MemoryPlan scratch;
  scratch.settings = settings;
  Builder b(scratch);
  layer_activations(b, "", shape, settings, settings.batch * settings.seq_len, true);
  return scratch.total_bytes();
}

MemoryPlan make_plan(const ModelShape& m, const RunSettings& settings) {
  check_sizes_fit(m, settings);
  MemoryPlan plan;
  plan.shape = m;
  plan.settings = settings;
  RunSettings& s = plan.settings;
  if (s.method == Method::qlora && s.base_format == WeightFormat::f32) s.base_format = WeightFormat::nf4;
  if (s.method == Method::full) {  // full finetuning trains fp32 weights, or 16-bit ones with --bf16/--fp16
    s.dtype = s.activation_dtype;
    s.base_format = s.dtype == DType::f16    ? WeightFormat::f16
                    : s.dtype == DType::bf16 ? WeightFormat::bf16
                                             : WeightFormat::f32;
  }
  const bool full = s.method == Method::full;
  const bool training = s.training;
  check_fused_targets(m, s);
  check_lora_rank(m, s);
  Builder b(plan);
  ParameterCounts& counts = plan.parameters;

  // Weights.
  const uint64_t embedding_elements = m.vocab * m.hidden;
  counts.embedding = embedding_elements;
  const uint32_t dense_bytes = kernels::dtype_bytes(s.dtype);
  // PEFT's extras beside LoRA: whole modules (modules_to_save) or embedding rows (trainable tokens).
  const bool extras = !full && (training || s.with_adapter);
  const bool save_embed = extras && s.save_embed_tokens, save_head = extras && s.save_lm_head;
  const uint64_t token_rows = extras ? s.trainable_token_indices.size() : 0;
  if (s.save_embed_tokens && token_rows > 0)
    throw UserError("embed_tokens is both in modules_to_save and has trainable_token_indices",
                    "pick one: modules_to_save trains every row, trainable tokens only the listed ones");
  if (full && training)
    b.trainable("model.embed_tokens.weight", Category::base_weights, embedding_elements, true, dense_bytes);
  else if (save_embed)
    b.adapter_tensor("model.embed_tokens.weight", embedding_elements);
  else
    b.add("model.embed_tokens.weight", Category::base_weights, embedding_elements * dense_bytes);
  for (uint64_t layer = 0; layer < m.layers; layer++) {
    std::string prefix = "model.layers." + std::to_string(layer) + ".";
    for (size_t i = 0; i < module_count; i++) {
      Module module = static_cast<Module>(i);
      uint64_t in = module_in_features(m, module), out = module_out_features(m, module);
      std::string name = prefix + module_path(module) + ".weight";
      if (module <= Module::o_proj)
        counts.attention += in * out;
      else
        counts.mlp += in * out;
      if (full && training) {
        b.trainable(name, Category::base_weights, in * out, true, dense_bytes);
        if (s.keep_pruned_zeros) b.add("prune_mask." + name, Category::workspace, in * out * 4);  // (out, in) fp32
      } else
        b.linear_weight(name, in * out, spec::linear_weight_format(s, layer, module));
      if (m.qkv_bias && module <= Module::v_proj) {
        counts.biases += out;
        std::string bias = prefix + module_path(module) + ".bias";
        if (full && training) {
          b.trainable(bias, Category::base_weights, out, true);
        } else if (extras && s.peft_type == spec::PeftType::bitfit) {  // BitFit: the biases are the adapter
          b.adapter_tensor(bias, out);
          if (training) counts.trainable += out;
        } else {
          b.add(bias, Category::base_weights, out * 4);
        }
      }
      // LoRA A and B, under the stored (PEFT) module path: a fused module's (Phi-3's qkv_proj,
      // gate_up_proj) belong to its first piece and span all its rows (spec::fused_owner).
      const bool owns_lora = is_target(s, module) && spec::fused_owner(m, module) == module && s.adapts_layer(layer);
      const std::string lora = prefix + spec::stored_module_path(m, module);
      const uint64_t lora_out = spec::fused_out_features(m, module);
      if (!full && training && owns_lora) {
        b.trainable(lora + ".lora_A", Category::adapter_params, s.lora_r * in, true);
        b.trainable(lora + ".lora_B", Category::adapter_params, lora_out * s.lora_r, true);
        counts.trainable += s.lora_r * (in + lora_out);
      } else if (!full && s.with_adapter && owns_lora) {
        b.add(lora + ".lora_A", Category::adapter_params, s.lora_r * in * 4);
        b.add(lora + ".lora_B", Category::adapter_params, lora_out * s.lora_r * 4);
      }
      if (!full && owns_lora && s.peft_type == spec::PeftType::dora && (training || s.with_adapter)) {
        b.adapter_tensor(lora + ".lora_magnitude_vector", lora_out);  // DoRA's magnitude (out)
        if (training) counts.trainable += lora_out;
      }
      const bool ia3 = std::find(s.ia3_targets.begin(), s.ia3_targets.end(), module) != s.ia3_targets.end();
      if (extras && ia3 && s.adapts_layer(layer)) {  // IA3's vector (PEFT's ia3_l)
        const uint64_t length = ia3_feedforward(s, module) ? in : out;
        b.adapter_tensor(prefix + module_path(module) + ".ia3_l", length);
        if (training) counts.trainable += length;
      }
    }
    // A norm weight of `features` values: trained (with a gradient) in full finetuning, or as a
    // modules_to_save copy (LongLoRA's trainable norms) beside LoRA.
    auto add_norm = [&](const char* norm, uint64_t features) {
      counts.norms += features;
      std::string name = prefix + norm + ".weight";
      if (full && training)
        b.trainable(name, Category::base_weights, features, true);
      else if (extras && spec::peft_saves_module(s.saved_norms, prefix + norm))
        b.adapter_tensor(name, features), counts.trainable += training ? features : 0;
      else
        b.add(name, Category::base_weights, features * 4);
    };
    for (const char* norm : {"input_layernorm", "post_attention_layernorm"}) add_norm(norm, m.hidden);
    if (m.gemma)  // Gemma: post_attention_layernorm follows o_proj; these two wrap the MLP
      for (const char* norm : {"pre_feedforward_layernorm", "post_feedforward_layernorm"}) add_norm(norm, m.hidden);
    if (m.qk_norm)
      for (const char* norm : {"self_attn.q_norm", "self_attn.k_norm"}) add_norm(norm, m.head_dim);
  }
  counts.norms += m.hidden;
  if (full && training)
    b.trainable("model.norm.weight", Category::base_weights, m.hidden, true);
  else if (extras && spec::peft_saves_module(s.saved_norms, "model.norm"))
    b.adapter_tensor("model.norm.weight", m.hidden), counts.trainable += training ? m.hidden : 0;
  else
    b.add("model.norm.weight", Category::base_weights, m.hidden * 4);
  // modules_to_save on a tied model unties it, as PEFT does: embed_tokens and lm_head get copies
  // of their own (a module not listed keeps the frozen shared table).
  const bool untied = m.tied_embeddings && (save_embed || save_head);
  if (!m.tied_embeddings || untied) {
    if (!m.tied_embeddings) counts.lm_head = m.vocab * m.hidden;
    if (full && training)
      b.trainable("lm_head.weight", Category::base_weights, counts.lm_head, true, dense_bytes);
    else if (save_head)
      b.adapter_tensor("lm_head.weight", m.vocab * m.hidden);
    else
      b.add("lm_head.weight", Category::base_weights, m.vocab * m.hidden * dense_bytes);
  }
  if (token_rows > 0) {  // the trained rows (PEFT's trainable_tokens_delta) and their ids
    b.adapter_tensor("model.embed_tokens.token_delta", token_rows * m.hidden);
    b.add("model.embed_tokens.token_indices", Category::adapter_params, token_rows * 4);
  }
  const bool soft_prompt = s.peft_type == spec::PeftType::prompt_tuning || s.peft_type == spec::PeftType::p_tuning;
  const uint64_t prompt_rows = extras && soft_prompt ? s.virtual_tokens : 0;
  uint64_t prompt_trainable = prompt_rows * m.hidden;
  if (prompt_rows > 0 && trains_prompt_encoder(s)) {  // P-tuning: the encoder trains, its output is the prompt
    prompt_trainable = 0;
    for (const auto& t :
         prompt_encoder_parameters(prompt_rows, m.hidden, s.prompt_encoder_hidden, s.prompt_encoder_lstm_layers))
      b.adapter_tensor(t.name, t.elements()), prompt_trainable += t.elements();
    for (const auto& [name, bytes] :
         prompt_encoder_workspace(prompt_rows, m.hidden, s.prompt_encoder_hidden, s.prompt_encoder_lstm_layers))
      b.add(name, Category::workspace, bytes);
    b.add("prompt_embeddings", Category::adapter_params, prompt_rows * m.hidden * 4);
  } else if (prompt_rows > 0) {  // soft prompt: the virtual tokens' embeddings
    b.adapter_tensor("prompt_embeddings", prompt_rows * m.hidden);
  }
  if (prompt_rows > 0) b.add("prompt.indices", Category::adapter_params, prompt_rows * 4);      // row indices 0 .. N-1
  const uint64_t prefix_rows = extras ? s.prefix_tokens : 0, kv_dim = m.kv_heads * m.head_dim;  // prefix tuning
  uint64_t prefix_trainable = prefix_rows * m.layers * 2 * kv_dim;
  if (prefix_rows > 0 && trains_prefix_encoder(s)) {  // prefix_projection: the encoder trains, its output is the prefix
    prefix_trainable = 0;
    for (const auto& t : prefix_encoder_parameters(prefix_rows, kv_dim, s.prefix_projection_hidden, m.layers))
      b.adapter_tensor(t.name, t.elements()), prefix_trainable += t.elements();
    for (const auto& [name, bytes] :
         prefix_encoder_workspace(prefix_rows, kv_dim, s.prefix_projection_hidden, m.layers))
      b.add(name, Category::workspace, bytes);
    b.add("prefix.key_values", Category::adapter_params, prefix_rows * m.layers * 2 * kv_dim * 4);
  } else if (prefix_rows > 0) {
    b.adapter_tensor("prefix.key_values", prefix_rows * m.layers * 2 * kv_dim);
  }
  counts.total = counts.embedding + counts.attention + counts.mlp + counts.norms + counts.lm_head + counts.biases;
  if (full) counts.trainable = counts.total;
  if (training && !full)
    counts.trainable += (save_embed ? embedding_elements : 0) + (save_head ? m.vocab * m.hidden : 0) +
                        token_rows * m.hidden + prompt_trainable + prefix_trainable;

  // Activations and workspace.
  const uint64_t rows = s.batch * s.seq_len;
  const uint64_t f = 4;
  const uint64_t a = activation_value_bytes(s);  // activations and their gradients in the run's type
  b.add("input.ids", Category::workspace, rows * 4);
  b.add("input.positions", Category::workspace, rows * 4);
  b.add("input.segments", Category::workspace, rows * 4);
  if (prefix_rows > 0) {  // prefix tuning: shifted positions, the joined keys/values of one layer (and gradients)
    const uint64_t joined = s.batch * (prefix_rows + s.seq_len);
    b.add("prefix.positions", Category::workspace, rows * 4);
    b.add("prefix.kv_segments", Category::workspace, joined * 4);
    for (const char* name : {"prefix.k", "prefix.v", "prefix.dk", "prefix.dv"})
      if (training || name[7] != 'd') b.add(name, Category::workspace, joined * kv_dim * a);
  }
  if (training) {
    b.add("input.targets", Category::workspace, rows * 4);
    b.add("input.weights", Category::workspace, rows * 4);
    if (s.gradient_checkpointing) {
      for (uint64_t layer = 0; layer < m.layers; layer++)
        b.add("act.layers." + std::to_string(layer) + ".input", Category::activations, rows * m.hidden * a);
      layer_activations(b, "act.recompute.", m, s, rows, false);
    } else {
      for (uint64_t layer = 0; layer < m.layers; layer++)
        layer_activations(b, "act.layers." + std::to_string(layer) + ".", m, s, rows, true);
    }
    b.add("act.final.input", Category::activations, rows * m.hidden * a);
    b.add("act.final.rstd", Category::activations, rows * f);
    b.add("act.final.norm", Category::activations, rows * m.hidden * a);
    // Backward scratch: one layer's worth, reused by every layer.
    b.add("grad_act.residual", Category::workspace, rows * m.hidden * a);
    b.add("grad_act.norm", Category::workspace, rows * m.hidden * a);
    b.add("grad_act.q", Category::workspace, rows * m.heads * m.head_dim * a);
    b.add("grad_act.k", Category::workspace, rows * m.kv_heads * m.head_dim * a);
    b.add("grad_act.v", Category::workspace, rows * m.kv_heads * m.head_dim * a);
    b.add("grad_act.attn", Category::workspace, rows * m.heads * m.head_dim * a);
    b.add("grad_act.attn_delta", Category::workspace, rows * m.heads * f);
    b.add("grad_act.gate", Category::workspace, rows * m.intermediate * a);
    b.add("grad_act.up", Category::workspace, rows * m.intermediate * a);
    b.add("grad_act.act", Category::workspace, rows * m.intermediate * a);
    if (!full) b.add("grad_act.lora_t", Category::workspace, rows * s.lora_r * a);
    if (token_rows > 0) {  // each token's row in the trained set (embedding_backward's ids)
      b.add("input.token_slots", Category::workspace, rows * 4);
      if (m.tied_embeddings && !untied) {  // the tied lm_head's logit gradients of those rows, per chunk
        uint64_t chunk = std::min(rows, std::max<uint64_t>(1, s.logits_chunk_bytes / (m.vocab * 4)));
        b.add("grad_act.token_logits", Category::workspace, chunk * token_rows * 4);
      }
    }
    if (!full && s.lora_dropout > 0)
      b.add("act.dropout", Category::workspace,
            rows * std::max(m.hidden, std::max(m.intermediate, m.heads * m.head_dim)) * a);
    b.add("loss.rows", Category::workspace, rows * f);
    // The loss's two parts per row for metrics.jsonl (kernels::DistillParts: distillation's w·T²·KL and
    // w·CE; other objectives leave them zero). 8 bytes a row: kept in every training plan rather than
    // made a RunSettings flag.
    b.add("loss.distill_kl", Category::workspace, rows * f);
    b.add("loss.distill_ce", Category::workspace, rows * f);
    if (s.s2_group > 0)  // --s2-attn: one layer's rolled q, k, v, o and gradients (kernels/s2_attention.hpp)
      b.add("s2.scratch", Category::workspace,
            kernels::s2_attention_scratch_bytes(rows, m.heads, m.kv_heads, m.head_dim, s.activation_dtype, true));
  } else {
    // Inference: one layer's activations at a time; the residual stream is updated in place.
    b.add("act.stream", Category::activations, rows * m.hidden * a);
    layer_activations(b, "act.recompute.", m, s, rows, false);
    b.add("act.final.rstd", Category::activations, rows * f);
    b.add("act.final.norm", Category::activations, rows * m.hidden * a);
  }
  // Logits are computed for a chunk of rows at a time (fused cross-entropy).
  uint64_t chunk_rows = std::max<uint64_t>(1, s.logits_chunk_bytes / (m.vocab * 4));
  plan.logits_chunk_rows = std::min(rows, chunk_rows);
  b.add("logits.chunk", Category::workspace, plan.logits_chunk_rows * m.vocab * 4);
  if (!training && s.kv_cache_tokens > 0) {
    kernels::AttentionShape decode;
    decode.batch = 1;
    decode.seq_q = static_cast<uint32_t>(s.seq_len);
    decode.seq_kv = static_cast<uint32_t>(s.kv_cache_tokens + prefix_rows);
    decode.q_heads = static_cast<uint32_t>(m.heads);
    decode.kv_heads = static_cast<uint32_t>(m.kv_heads);
    decode.head_dim = static_cast<uint32_t>(m.head_dim);
    decode.scale = 1.0f;  // any valid value: the scratch size does not depend on it
    // The decode path splits long key ranges for short query blocks: the largest scratch over the
    // query lengths generation uses (1 for decoding, up to seq_len for the prompt).
    uint64_t split = 0;
    const uint32_t longest = static_cast<uint32_t>(s.seq_len);
    for (uint32_t q = 1;; q = std::min(longest, q * 2)) {
      decode.seq_q = q;
      split = std::max(split, kernels::attention_forward_workspace_bytes(decode));
      if (q == longest) break;
    }
    b.add("attention.workspace", Category::workspace, split);
  }
  if (s.kv_cache_tokens > 0) {
    for (uint64_t layer = 0; layer < m.layers; layer++) {
      uint64_t bytes = s.batch * (s.kv_cache_tokens + prefix_rows) * m.kv_heads * m.head_dim * f;
      b.add("kv.layers." + std::to_string(layer) + ".k", Category::kv_cache, bytes);
      b.add("kv.layers." + std::to_string(layer) + ".v", Category::kv_cache, bytes);
    }
  }
  b.add("step_state", Category::workspace, 256);
  b.add("rope.inv_freq", Category::workspace, m.head_dim / 2 * 4);
  if (m.gemma) b.add("rope.inv_freq_local", Category::workspace, m.head_dim / 2 * 4);    // sliding layers' base
  if (m.longrope) b.add("rope.inv_freq_long", Category::workspace, m.head_dim / 2 * 4);  // long_factor set
  if (training) {
    b.add("loss.step", Category::workspace, 16);
    b.add("loss.window", Category::workspace, 16);
  }
  // One scratch shared by the reductions (the recorder orders its users): bias gradients,
  // rmsnorm weight gradients, loss sums and the embedding gradient's sort.
  uint64_t reduce = kernels::sum_rows_workspace_bytes(static_cast<uint32_t>(rows), 1);
  if (training && full) {
    uint64_t widest = std::max(m.hidden, std::max(m.heads, m.kv_heads) * m.head_dim);
    reduce =
        std::max(reduce, kernels::sum_rows_workspace_bytes(static_cast<uint32_t>(rows), static_cast<uint32_t>(widest)));
    reduce = std::max(reduce, kernels::rmsnorm_backward_workspace_bytes(static_cast<uint32_t>(rows),
                                                                        static_cast<uint32_t>(m.hidden)));
    if (m.qk_norm)  // q_norm's weight gradient sums over (tokens * heads) rows of head_dim
      reduce = std::max(reduce, kernels::rmsnorm_backward_workspace_bytes(static_cast<uint32_t>(rows * m.heads),
                                                                          static_cast<uint32_t>(m.head_dim)));
    reduce = std::max(reduce, kernels::embedding_backward_workspace_bytes(static_cast<uint32_t>(rows),
                                                                          static_cast<uint32_t>(m.vocab)));
  } else if (training) {
    reduce = std::max(reduce, kernels::rmsnorm_backward_workspace_bytes(static_cast<uint32_t>(rows),
                                                                        static_cast<uint32_t>(m.hidden)));
    if (m.qk_norm && !s.saved_norms.empty())  // a saved q_norm/k_norm: as full finetuning's
      reduce = std::max(reduce, kernels::rmsnorm_backward_workspace_bytes(static_cast<uint32_t>(rows * m.heads),
                                                                          static_cast<uint32_t>(m.head_dim)));
    if (save_embed || token_rows > 0)
      reduce =
          std::max(reduce, kernels::embedding_backward_workspace_bytes(
                               static_cast<uint32_t>(rows), static_cast<uint32_t>(save_embed ? m.vocab : token_rows)));
  }
  if (training && prompt_rows > 0) {  // each cell's virtual token (N for a real one): the prompt's gradient sums
    b.add("input.prompt_slots", Category::workspace, rows * 4);
    reduce = std::max(reduce, kernels::embedding_backward_workspace_bytes(static_cast<uint32_t>(rows),
                                                                          static_cast<uint32_t>(prompt_rows)));
  }
  if (training && extras && s.peft_type == spec::PeftType::bitfit)  // the bias gradients' column sums
    reduce = std::max(reduce, kernels::sum_rows_workspace_bytes(static_cast<uint32_t>(rows),
                                                                static_cast<uint32_t>(m.heads * m.head_dim)));
  if (extras && s.peft_type == spec::PeftType::dora && !s.target_modules.empty()) {
    // DoRA: W + s·B·A of the largest module (the norm's input); the backward's dv and product.
    uint64_t weight = 0, widest_out = 0, widest = 0;
    for (Module module : s.target_modules) {
      weight = std::max(weight, module_in_features(m, module) * module_out_features(m, module));
      widest_out = std::max(widest_out, module_out_features(m, module));
      widest = std::max({widest, module_in_features(m, module), module_out_features(m, module)});
    }
    b.add("act.dora_weight", Category::workspace, weight * 4);
    if (training) {  // dv, then the product or (with dropout) d dropout(x)
      b.add("grad_act.dora", Category::workspace, rows * (widest_out + widest) * 4);
      reduce = std::max(
          reduce, kernels::sum_rows_workspace_bytes(static_cast<uint32_t>(rows), static_cast<uint32_t>(widest_out)));
    }
  }
  if (training && s.qat_format != WeightFormat::f32) {  // --qat: fq(W [+ s·B·A]) of the largest linear weight
    uint64_t weight = 0;
    for (size_t module = 0; module < spec::module_count; module++)
      weight = std::max(weight, module_in_features(m, Module(module)) * module_out_features(m, Module(module)));
    const uint64_t blocks = (weight + s.qat_block - 1) / s.qat_block;
    b.add("act.qat_weight", Category::workspace, weight * 4);
    b.add("act.qat_codes", Category::workspace, quant::fake_quant_codes_bytes(s.qat_format, weight, s.qat_block));
    b.add("act.qat_scales", Category::workspace, quant::fake_quant_scales_bytes(weight, s.qat_block));
    if (s.qat_format == WeightFormat::int4_asym) b.add("act.qat_zeros", Category::workspace, (blocks + 3) / 4 * 4);
  }
  if (extras && !s.ia3_targets.empty()) {  // IA3: the scaled input / products, d(input); d l's column sums
    b.add("act.ia3_scratch", Category::workspace, rows * ia3_widest(m, s) * f);
    if (training) b.add("grad_act.ia3", Category::workspace, rows * ia3_widest(m, s) * f);
    if (training)
      reduce = std::max(reduce, kernels::sum_rows_workspace_bytes(static_cast<uint32_t>(rows),
                                                                  static_cast<uint32_t>(ia3_widest(m, s))));
  }
  b.add("workspace.reduce", Category::workspace, reduce);
  if (training) {
    // The optimizer's multi-tensor table and norm partial sums (kernels::TensorList allocates them).
    uint32_t tensors = 0;
    uint64_t chunks = 0;
    const uint64_t grad_value_bytes = 4;  // every grad.* is fp32 (16-bit full finetuning included)
    for (const auto& spec : plan.buffers)
      if (spec.name.rfind("grad.", 0) == 0) {
        tensors++;
        chunks += (spec.bytes / grad_value_bytes + 4095) / 4096;
      }
    plan.buffers.push_back(
        {"optimizer.table", Category::workspace, MemoryKind::device, kernels::TensorList::table_bytes(tensors), true});
    plan.buffers.push_back({"optimizer.partials", Category::workspace, MemoryKind::device,
                            kernels::TensorList::partials_bytes(static_cast<uint32_t>(chunks)), true});
    b.sharded_optimizer_states(tensors);
    if (s.optimizer == Optimizer::adafactor)  // kernels::AdafactorTable: states and shape per tensor
      plan.buffers.push_back({"optimizer.adafactor_table", Category::workspace, MemoryKind::device,
                              kernels::AdafactorTable::table_bytes(tensors), true});
  }
  page_optimizer_states(plan);
  return plan;
}

}  // namespace vkt::plan
