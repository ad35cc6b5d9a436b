// SWEEP.yaml, the trials it expands to, and the sweep's outputs (table, CSV, best config YAML).
// Running the trials is sweep_run.cpp.
#include "engine/train/sweep.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/names.hpp"

namespace vkt::train {

namespace {

constexpr NameEntry<TrialStatus> trial_status_table[] = {
    {TrialStatus::finished, "finished"}, {TrialStatus::skipped, "skipped"}, {TrialStatus::failed, "failed"}};
constexpr NameEntry<SweepMethod> sweep_method_table[] = {{SweepMethod::grid, "grid"}, {SweepMethod::random, "random"}};
std::span<const NameEntry<TrialStatus>> status_names() { return trial_status_table; }
std::span<const NameEntry<SweepMethod>> method_names() { return sweep_method_table; }

const OptionSpec* find_option(const std::string& name) {
  for (const auto& option : option_table())
    if (option.name == name) return &option;
  return nullptr;
}

std::string where(const std::filesystem::path& file, const YAML::Node& node) {
  return file.string() + ":" + std::to_string(node.Mark().line + 1);
}

// A scalar's text, or a list's items joined by commas (target_modules: [q_proj, v_proj]).
std::string value_text(const YAML::Node& node, const std::string& at) {
  if (node.IsScalar()) return node.as<std::string>();
  if (node.IsSequence()) {
    std::string text;
    for (const auto& item : node) {
      if (!item.IsScalar()) throw UserError(at + ": a value list holds only scalars", "e.g. [q_proj, v_proj]");
      text += (text.empty() ? "" : ",") + item.as<std::string>();
    }
    return text;
  }
  throw UserError(at + ": expected a value or a list of values", "e.g. 2e-4, or [q_proj, v_proj]");
}

double number(const YAML::Node& node, const std::string& at, const std::string& key) {
  try {
    double value = node.as<double>();
    if (std::isfinite(value)) return value;
  } catch (const YAML::Exception&) {}
  throw UserError(at + ": '" + key + "' must be a finite number", "e.g. 1e-5");
}

SweepParameter parse_parameter(const std::filesystem::path& file, const YAML::Node& key, const YAML::Node& node) {
  SweepParameter parameter;
  parameter.name = key.as<std::string>();
  const std::string at = where(file, key);
  const OptionSpec* option = find_option(parameter.name);
  if (!option)
    throw UserError(at + ": unknown train option '" + parameter.name + "' in parameters",
                    "sweep any flag of `vktune train --help`, written with underscores, e.g. learning_rate");
  if (node.IsSequence()) {  // shorthand: lora_r: [4, 8, 16]
    for (const auto& item : node) parameter.values.push_back(value_text(item, at));
  } else if (node.IsMap()) {
    if (node["values"]) {
      if (!node["values"].IsSequence()) throw UserError(at + ": 'values' must be a list", "e.g. values: [4, 8, 16]");
      for (const auto& item : node["values"]) parameter.values.push_back(value_text(item, at));
    } else if (node["distribution"]) {
      std::string distribution = node["distribution"].as<std::string>();
      if (distribution == "uniform")
        parameter.kind = SweepParameter::Kind::uniform;
      else if (distribution == "log_uniform" || distribution == "log_uniform_values")
        parameter.kind = SweepParameter::Kind::log_uniform;
      else if (distribution == "int_uniform")
        parameter.kind = SweepParameter::Kind::int_uniform;
      else
        throw UserError(at + ": unknown distribution '" + distribution + "'",
                        "use uniform, log_uniform or int_uniform (with min and max), or values: [...]");
      if (!node["min"] || !node["max"])
        throw UserError(at + ": distribution " + distribution + " needs min and max", "e.g. min: 1e-5, max: 1e-3");
      parameter.min = number(node["min"], at, "min");
      parameter.max = number(node["max"], at, "max");
      if (!(parameter.min < parameter.max))
        throw UserError(at + ": min must be below max", "e.g. min: 1e-5, max: 1e-3");
      if (parameter.kind == SweepParameter::Kind::log_uniform && parameter.min <= 0)
        throw UserError(at + ": log_uniform needs min > 0", "e.g. min: 1e-6");
      // Draws are written as numbers: the option must take one (an integer for int_uniform).
      const bool real = std::holds_alternative<double TrainConfig::*>(option->field);
      const bool integer = std::holds_alternative<int64_t TrainConfig::*>(option->field);
      if (parameter.kind == SweepParameter::Kind::int_uniform ? !(real || integer) : !real)
        throw UserError(at + ": '" + parameter.name + "' does not take " +
                            (parameter.kind == SweepParameter::Kind::int_uniform ? "an integer" : "a real number"),
                        "use values: [...] for it, or int_uniform for integer options such as lora_r");
      if (parameter.kind == SweepParameter::Kind::int_uniform &&
          (std::abs(parameter.min) > 0x1p53 || std::abs(parameter.max) > 0x1p53))
        throw UserError(at + ": int_uniform bounds beyond 2^53", "e.g. min: 4, max: 64");
    } else {
      throw UserError(at + ": parameter '" + parameter.name + "' has neither values nor a distribution",
                      "write values: [a, b] or distribution: log_uniform with min and max");
    }
  } else {
    throw UserError(at + ": parameter '" + parameter.name + "' needs values or a distribution",
                    "e.g. lora_r: {values: [4, 8, 16]}");
  }
  if (parameter.kind == SweepParameter::Kind::values && parameter.values.empty())
    throw UserError(at + ": parameter '" + parameter.name + "' has no values", "give at least one");
  // Every value must be one the trainer accepts: found now, not after hours of other trials.
  TrainConfig probe;
  for (const auto& value : parameter.values) {
    try {
      set_option(probe, *option, value);
    } catch (const UserError& error) {
      throw UserError(at + ": " + error.what(), error.hint());
    }
  }
  return parameter;
}

void load_unguarded(SweepSpec& spec, const std::filesystem::path& file) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(file.string());
  } catch (const YAML::BadFile&) {
    throw UserError("cannot read the sweep file " + file.string(), "check the path");
  } catch (const YAML::Exception& error) {
    throw UserError(file.string() + ":" + std::to_string(error.mark.line + 1) + ": invalid YAML: " + error.msg,
                    "fix the YAML syntax at that line");
  }
  if (!root.IsMap())
    throw UserError(file.string() + ": a sweep file is a mapping (train, parameters, method, objective, budget)",
                    "see examples/sweep/lr_r.yaml");
  spec.file = file;
  bool goal_given = false;
  // train_config first, so that train: overrides it whatever the order in the file.
  if (root["train_config"]) apply_yaml_file(spec.base, root["train_config"].as<std::string>());
  for (const auto& entry : root) {
    const std::string key = entry.first.as<std::string>();
    const std::string at = where(file, entry.first);
    const YAML::Node& value = entry.second;
    if (key == "train_config") {
      continue;
    } else if (key == "train") {
      apply_yaml_mapping(spec.base, value, file.string());
    } else if (key == "parameters") {
      if (!value.IsMap()) throw UserError(at + ": parameters is a mapping of train options", "e.g. lora_r: [4, 8]");
      for (const auto& parameter : value)
        spec.parameters.push_back(parse_parameter(file, parameter.first, parameter.second));
    } else if (key == "method") {
      auto method = enum_from_name(method_names(), value.as<std::string>());
      if (!method)
        throw UserError(at + ": unknown method '" + value.as<std::string>() + "'",
                        "use " + enum_name_list(method_names(), " or "));
      spec.method = *method;
    } else if (key == "trials") {
      spec.trials = value.as<int64_t>();
    } else if (key == "seed") {
      spec.seed = value.as<uint64_t>();
    } else if (key == "objective") {
      spec.objective = value.as<std::string>();
    } else if (key == "goal") {
      std::string goal = value.as<std::string>();
      if (goal != "minimize" && goal != "maximize") throw UserError(at + ": goal is minimize or maximize", "");
      spec.minimize = goal == "minimize";
      goal_given = true;
    } else if (key == "budget") {
      if (!value.IsMap()) throw UserError(at + ": budget is a mapping", "e.g. budget: {steps: 20, minutes: 5}");
      for (const auto& item : value) {
        std::string name = item.first.as<std::string>();
        if (name == "steps")
          spec.budget_steps = item.second.as<int64_t>();
        else if (name == "minutes")
          spec.budget_minutes = number(item.second, at, "minutes");
        else
          throw UserError(where(file, item.first) + ": unknown budget '" + name + "'", "use steps and/or minutes");
      }
      if (spec.budget_steps < 0 || spec.budget_minutes < 0)
        throw UserError(at + ": a budget must not be negative", "e.g. steps: 20");
    } else if (key == "device_memory") {
      try {
        spec.device_memory = parse_byte_size(value.as<std::string>());
      } catch (const UserError& error) {
        throw UserError(at + ": " + error.what(), error.hint());
      }
    } else if (key == "output_dir") {
      spec.output_dir = value.as<std::string>();
    } else if (key == "evaluate") {
      if (!value.IsMap()) throw UserError(at + ": evaluate is a mapping", "e.g. evaluate: {data: test.jsonl}");
      for (const auto& item : value) {
        std::string name = item.first.as<std::string>();
        if (name == "data")
          spec.evaluate_data = item.second.as<std::string>();
        else if (name == "json_keys")
          for (const auto& k : item.second) spec.evaluate_json_keys.push_back(k.as<std::string>());
        else if (name == "limit")
          spec.evaluate_limit = item.second.as<int64_t>();
        else
          throw UserError(where(file, item.first) + ": unknown evaluate key '" + name + "'",
                          "use data, json_keys, limit");
      }
    } else {
      throw UserError(at + ": unknown sweep key '" + key + "'",
                      "keys: train_config, train, parameters, method, trials, seed, objective, goal, budget, "
                      "device_memory, output_dir, evaluate");
    }
  }
  const std::set<std::string> generation_metrics = {"form", "content", "fields"};
  if (spec.objective != "eval_loss" && spec.objective != "train_loss" && !generation_metrics.count(spec.objective))
    throw UserError(file.string() + ": unknown objective '" + spec.objective + "'",
                    "use eval_loss, train_loss, or an evaluate metric: form, content, fields");
  if (!goal_given) spec.minimize = !generation_metrics.count(spec.objective);
  if (spec.objective == "eval_loss" && spec.base.eval_data.empty())
    throw UserError(file.string() + ": objective eval_loss needs train: {eval_data: FILE}",
                    "give held-out data, or objective: train_loss");
  if (generation_metrics.count(spec.objective) && spec.evaluate_data.empty())
    throw UserError(file.string() + ": objective " + spec.objective + " needs evaluate: {data: FILE}",
                    "prompt/completion JSONL held out from training, with json_keys for form and fields");
  if (spec.parameters.empty()) throw UserError(file.string() + ": no parameters to sweep", "e.g. lora_r: [4, 8]");
  // A bound on the trials, so that a typo (trials: 1e9, a long grid) is an error, not hours of runs.
  constexpr double max_trials = 100000;
  double grid_size = 1;
  for (const auto& parameter : spec.parameters) grid_size *= double(std::max<size_t>(1, parameter.values.size()));
  if ((spec.method == SweepMethod::grid && grid_size > max_trials) ||
      (spec.method == SweepMethod::random && double(spec.trials) > max_trials))
    throw UserError(file.string() + ": more than 100000 trials", "sweep fewer values, or use method: random");
  if (spec.method == SweepMethod::grid) {
    for (const auto& parameter : spec.parameters)
      if (parameter.kind != SweepParameter::Kind::values)
        throw UserError(file.string() + ": grid search needs values for '" + parameter.name + "', not a distribution",
                        "use method: random, or list values");
  } else if (spec.trials <= 0) {
    throw UserError(file.string() + ": random search needs trials: N", "e.g. trials: 8");
  }
  if (spec.base.model.empty() || spec.base.data.empty())
    throw UserError(file.string() + ": the trials need train: {model: ..., data: ...}", "or train_config: FILE.yaml");
}

// Uniform in [0, 1) from 53 random bits: the same numbers on every standard library.
double unit_draw(std::mt19937_64& generator) { return double(generator() >> 11) * 0x1.0p-53; }

std::string short_number(double value, int digits) {
  char text[40];
  std::snprintf(text, sizeof text, "%.*g", digits, value);
  return text;
}

}  // namespace

SweepSpec load_sweep_spec(const std::filesystem::path& file) {
  SweepSpec spec;
  try {
    load_unguarded(spec, file);
  } catch (const YAML::Exception& error) {
    throw UserError(file.string() + ":" + std::to_string(error.mark.line + 1) + ": unexpected value: " + error.msg,
                    "numbers for trials, seed and budget; see examples/sweep/lr_r.yaml");
  }
  return spec;
}

std::vector<PlannedTrial> plan_trials(const SweepSpec& spec) {
  std::vector<std::vector<std::pair<std::string, std::string>>> flag_sets;
  if (spec.method == SweepMethod::grid) {
    flag_sets.push_back({});
    for (const auto& parameter : spec.parameters) {
      std::vector<std::vector<std::pair<std::string, std::string>>> next;
      for (const auto& partial : flag_sets)
        for (const auto& value : parameter.values) {
          next.push_back(partial);
          next.back().emplace_back(parameter.name, value);
        }
      flag_sets = std::move(next);
    }
  } else {
    std::mt19937_64 generator(spec.seed);
    for (int64_t t = 0; t < spec.trials; t++) {
      std::vector<std::pair<std::string, std::string>> flags;
      for (const auto& p : spec.parameters) {
        double u = unit_draw(generator);
        std::string value;
        switch (p.kind) {
          case SweepParameter::Kind::values:
            value = p.values[std::min(p.values.size() - 1, size_t(u * double(p.values.size())))];
            break;
          case SweepParameter::Kind::uniform:
            value = short_number(p.min + u * (p.max - p.min), 4);
            break;
          case SweepParameter::Kind::log_uniform:  // 3 digits: a readable rate, still spread out
            value = short_number(std::exp(std::log(p.min) + u * (std::log(p.max) - std::log(p.min))), 3);
            break;
          case SweepParameter::Kind::int_uniform: {
            double low = std::ceil(p.min), high = std::floor(p.max);
            value = std::to_string(int64_t(low + std::floor(u * (high - low + 1))));
            break;
          }
        }
        flags.emplace_back(p.name, value);
      }
      flag_sets.push_back(std::move(flags));
    }
  }
  std::vector<PlannedTrial> trials;
  for (size_t i = 0; i < flag_sets.size(); i++) {
    PlannedTrial trial;
    trial.index = int64_t(i) + 1;
    trial.flags = flag_sets[i];
    trial.config = spec.base;
    for (const auto& [name, value] : trial.flags) set_option(trial.config, *find_option(name), value);
    if (spec.budget_steps > 0) trial.config.max_steps = spec.budget_steps;
    char folder[32];
    std::snprintf(folder, sizeof folder, "trial-%03lld", static_cast<long long>(trial.index));
    trial.config.output_dir = (spec.output_dir / folder).string();
    trial.config.headless = true;
    trial.config.dashboard = false;
    trials.push_back(std::move(trial));
  }
  return trials;
}

const char* trial_status_name(TrialStatus status) { return enum_name(status_names(), status); }
TrialStatus trial_status_from_name(const std::string& name) {
  return enum_from_name(status_names(), name).value_or(TrialStatus::failed);
}

namespace {

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

std::string flag_value(const TrialResult& trial, const std::string& name) {
  for (const auto& [key, value] : trial.flags)
    if (key == name) return value;
  return "";
}

}  // namespace

std::string sweep_csv(const SweepSpec& spec, const SweepResult& result) {
  std::string csv = "rank,trial,status," + spec.objective;
  for (const auto& p : spec.parameters) csv += "," + p.name;
  csv += ",planned_bytes,steps,seconds,output,reason\n";
  for (size_t i = 0; i < result.trials.size(); i++) {
    const TrialResult& t = result.trials[i];
    bool finished = t.status == TrialStatus::finished;
    csv += (finished ? std::to_string(i + 1) : std::string()) + "," + std::to_string(t.index) + "," +
           trial_status_name(t.status) + "," + (finished ? short_number(t.objective, 8) : std::string());
    for (const auto& p : spec.parameters) csv += "," + csv_field(flag_value(t, p.name));
    csv += "," + std::to_string(t.planned_bytes) + "," + std::to_string(t.steps) + "," + short_number(t.seconds, 4) +
           "," + csv_field(t.output) + "," + csv_field(t.reason) + "\n";
  }
  return csv;
}

std::string format_sweep_table(const SweepSpec& spec, const SweepResult& result) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header = {"rank", "trial", "status", spec.objective};
  for (const auto& p : spec.parameters) header.push_back(p.name);
  header.insert(header.end(), {"planned", "steps", "time", "note"});
  rows.push_back(header);
  for (size_t i = 0; i < result.trials.size(); i++) {
    const TrialResult& t = result.trials[i];
    bool finished = t.status == TrialStatus::finished;
    std::vector<std::string> row = {finished ? std::to_string(i + 1) : "-", std::to_string(t.index),
                                    trial_status_name(t.status), finished ? short_number(t.objective, 5) : "-"};
    for (const auto& p : spec.parameters) row.push_back(flag_value(t, p.name));
    row.push_back(format_bytes(double(t.planned_bytes)));
    row.push_back(std::to_string(t.steps));
    row.push_back(short_number(t.seconds, 3) + " s");
    std::string note = t.reason.substr(0, t.reason.find('\n'));
    if (result.best && i == *result.best) note = "best";
    row.push_back(note);
    rows.push_back(row);
  }
  std::vector<size_t> widths(header.size(), 0);
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size(); c++) widths[c] = std::max(widths[c], row[c].size());
  std::string text;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); c++) {
      std::string cell = row[c];
      if (c + 1 < row.size()) cell.resize(widths[c], ' ');
      line += (c ? "  " : "") + cell;
    }
    text += line + "\n";
  }
  return text;
}

std::string best_config_yaml(const TrainConfig& config, const std::string& header_comment) {
  static const std::set<std::string> run_control = {
      "output_dir", "resume_from_checkpoint", "overwrite_output_dir", "ignore_config_mismatch", "headless", "dashboard",
      "plot"};
  const nlohmann::json defaults = nlohmann::json::parse(to_json(TrainConfig{}));
  const nlohmann::json values = nlohmann::json::parse(to_json(config));
  YAML::Emitter out;
  out << YAML::BeginMap;
  for (const auto& option : option_table()) {
    if (run_control.count(option.name) || values[option.name] == defaults[option.name]) continue;
    const nlohmann::json& value = values[option.name];
    out << YAML::Key << option.name << YAML::Value;
    if (value.is_string())
      out << YAML::DoubleQuoted << value.get<std::string>();
    else
      out << value.dump();  // numbers keep every digit (round trip), booleans are true/false
  }
  out << YAML::EndMap;
  std::string comment;
  size_t start = 0;
  while (start <= header_comment.size() && !header_comment.empty()) {
    size_t end = header_comment.find('\n', start);
    comment += "# " + header_comment.substr(start, end - start) + "\n";
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return comment + out.c_str() + "\n";
}

}  // namespace vkt::train
