#pragma once
// The merge planner and executor shared by engine/merge/merge.cpp (weight space) and
// engine/merge/adapter_merge.cpp (adapter space). Internal to engine/merge: other layers use
// run_merge() and run_adapter_merge().
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/merge/adapter_merge.hpp"
#include "engine/merge/device.hpp"
#include "engine/merge/lowrank.hpp"
#include "engine/merge/merge.hpp"
#include "engine/merge/source.hpp"

namespace vkt::merge {

using model::FileDtype;

// One output tensor: which input tensors of which sources it merges, and the lookup context of
// its parameters.
struct TensorPlan {
  std::string name;                      // output tensor name
  std::vector<size_t> sources;           // index into the source table, in slice source order
  std::vector<std::string> input_names;  // the tensor's name in each source
  std::optional<size_t> base;            // position in `sources` of the base model
  const OutputSlice* slice = nullptr;
  double t = 0;
};

class Merger {
 public:
  Merger(vk::Context& context, const MergeConfig& config, const MergeOptions& options)
      : context_(context), config_(config), options_(options), device_(context, options.chunk_elements) {}
  MergeSummary run();                                                         // merge.cpp
  AdapterMergeSummary run_adapter_space(const AdapterMergeOptions& options);  // adapter_merge.cpp

 private:
  size_t source_index(const ModelRef& ref);
  void normalize();
  void plan();
  void check_parameters();
  void plan_tensor(const std::string& output_name, const OutputSlice& slice,
                   const std::vector<std::string>& input_names, double t);
  std::optional<ParameterValue> parameter(const std::string& name, const TensorPlan& tensor,
                                          std::optional<size_t> position) const;
  double number(const std::string& name, const TensorPlan& tensor, std::optional<size_t> position, double fallback,
                bool required) const;
  bool flag(const std::string& name, const TensorPlan& tensor, bool fallback) const;
  std::string where(const TensorPlan& tensor, std::optional<size_t> position) const;
  void produce(const TensorPlan& tensor, model::TensorSink& sink);
  void task_arithmetic(const TensorPlan& tensor, const std::vector<std::vector<float>>& values, uint64_t n,
                       const ChunkSink& sink);
  std::optional<ModelRef> base_of(const OutputSlice& slice) const {
    return slice.base_model ? slice.base_model : config_.base_model;
  }

  // The adapter-space merge's stages (adapter_merge.cpp).
  struct AdapterInputs {
    std::filesystem::path base_dir;     // the one base every model adapts
    std::vector<spec::Module> targets;  // union of the adapters' target modules, sorted
    uint32_t rank_sum = 0;              // Σ r_i over the models with an adapter
  };
  void check_adapter_space(const AdapterMergeOptions& options) const;
  AdapterInputs adapter_inputs() const;
  std::vector<double> adapter_coefficients(const TensorPlan& tensor) const;
  LowRank adapter_update(const TensorPlan& tensor, const spec::ModelShape& shape, uint32_t out_rank,
                         const AdapterMergeOptions& options);
  LowRank elementwise_update(const TensorPlan& tensor,
                             const std::vector<std::optional<ModelSource::LoraFactors>>& factors, uint32_t out,
                             uint32_t in, uint32_t out_rank, uint32_t seed);
  std::vector<double> write_adapter_weights(const std::vector<const TensorPlan*>& modules,
                                            const spec::ModelShape& shape, uint32_t out_rank,
                                            const AdapterMergeOptions& options);

  vk::Context& context_;
  const MergeConfig& config_;
  MergeOptions options_;
  MergeDevice device_;
  std::vector<std::unique_ptr<ModelSource>> sources_;
  std::vector<OutputSlice> slices_;  // normalized
  std::vector<TensorPlan> tensors_;
  int64_t output_layers_ = 0;
  size_t output_config_source_ = 0;
  FileDtype out_dtype_ = FileDtype::F32;
  uint64_t largest_ = 0;
};

}  // namespace vkt::merge
