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
  int64_t layers = 0;     // num_hidden_layers of the output
  std::string out_dtype;  // torch name
  std::vector<std::filesystem::path> files;
  uint64_t bytes_written = 0;         // tensor bytes
  uint64_t largest_tensor_bytes = 0;  // fp32 bytes of the largest merged tensor
  uint64_t input_bytes = 0;           // bytes of all input checkpoints
  double seconds = 0;
  uint64_t rss_before = 0;  // resident memory when the merge started
  uint64_t peak_rss = 0;    // peak resident memory of the process at the end
  std::vector<std::string> tokenizer_files;
};

// Runs a merge into options.output (created). UserError names the YAML file and line for
// configuration problems, and the model and tensor for data problems.
MergeSummary run_merge(vk::Context& context, const MergeConfig& config, const MergeOptions& options);

// Resident set size of this process now (VmRSS), in bytes.
uint64_t current_rss_bytes();

}  // namespace vkt::merge
