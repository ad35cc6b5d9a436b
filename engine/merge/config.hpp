#pragma once
// mergekit's merge configuration (mergekit/config.py, docs/merge_methods.md), read from YAML:
//
//   merge_method: ties                 # linear | slerp | task_arithmetic | ties | dare_linear | dare_ties | passthrough
//   base_model: path/to/base           # a folder, or "folder+adapter_folder" (a PEFT LoRA merged in first)
//   models:                            # or `slices:` (below); exactly one of the two
//     - model: path/to/a
//       parameters: {weight: 0.5, density: [1, 0.7, 0.1]}
//   slices:
//     - sources:
//         - model: path/to/a
//           layer_range: [0, 16]       # [begin, end) of the source's layers
//           parameters: {...}
//       base_model: ...                # optional, per slice
//       parameters: {...}
//   parameters: {normalize: true, t: [{filter: self_attn, value: [0, 0.5, 1]}, {value: 0.5}]}
//   dtype: bfloat16                    # mergekit's compute dtype: vktune always computes in fp32
//   out_dtype: bfloat16                # output dtype (default: dtype, else the base model's torch_dtype)
//   tokenizer_source: base             # base | a model reference (union is not supported)
//
// A parameter's value (mergekit's ParameterSetting, evaluate_setting): a scalar; a list of numbers
// (a gradient: interpolated linearly over the layers of a slice, t = layer / (layers - 1)); a list
// of booleans/strings (the element at int(t * (len - 1))); or a list of conditionals
// {filter: SUBSTRING, value: V} tried in order, the first whose filter occurs in the tensor name
// (no filter, or "*", matches all) giving its value. A parameter is looked up in a slice source's
// parameters, then the slice's, then the top-level ones; a level whose conditionals all miss
// passes on to the next.
//
// Model paths are used as written (relative to the working directory, as mergekit does); a
// relative path that does not exist there is tried relative to the YAML file's folder.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/base/names.hpp"
#include "engine/kernels/types.hpp"

namespace vkt::merge {

// The merge methods vktune implements, with their mergekit names in merge_method_names().
enum class MergeMethod : uint8_t { linear, slerp, task_arithmetic, ties, dare_linear, dare_ties, passthrough };
std::span<const NameEntry<MergeMethod>> merge_method_names();
const char* merge_method_name(MergeMethod method);  // "dare_ties"
// task_arithmetic, ties, dare_linear, dare_ties: θ_base + λ Σ w_i (θ_i − θ_base) with sparsification.
bool is_task_arithmetic_family(MergeMethod method);

// mergekit's ModelReference: "model" or "model+lora".
struct ModelRef {
  std::filesystem::path model;
  std::optional<std::filesystem::path> lora;
  std::string text;  // as written in the file

  bool same_as(const ModelRef& other) const;  // the same folders (resolved paths)
  std::string label() const { return text; }
};
// Parses "model" or "model+lora" (mergekit splits at '+'; more than one '+' is an error).
// `base_dir`: where relative paths that do not exist in the working directory are looked up.
ModelRef parse_model_ref(const std::string& text, const std::filesystem::path& base_dir, const std::string& where);

struct ParameterValue {
  enum class Type { number, boolean, string } type = Type::number;
  double number = 0;
  bool boolean = false;
  std::string text;
  double as_number(const std::string& name, const std::string& where) const;  // UserError unless a number
  bool as_bool(const std::string& name, const std::string& where) const;      // booleans (and 0/1)
};

struct ParameterSetting {
  enum class Kind { scalar, list, conditionals } kind = Kind::scalar;
  ParameterValue scalar;
  std::vector<ParameterValue> list;  // numbers: a gradient; booleans/strings: picked by depth
  struct Conditional {
    std::optional<std::string> filter;
    std::shared_ptr<ParameterSetting> value;
  };
  std::vector<Conditional> conditionals;
  int line = 0;  // 1-based line in the YAML file
};
// mergekit's evaluate_setting: the value for tensor `tensor_name` at depth t in [0, 1], or
// nullopt when no conditional matches.
std::optional<ParameterValue> evaluate_setting(const ParameterSetting& setting, const std::string& tensor_name,
                                               double t);

using ParameterSet = std::map<std::string, ParameterSetting>;

struct InputSlice {
  ModelRef model;
  int64_t layer_begin = 0, layer_end = 0;  // [begin, end)
  ParameterSet parameters;
  int line = 0;
};

struct OutputSlice {
  std::vector<InputSlice> sources;
  std::optional<ModelRef> base_model;
  ParameterSet parameters;
  int line = 0;
};

struct InputModel {
  ModelRef model;
  ParameterSet parameters;
  int line = 0;
};

struct MergeConfig {
  std::string path;                          // the YAML file (for messages)
  MergeMethod method = MergeMethod::linear;  // merge_method
  std::optional<ModelRef> base_model;
  std::vector<InputModel> models;   // `models:` form
  std::vector<OutputSlice> slices;  // `slices:` form
  ParameterSet parameters;
  std::optional<kernels::DType> dtype, out_dtype;  // written as torch names ("bfloat16"); nullopt when absent
  std::optional<std::string> tokenizer_source;     // "base" or a model reference
  int line_of_method = 0;

  bool uses_slices() const { return !slices.empty(); }
};

// Reads and validates a mergekit YAML file. Every problem is a UserError "FILE:LINE: key 'K': ..."
// with a hint: unknown keys (with the known ones), wrong types, unsupported methods, a slice
// whose sources have different lengths, a missing required parameter is reported later, at
// planning, with the tensor it was needed for.
MergeConfig load_merge_config(const std::filesystem::path& path);
MergeConfig parse_merge_config(const std::string& yaml_text, const std::string& where,
                               const std::filesystem::path& base_dir);

}  // namespace vkt::merge
