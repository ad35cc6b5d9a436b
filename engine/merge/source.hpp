#pragma once
// One input model of a merge or an export: an HF folder, optionally with a PEFT LoRA adapter that
// is merged in as PEFT's merge_and_unload does, read tensor by tensor as fp32:
//   W' = W + s·B·A      s = lora_alpha / r   (lora_alpha / sqrt(r) with use_rslora)
// for every adapted linear weight (A: (r, in), B: (out, r)); the product is a matmul on the
// device. A quantized base is dequantized first: bitsandbytes NF4 (as transformers saves
// load_in_4bit models) and vktune's int8/int4/int4-asym checkpoints. Tensors are never all in
// memory: read() returns one tensor and release() drops the file pages it touched, so the
// process holds about one tensor per input. A GGUF file (engine/model/gguf_model.hpp) is a base
// too: its tensors are read under their HF names, dequantized and un-permuted.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/merge/config.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/config.hpp"
#include "engine/model/dtype.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/model/weights.hpp"
#include "engine/vk/context.hpp"

namespace vkt::model {
class GgufTensorSource;
}

namespace vkt::merge {

// A linear weight's place: "model.layers.3.mlp.up_proj.weight" -> (3, up_proj).
struct LinearName {
  uint32_t layer = 0;
  spec::Module module = spec::Module::q_proj;
};
std::optional<LinearName> parse_linear_name(const std::string& name);

// The tensors of a Llama-family checkpoint in mergekit's architecture order: embeddings, then per
// layer the two norms, the seven linear weights (+ q/k/v biases when the config has them), then
// the final norm and lm_head (absent when tied).
std::vector<std::string> layer_tensor_suffixes(const model::ModelConfig& config);  // "input_layernorm.weight", ...
std::vector<std::string> pre_layer_tensors(const model::ModelConfig& config);      // {"model.embed_tokens.weight"}
std::vector<std::string> post_layer_tensors(
    const model::ModelConfig& config);  // {"model.norm.weight", ["lm_head.weight"]}

struct TensorInfo {
  std::vector<uint64_t> shape;
  model::FileDtype dtype = model::FileDtype::F32;  // the unquantized dtype (torch_dtype for quantized weights)
  uint64_t elements() const;
};

class ModelSource {
 public:
  // `context` does the adapter products; it may be null for a source without an adapter.
  ModelSource(vk::Context* context, const ModelRef& ref);
  ModelSource(vk::Context* context, const std::filesystem::path& model,
              const std::optional<std::filesystem::path>& adapter = std::nullopt);
  ~ModelSource();

  const ModelRef& ref() const { return ref_; }
  const model::ModelConfig& config() const { return config_; }
  const std::filesystem::path& model_dir() const { return ref_.model; }
  bool has_adapter() const { return adapter_ != nullptr; }
  const model::AdapterFile* adapter() const { return adapter_ ? &adapter_->file : nullptr; }
  // "bitsandbytes nf4", "vktune int8", ... or empty for a dense checkpoint.
  std::string quantization() const;

  // Logical tensors (a quantized weight's codes and statistics are one tensor), in file order.
  const std::vector<std::string>& tensor_names() const { return names_; }
  bool contains(const std::string& name) const { return info_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;  // UserError naming the model when absent
  // True when the stored bytes are the tensor itself (dense, not adapted): copy them as they are.
  bool is_plain(const std::string& name) const;
  const model::TensorView& view(const std::string& name) const;  // plain tensors only
  // The tensor as fp32 (row-major), dequantized and with the adapter merged in.
  std::vector<float> read(const std::string& name);
  // The adapter's factors of one module, or nullopt when the adapter does not target it.
  struct LoraFactors {
    std::vector<float> a;  // (r, in) fp32
    std::vector<float> b;  // (out, r) fp32
    uint32_t rank = 0;
    float scale = 0;  // alpha / r (or alpha / sqrt(r))
  };
  std::optional<LoraFactors> lora_factors(uint32_t layer, spec::Module module) const;
  // Drops the file pages of `name` from this process (they stay in the page cache).
  void release(const std::string& name);
  // The device's share of the work (adapter products), for reports.
  uint64_t adapted_tensors() const { return adapted_; }

 private:
  struct Adapter {
    model::AdapterFile file;
    std::unique_ptr<model::SafetensorsFile> weights;
  };
  void open_folder();                                         // folder_ and the tensor list of an HF base
  void open_adapter(const std::filesystem::path& directory);  // adapter_, its shapes checked
  const model::TensorView& lora_tensor(uint32_t layer, spec::Module module, bool a) const;
  void add_adapter_product(const LinearName& linear, std::vector<float>& weight);
  // PEFT's merge_and_unload of the extras: a modules_to_save copy replaces its module, trainable
  // tokens' rows replace the embedding's rows. False when `name` is not touched by them.
  bool replaced_by_extras(const std::string& name) const;
  void apply_extras(const std::string& name, std::vector<float>& values) const;

  vk::Context* context_;
  ModelRef ref_;
  model::ModelConfig config_;
  std::unique_ptr<model::SafetensorsFolder> folder_;  // an HF folder base
  std::unique_ptr<model::GgufTensorSource> gguf_;     // or a GGUF file base
  bool bitsandbytes_ = false;
  std::optional<model::VktuneQuantization> vktune_;
  std::vector<std::string> names_;
  std::unordered_map<std::string, TensorInfo> info_;
  std::unordered_map<std::string, bool> quantized_;  // logical name -> stored quantized
  std::unique_ptr<Adapter> adapter_;
  uint64_t adapted_ = 0;
};

// The page-aligned span of `view` dropped from this process's memory (madvise MADV_DONTNEED on
// the read-only mapping: the pages are read again from the file if touched later).
void release_pages(const model::TensorView& view);

// Peak resident set size of this process so far (getrusage), in bytes.
uint64_t peak_rss_bytes();

}  // namespace vkt::merge
