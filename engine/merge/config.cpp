#include "engine/merge/config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"

namespace vkt::merge {

namespace fs = std::filesystem;

namespace {

// Everything a parse step needs to name where it is.
struct Where {
  std::string file;
  std::string at(const YAML::Node& node) const { return file + ":" + std::to_string(node.Mark().line + 1); }
  int line(const YAML::Node& node) const { return node.Mark().line + 1; }
};

[[noreturn]] void fail(const Where& where, const YAML::Node& node, const std::string& key, const std::string& what,
                       const std::string& hint) {
  throw UserError(where.at(node) + ": key '" + key + "': " + what, hint);
}

std::string join(const std::vector<std::string>& items) {
  std::string text;
  for (const auto& item : items) text += (text.empty() ? "" : ", ") + item;
  return text;
}

const std::vector<std::string>& known_parameters() {
  // mergekit's parameter names; vktune uses those of its methods and warns about the rest.
  static const std::vector<std::string> names = {"weight",    "density", "t",     "normalize", "lambda",
                                                 "int8_mask", "rescale", "scale", "epsilon",   "gamma"};
  return names;
}

void check_keys(const Where& where, const YAML::Node& map, const std::vector<std::string>& allowed,
                const std::string& context, const std::string& hint) {
  for (const auto& entry : map) {
    std::string key = entry.first.as<std::string>();
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
      throw UserError(where.at(entry.first) + ": key '" + key + "': unknown in " + context,
                      hint.empty() ? "known keys here: " + join(allowed) : hint);
  }
}

ParameterValue scalar_value(const Where& where, const YAML::Node& node, const std::string& key) {
  if (!node.IsScalar())
    fail(where, node, key, "expected a number, true/false or a string",
         "write e.g. `" + key + ": 0.5`, a list of numbers for a gradient, or [{filter: mlp, value: 0.5}, {value: 1}]");
  ParameterValue value;
  const std::string text = node.Scalar();
  std::string lower = text;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  if (node.Tag() != "!" && (lower == "true" || lower == "false")) {  // a quoted "true" stays a string
    value.type = ParameterValue::Type::boolean;
    value.boolean = lower == "true";
    return value;
  }
  if (node.Tag() != "!") {
    try {
      size_t used = 0;
      double number = std::stod(text, &used);
      if (used == text.size()) {
        value.type = ParameterValue::Type::number;
        value.number = number;
        return value;
      }
    } catch (...) {}
  }
  value.type = ParameterValue::Type::string;
  value.text = text;
  return value;
}

ParameterSetting parse_setting(const Where& where, const YAML::Node& node, const std::string& key) {
  ParameterSetting setting;
  setting.line = where.line(node);
  if (node.IsScalar()) {
    setting.kind = ParameterSetting::Kind::scalar;
    setting.scalar = scalar_value(where, node, key);
    return setting;
  }
  if (node.IsMap()) {  // a single conditional written without a list
    fail(where, node, key, "a mapping here must be inside a list of conditionals",
         "write `" + key + ": [{filter: self_attn, value: 0.5}, {value: 1}]`");
  }
  if (!node.IsSequence() || node.size() == 0)
    fail(where, node, key, "expected a value or a non-empty list",
         "e.g. `" + key + ": 0.5` or `" + key + ": [0, 0.5, 1]`");
  bool all_maps = true, no_maps = true;
  for (const auto& item : node) {
    all_maps = all_maps && item.IsMap();
    no_maps = no_maps && !item.IsMap();
  }
  if (no_maps) {
    setting.kind = ParameterSetting::Kind::list;
    for (const auto& item : node) setting.list.push_back(scalar_value(where, item, key));
    bool numbers = std::all_of(setting.list.begin(), setting.list.end(),
                               [](const ParameterValue& v) { return v.type == ParameterValue::Type::number; });
    bool others = std::none_of(setting.list.begin(), setting.list.end(),
                               [](const ParameterValue& v) { return v.type == ParameterValue::Type::number; });
    if (!numbers && !others)
      fail(where, node, key, "a list mixes numbers with booleans or strings",
           "a gradient is a list of numbers, e.g. [0, 0.5, 1]");
    return setting;
  }
  if (!all_maps)
    fail(where, node, key, "a list mixes conditionals ({filter, value}) with plain values",
         "write every entry as {filter: ..., value: ...}; the last may omit filter to match everything");
  setting.kind = ParameterSetting::Kind::conditionals;
  for (const auto& item : node) {
    check_keys(where, item, {"filter", "value"}, "a conditional parameter",
               "a conditional is {filter: SUBSTRING_OF_TENSOR_NAME, value: V}");
    if (!item["value"])
      fail(where, item, key, "a conditional has no value", "write {filter: " + std::string("mlp") + ", value: 0.5}");
    ParameterSetting::Conditional conditional;
    if (item["filter"] && !item["filter"].IsNull()) {
      if (!item["filter"].IsScalar())
        fail(where, item["filter"], key, "filter must be a string (a substring of tensor names)",
             "e.g. filter: self_attn");
      conditional.filter = item["filter"].Scalar();
    }
    conditional.value = std::make_shared<ParameterSetting>(parse_setting(where, item["value"], key));
    setting.conditionals.push_back(std::move(conditional));
  }
  return setting;
}

// Every number a setting can evaluate to (scalars, gradient points, conditional values).
void for_each_number(const ParameterSetting& setting, const std::function<void(double)>& visit) {
  if (setting.kind == ParameterSetting::Kind::scalar && setting.scalar.type == ParameterValue::Type::number)
    visit(setting.scalar.number);
  for (const ParameterValue& value : setting.list)
    if (value.type == ParameterValue::Type::number) visit(value.number);
  for (const auto& conditional : setting.conditionals) for_each_number(*conditional.value, visit);
}

// mergekit's ranges: slerp's t interpolates between two models, TIES/DARE keep a fraction
// `density` of each task vector; every other number must at least be finite.
void check_parameter_range(const Where& where, const YAML::Node& node, const std::string& name,
                           const ParameterSetting& setting) {
  for_each_number(setting, [&](double value) {
    std::string text = std::to_string(value);
    if (!std::isfinite(value)) fail(where, node, name, "must be a finite number, got " + text, "e.g. 0.5");
    if (name == "t" && !(value >= 0 && value <= 1))
      fail(where, node, name, "is " + text + ", outside slerp's range [0, 1]",
           "t = 0 gives the base model, t = 1 the other one");
    if (name == "density" && !(value > 0 && value <= 1))
      fail(where, node, name, "is " + text + ", outside (0, 1]",
           "density is the fraction of each task vector kept, e.g. 0.5");
  });
}

ParameterSet parse_parameters(const Where& where, const YAML::Node& node) {
  ParameterSet set;
  if (!node || node.IsNull()) return set;
  if (!node.IsMap())
    fail(where, node, "parameters", "expected a mapping of parameter names to values",
         "e.g. parameters: {weight: 0.5}");
  for (const auto& entry : node) {
    std::string name = entry.first.as<std::string>();
    const auto& known = known_parameters();
    if (std::find(known.begin(), known.end(), name) == known.end())
      throw UserError(where.at(entry.first) + ": key '" + name + "': not a merge parameter",
                      "mergekit's parameters are " + join(known));
    set[name] = parse_setting(where, entry.second, name);
    check_parameter_range(where, entry.second, name, set[name]);
  }
  return set;
}

ModelRef model_ref(const Where& where, const YAML::Node& node, const std::string& key, const fs::path& base_dir) {
  if (node.IsScalar()) return parse_model_ref(node.Scalar(), base_dir, where.at(node) + ": key '" + key + "'");
  if (node.IsMap()) {  // mergekit's expanded form {model: PATH, lora: PATH}
    check_keys(where, node, {"model", "lora"}, "a model reference",
               "write `model: PATH` or {model: PATH, lora: ADAPTER}");
    if (!node["model"] || !node["model"].IsScalar())
      fail(where, node, key, "a model reference needs `model: PATH`", "e.g. {model: ./base, lora: ./adapter}");
    std::string text = node["model"].Scalar();
    if (node["lora"] && node["lora"].IsScalar()) text += "+" + node["lora"].Scalar();
    return parse_model_ref(text, base_dir, where.at(node) + ": key '" + key + "'");
  }
  fail(where, node, key, "expected a model folder", "e.g. `" + key + ": ./models/base` or `./base+./adapter`");
}

InputSlice parse_input_slice(const Where& where, const YAML::Node& node, const fs::path& base_dir) {
  if (!node.IsMap())
    fail(where, node, "sources", "each source must be a mapping", "- model: PATH\n  layer_range: [0, 16]");
  check_keys(where, node, {"model", "layer_range", "parameters"}, "a slice source", "");
  InputSlice slice;
  slice.line = where.line(node);
  if (!node["model"]) fail(where, node, "model", "a slice source needs a model", "add `model: PATH`");
  slice.model = model_ref(where, node["model"], "model", base_dir);
  const YAML::Node range = node["layer_range"];
  if (!range || !range.IsSequence() || range.size() != 2)
    fail(where, range ? range : node, "layer_range", "expected [begin, end]",
         "e.g. layer_range: [0, 16] (end excluded)");
  try {
    slice.layer_begin = range[0].as<int64_t>();
    slice.layer_end = range[1].as<int64_t>();
  } catch (const YAML::Exception&) {
    fail(where, range, "layer_range", "the bounds must be integers", "e.g. layer_range: [0, 16]");
  }
  if (slice.layer_begin < 0 || slice.layer_end <= slice.layer_begin)
    fail(where, range, "layer_range", "needs 0 <= begin < end", "the range is [begin, end): [0, 16] is layers 0..15");
  slice.parameters = parse_parameters(where, node["parameters"]);
  return slice;
}

}  // namespace

bool ModelRef::same_as(const ModelRef& other) const {
  std::error_code error;
  auto canonical = [&](const fs::path& p) { return fs::weakly_canonical(p, error); };
  if (canonical(model) != canonical(other.model)) return false;
  if (lora.has_value() != other.lora.has_value()) return false;
  return !lora || canonical(*lora) == canonical(*other.lora);
}

ModelRef parse_model_ref(const std::string& text, const fs::path& base_dir, const std::string& where) {
  auto resolve = [&](const std::string& path_text) {
    fs::path path(path_text);
    std::error_code ignored;  // a name the system refuses (too long) is a path that does not exist
    if (path.is_relative() && !fs::exists(path, ignored) && !base_dir.empty() && fs::exists(base_dir / path, ignored))
      return base_dir / path;
    return path;
  };
  ModelRef ref;
  ref.text = text;
  size_t plus = text.find('+');
  if (text.empty())
    throw UserError(where + ": an empty model reference", "give a model folder, or FOLDER+ADAPTER_FOLDER");
  if (plus != std::string::npos && text.find('+', plus + 1) != std::string::npos)
    throw UserError(where + ": cannot parse the model reference \"" + text + "\" (more than one '+')",
                    "write MODEL or MODEL+LORA_ADAPTER, as mergekit does");
  ref.model = resolve(text.substr(0, plus));
  if (plus != std::string::npos) ref.lora = resolve(text.substr(plus + 1));
  return ref;
}

double ParameterValue::as_number(const std::string& name, const std::string& where) const {
  if (type == Type::number) return number;
  if (type == Type::boolean) return boolean ? 1.0 : 0.0;
  throw UserError(where + ": parameter '" + name + "' is \"" + text + "\", not a number", "give a number, e.g. 0.5");
}

bool ParameterValue::as_bool(const std::string& name, const std::string& where) const {
  if (type == Type::boolean) return boolean;
  if (type == Type::number && (number == 0 || number == 1)) return number == 1;
  throw UserError(where + ": parameter '" + name + "' should be true or false", "e.g. normalize: true");
}

std::optional<ParameterValue> evaluate_setting(const ParameterSetting& setting, const std::string& tensor_name,
                                               double t) {
  switch (setting.kind) {
    case ParameterSetting::Kind::scalar:
      return setting.scalar;
    case ParameterSetting::Kind::list: {
      const auto& list = setting.list;
      if (list.front().type == ParameterValue::Type::number) {
        // mergekit: scaled = t * (len - 1); i0 = int(scaled); i1 = min(len - 1, i0 + 1);
        // frac = scaled - i0; (1 - frac) * v[i0] + frac * v[i1]
        double scaled = t * static_cast<double>(list.size() - 1);
        size_t i0 = static_cast<size_t>(scaled);
        size_t i1 = std::min(list.size() - 1, i0 + 1);
        double fraction = scaled - static_cast<double>(i0);
        ParameterValue value;
        value.number = (1 - fraction) * list[i0].number + fraction * list[i1].number;
        return value;
      }
      return list[static_cast<size_t>(t * static_cast<double>(list.size() - 1))];
    }
    case ParameterSetting::Kind::conditionals:
      for (const auto& conditional : setting.conditionals) {
        bool matches = !conditional.filter || *conditional.filter == "*" ||
                       (!tensor_name.empty() && tensor_name.find(*conditional.filter) != std::string::npos);
        if (matches) return evaluate_setting(*conditional.value, tensor_name, t);
      }
      return std::nullopt;
  }
  return std::nullopt;
}

namespace {
constexpr NameEntry<MergeMethod> merge_method_table[] = {{MergeMethod::linear, "linear"},
                                                         {MergeMethod::slerp, "slerp"},
                                                         {MergeMethod::task_arithmetic, "task_arithmetic"},
                                                         {MergeMethod::ties, "ties"},
                                                         {MergeMethod::dare_linear, "dare_linear"},
                                                         {MergeMethod::dare_ties, "dare_ties"},
                                                         {MergeMethod::passthrough, "passthrough"}};
}  // namespace

std::span<const NameEntry<MergeMethod>> merge_method_names() { return merge_method_table; }
const char* merge_method_name(MergeMethod method) { return enum_name(merge_method_names(), method); }

bool is_task_arithmetic_family(MergeMethod method) {
  return method == MergeMethod::task_arithmetic || method == MergeMethod::ties || method == MergeMethod::dare_linear ||
         method == MergeMethod::dare_ties;
}

static MergeConfig parse_merge_config_unguarded(const std::string& yaml_text, const std::string& file,
                                                const fs::path& base_dir) {
  Where where{file};
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& error) {
    throw UserError(file + ":" + std::to_string(error.mark.line + 1) + ": invalid YAML: " + error.msg,
                    "fix the YAML syntax at that line");
  }
  if (!root.IsMap())
    throw UserError(file + ": a merge configuration must be a mapping (merge_method:, models: or slices:, ...)",
                    "see examples/merge/ for complete files");
  static const std::vector<std::string> top_keys = {"merge_method", "base_model",    "models",    "slices",
                                                    "parameters",   "dtype",         "out_dtype", "tokenizer_source",
                                                    "name",         "chat_template", "tokenizer", "modules"};
  check_keys(where, root, top_keys, "a merge configuration",
             "mergekit's keys are merge_method, base_model, models, slices, parameters, dtype, out_dtype, "
             "tokenizer_source");
  MergeConfig config;
  config.path = file;
  for (const char* unsupported : {"modules", "tokenizer"}) {
    if (root[unsupported])
      fail(where, root[unsupported], unsupported, "is not supported by vktune merge",
           std::string(unsupported) == "modules" ? "use `models:` or `slices:` (single-module Llama-family models)"
                                                 : "use tokenizer_source: base (or a model); vocabularies must match");
  }
  if (root["chat_template"])
    fail(where, root["chat_template"], "chat_template", "is not supported by vktune merge",
         "remove it; the tokenizer_config.json of the tokenizer source (with its chat template) is copied");
  const YAML::Node method = root["merge_method"];
  if (!method || !method.IsScalar())
    throw UserError(file + ": key 'merge_method' is missing",
                    "add e.g. `merge_method: linear`; supported: " + enum_name_list(merge_method_names()));
  config.line_of_method = where.line(method);
  if (auto parsed = enum_from_name(merge_method_names(), method.Scalar()))
    config.method = *parsed;
  else
    fail(where, method, "merge_method", "'" + method.Scalar() + "' is not supported",
         "vktune implements " + enum_name_list(merge_method_names()));
  if (root["base_model"] && !root["base_model"].IsNull())
    config.base_model = model_ref(where, root["base_model"], "base_model", base_dir);
  for (const char* key : {"dtype", "out_dtype"}) {
    if (!root[key] || root[key].IsNull()) continue;
    std::string value = root[key].Scalar();
    std::optional<kernels::DType> dtype = kernels::dtype_from_torch_name(value);
    if (value.rfind("torch.", 0) == 0) value = value.substr(6);
    if (!dtype)
      fail(where, root[key], key, "'" + value + "' is not a dtype vktune writes",
           "use one of: " + enum_name_list(kernels::torch_dtype_names()));
    (std::string(key) == "dtype" ? config.dtype : config.out_dtype) = dtype;
  }
  if (root["tokenizer_source"] && !root["tokenizer_source"].IsNull()) {
    std::string source = root["tokenizer_source"].Scalar();
    if (source == "union")
      fail(where, root["tokenizer_source"], "tokenizer_source",
           "'union' (building a merged vocabulary) is not supported",
           "use `base` or one model; the models must share a vocabulary");
    config.tokenizer_source = source;
  }
  config.parameters = parse_parameters(where, root["parameters"]);

  const YAML::Node models = root["models"], slices = root["slices"];
  if (bool(models) == bool(slices))
    throw UserError(file + ": give exactly one of 'models' and 'slices'",
                    "`models:` merges whole models; `slices:` picks layer ranges (passthrough stacking)");
  if (models) {
    if (!models.IsSequence() || models.size() == 0)
      fail(where, models, "models", "expected a non-empty list", "- model: PATH\n  parameters: {weight: 0.5}");
    for (const auto& item : models) {
      InputModel input;
      input.line = where.line(item);
      if (item.IsScalar()) {
        input.model = model_ref(where, item, "models", base_dir);
      } else if (item.IsMap()) {
        check_keys(where, item, {"model", "parameters"}, "a models entry", "");
        if (!item["model"]) fail(where, item, "model", "a models entry needs `model: PATH`", "- model: ./my-model");
        input.model = model_ref(where, item["model"], "model", base_dir);
        input.parameters = parse_parameters(where, item["parameters"]);
      } else {
        fail(where, item, "models", "each entry is `model: PATH` (+ parameters)", "- model: ./my-model");
      }
      config.models.push_back(std::move(input));
    }
  } else {
    if (!slices.IsSequence() || slices.size() == 0)
      fail(where, slices, "slices", "expected a non-empty list",
           "- sources:\n    - model: PATH\n      layer_range: [0, 8]");
    for (const auto& item : slices) {
      if (!item.IsMap()) fail(where, item, "slices", "each slice is a mapping with `sources:`", "- sources: [...]");
      check_keys(where, item, {"sources", "base_model", "parameters", "residual_weight"}, "a slice", "");
      if (item["residual_weight"])
        fail(where, item["residual_weight"], "residual_weight", "is not supported", "remove it");
      OutputSlice slice;
      slice.line = where.line(item);
      const YAML::Node sources = item["sources"];
      if (!sources || !sources.IsSequence() || sources.size() == 0)
        fail(where, sources ? sources : item, "sources", "a slice needs a non-empty list of sources",
             "- sources:\n    - model: PATH\n      layer_range: [0, 8]");
      for (const auto& source : sources) slice.sources.push_back(parse_input_slice(where, source, base_dir));
      const int64_t length = slice.sources.front().layer_end - slice.sources.front().layer_begin;
      for (const auto& source : slice.sources)
        if (source.layer_end - source.layer_begin != length)
          throw UserError(file + ":" + std::to_string(source.line) +
                              ": key 'layer_range': the sources of a slice must "
                              "have the same number of layers (" +
                              std::to_string(length) + " in the first)",
                          "a slice merges layer i of every source into one output layer");
      if (item["base_model"] && !item["base_model"].IsNull())
        slice.base_model = model_ref(where, item["base_model"], "base_model", base_dir);
      slice.parameters = parse_parameters(where, item["parameters"]);
      config.slices.push_back(std::move(slice));
    }
  }
  return config;
}

MergeConfig parse_merge_config(const std::string& yaml_text, const std::string& file, const fs::path& base_dir) {
  // A node of an unexpected kind (a mapping as a key, a list where a name belongs) makes yaml-cpp
  // throw a conversion error from wherever it is read: it is the file's error, reported as such.
  try {
    return parse_merge_config_unguarded(yaml_text, file, base_dir);
  } catch (const YAML::Exception& error) {
    throw UserError(file + ":" + std::to_string(error.mark.line + 1) + ": unexpected YAML here: " + error.msg,
                    "keys are plain names and values numbers, strings or lists of them; see examples/merge/");
  }
}

MergeConfig load_merge_config(const fs::path& path) {
  if (!fs::exists(path))
    throw UserError("merge configuration " + path.string() + " does not exist", "give a mergekit YAML file");
  return parse_merge_config(read_text_file(path), path.string(), path.parent_path());
}

}  // namespace vkt::merge
