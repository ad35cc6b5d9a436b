#pragma once
// `vktune merge CONFIG --adapter-space svd|concat`: a merge whose result is a PEFT adapter.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/merge/config.hpp"
#include "engine/vk/context.hpp"

namespace vkt::merge {

// Adapter-space merge (`vktune merge CONFIG --adapter-space svd|concat`): every model is
// "BASE+ADAPTER" of one base (a plain BASE entry counts as a zero update), and the result is a
// PEFT adapter for that base instead of a model. Per adapted module the merged update is what the
// weight-space merge would add to the base:
//   linear           ΔW = Σ w_i ΔW_i / Σ w_i   (normalize: false needs Σ w_i = 1, else the base
//                    itself would be scaled, which no adapter can express)
//   task_arithmetic  ΔW = λ Σ w_i ΔW_i (/ Σ w_i with normalize)
//   ties, dare_*     the element-wise method on the dense ΔW_i = s_i B_i A_i with a zero base
// with ΔW_i = s_i B_i A_i. Then:
//   concat   (linear, task_arithmetic) A = [A_1; A_2; ...] stacked, B = [c_1 s_1 B_1, c_2 s_2 B_2, ...]
//            side by side (the coefficients and scales folded into B), lora_alpha = r = Σ r_i:
//            exact, but the adapter is as large as all inputs together (it saves no memory).
//   svd      a truncated SVD to `rank` (default Σ r_i, exact for linear/task_arithmetic; see
//            engine/merge/lowrank.hpp), lora_alpha = r (scale 1).
struct AdapterMergeOptions {
  std::filesystem::path output;
  bool concatenate = false;
  uint32_t rank = 0;          // svd: the new rank (0: Σ r_i)
  uint32_t random_seed = 42;  // DARE masks and the randomized SVD's test matrix
  uint64_t chunk_elements = uint64_t{1} << 22;
  bool show_progress = true;
};

struct AdapterMergeSummary {
  MergeMethod method = MergeMethod::linear;
  uint32_t rank = 0;
  std::vector<std::string> targets;
  int64_t modules = 0;               // (layer, module) pairs written
  double max_relative_residual = 0;  // max over modules of ‖ΔW − BA‖ / ‖ΔW‖ (0 for concat)
  double mean_relative_residual = 0;
  std::filesystem::path base;
  double seconds = 0;
};

AdapterMergeSummary run_adapter_merge(vk::Context& context, const MergeConfig& config,
                                      const AdapterMergeOptions& options);

}  // namespace vkt::merge
