#pragma once
// `vktune prune`: unstructured and 2:4 semi-structured pruning of the linear weights of every
// layer (q/k/v/o, gate/up/down; embeddings, norms and lm_head stay dense, as Wanda's code does).
//   magnitude  the `sparsity` fraction of each tensor with the smallest |W| is set to zero
//   wanda      score S_ij = |W_ij| · ‖X_j‖₂ (X_j: input feature j over every calibration token);
//              each output row i loses its `sparsity` fraction of lowest scores (Sun et al. 2023)
//   2:4        in every 4 consecutive input weights of a row the 2 lowest scores are zeroed
//              (wanda's score with calibration norms, |W| without)
// Ties go to the lower index (torch.sort(stable=True) as Wanda's prune_wanda). The pruned folder
// keeps every other file; pruning.json records the method and each tensor's zeros (the mask is
// W == 0: vktune's full finetuning re-applies it after every optimizer step).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace vkt::merge {

enum class PruneMethod { magnitude, wanda, two_four };
PruneMethod prune_method_from_flag(const std::string& value);  // "magnitude" | "wanda" | "2:4"
const char* prune_method_name(PruneMethod method);

// The keep-mask (rows * cols, 1 = kept) of a (rows, cols) row-major weight (out, in).
// column_norms: (cols) ‖X_j‖₂ for wanda (and a wanda-scored 2:4); empty: |W| scores.
std::vector<uint8_t> prune_mask(std::span<const float> weight, int64_t rows, int64_t cols, PruneMethod method,
                                double sparsity, std::span<const float> column_norms = {});

struct PruneOptions {
  std::filesystem::path model, output;
  PruneMethod method = PruneMethod::magnitude;
  double sparsity = 0.5;
};
struct PrunedTensor {
  std::string name;
  uint64_t zeros = 0, elements = 0;
};
struct PruneSummary {
  std::vector<PrunedTensor> tensors;
  uint64_t zeros = 0, elements = 0;  // over the pruned tensors
};
// Calibration norms by weight name ("model.layers.0.self_attn.q_proj.weight" -> (in)); empty for
// magnitude and |W|-scored 2:4.
using ColumnNorms = std::map<std::string, std::vector<float>>;
// Writes the pruned folder atomically (model.safetensors in the source dtype, config.json,
// tokenizer files, pruning.json). UserError for a quantized or GGUF source, or a missing norm.
PruneSummary prune_model(const PruneOptions& options, const ColumnNorms& norms);

}  // namespace vkt::merge
