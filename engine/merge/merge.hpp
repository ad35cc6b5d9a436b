#pragma once
// `vktune merge`: mergekit's merge methods on HF model folders, streamed tensor by tensor.
//
// Planning follows mergekit's MergePlanner: a `models:` list becomes one slice covering every
// layer of each model (the base model is added when it is not listed); the output model is the
// embeddings (from the first slice's sources), then every layer of every slice in order (layer i
// of a slice merges layer begin+i of each of its sources and is renumbered to its place in the
// output), then the final norm and lm_head (from the last slice's sources). Parameters are
// evaluated per tensor: the method's global ones (t, normalize, lambda, rescale) with the output
// tensor's name, per-model ones (weight, density, scale) with that model's input tensor name,
// gradients over t = i / (layers of the slice - 1) (1 for a one-layer slice; 0 outside layers).
//
// Methods (formulas from mergekit's sources, cited in engine/kernels/merge.hpp):
//   linear           Σ w_i θ_i / Σ w_i  (normalize: true by default; false drops the division)
//   slerp            two models, base first: spherical interpolation at t with mergekit's
//                    DOT_THRESHOLD = 0.9995 (|cos| above it: lerp) and eps = 1e-8 for the norms
//   task_arithmetic  θ_base + λ Σ w_i (θ_i − θ_base)  (normalize false by default)
//   ties             magnitude trim to `density`, sign election, mean of agreeing (normalize true)
//   dare_linear      random drop (keep `density`), rescale by 1/density, then task arithmetic
//   dare_ties        random drop + rescale, then TIES' sign election (normalize false)
//   passthrough      one source per tensor, optionally × `scale`: layer stacking and depth
//                    up-scaling (e.g. slices [0, 3) + [1, 4) of a 4-layer model give 6 layers)
// DARE's random masks are deterministic: seeded by --random-seed (default 42), see
// engine/kernels/merge.hpp for the exact stream.
//
// Everything is computed in fp32 (mergekit computes in `dtype`); the output is written in
// out_dtype, else dtype, else the base (or first) model's torch_dtype.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/merge/config.hpp"
#include "engine/merge/output.hpp"
#include "engine/vk/context.hpp"

namespace vkt::merge {

struct MergeOptions {
  std::filesystem::path output;
  uint64_t max_shard_bytes = default_max_shard_bytes;
  uint32_t random_seed = 42;                    // DARE masks
  uint64_t chunk_elements = uint64_t{1} << 22;  // device chunk per input (16 MiB of fp32)
  bool copy_tokenizer = true;
  bool show_progress = true;
};

struct MergeSummary {
  MergeMethod method = MergeMethod::linear;
  int64_t tensors = 0;
  int64_t layers = 0;                    // num_hidden_layers of the output
  std::string out_dtype;                 // torch name
  std::vector<std::filesystem::path> files;
  uint64_t bytes_written = 0;            // tensor bytes
  uint64_t largest_tensor_bytes = 0;     // fp32 bytes of the largest merged tensor
  uint64_t input_bytes = 0;              // bytes of all input checkpoints
  double seconds = 0;
  uint64_t rss_before = 0;               // resident memory when the merge started
  uint64_t peak_rss = 0;                 // peak resident memory of the process at the end
  std::vector<std::string> tokenizer_files;
};

// Runs a merge into options.output (created). UserError names the YAML file and line for
// configuration problems, and the model and tensor for data problems.
MergeSummary run_merge(vk::Context& context, const MergeConfig& config, const MergeOptions& options);

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
  uint32_t rank = 0;             // svd: the new rank (0: Σ r_i)
  uint32_t random_seed = 42;     // DARE masks and the randomized SVD's test matrix
  uint64_t chunk_elements = uint64_t{1} << 22;
  bool show_progress = true;
};

struct AdapterMergeSummary {
  MergeMethod method = MergeMethod::linear;
  uint32_t rank = 0;
  std::vector<std::string> targets;
  int64_t modules = 0;                  // (layer, module) pairs written
  double max_relative_residual = 0;     // max over modules of ‖ΔW − BA‖ / ‖ΔW‖ (0 for concat)
  double mean_relative_residual = 0;
  std::filesystem::path base;
  double seconds = 0;
};

AdapterMergeSummary run_adapter_merge(vk::Context& context, const MergeConfig& config,
                                      const AdapterMergeOptions& options);

// Resident set size of this process now (VmRSS), in bytes.
uint64_t current_rss_bytes();

}  // namespace vkt::merge
