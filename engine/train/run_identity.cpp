#include "engine/train/run_identity.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/log.hpp"
#include "engine/train/data_mixture.hpp"

namespace vkt::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The options whose change alters the training trajectory (the resume check compares them).
// Run-control options (logging, saving, evaluation, the dashboard) may change between resumes.
const char* const kTrajectoryOptions[] = {
    "method",
    "peft_type",
    "quant",
    "double_quant",
    "qat",
    "dtype",
    "bf16",
    "fp16",
    "pure_bf16",
    "adapter",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "layers_to_transform",
    "use_rslora",
    "init_lora_weights",
    "num_virtual_tokens",
    "prompt_tuning_init",
    "prompt_tuning_init_text",
    "encoder_hidden_size",
    "prefix_projection",
    "encoder_reparameterization_type",
    "max_length",
    "packing",
    "shuffle",
    "prompt_loss_weight",
    "learning_rate",
    "loraplus_lr_ratio",
    "lr_scheduler_type",
    "lr_scheduler_kwargs",
    "warmup_steps",
    "max_steps",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_grad_norm",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "momentum",
    "optim",
    "seed",
};

// FNV-1a (64 bit) of a file's bytes, as 16 hex digits: cheap, and enough to tell files apart.
std::string file_hash(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError("cannot read " + path.string() + ": " + std::strerror(errno), "check that the path exists");
  uint64_t hash = 0xcbf29ce484222325ull;
  std::vector<char> chunk(1 << 20);
  while (in) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    for (std::streamsize i = 0; i < in.gcount(); i++) {
      hash ^= static_cast<uint8_t>(chunk[static_cast<size_t>(i)]);
      hash *= 0x100000001b3ull;
    }
  }
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

std::string absolute_path(const std::string& path) {
  std::error_code error;
  fs::path canonical = fs::weakly_canonical(fs::absolute(path), error);
  return error ? path : canonical.string();
}

// Files a training run writes into its output folder (checkpoint-N folders aside).
bool is_run_file(const std::string& name) {
  static const char* const files[] = {"run.json",
                                      "metrics.jsonl",
                                      "adapter_config.json",
                                      "adapter_model.safetensors",
                                      "model.safetensors",
                                      "model.safetensors.index.json",
                                      "config.json",
                                      "tokenizer.json",
                                      "tokenizer_config.json",
                                      "special_tokens_map.json",
                                      "generation_config.json",
                                      "dashboard.png"};
  for (const char* file : files)
    if (name == file) return true;
  return name.rfind("checkpoint-", 0) == 0 ||
         (name.rfind("model-", 0) == 0 && name.size() > 12 && name.ends_with(".safetensors"));
}

// Files that show a run was here (the rest of is_run_file may be a user's own).
bool marks_a_run(const std::string& name) {
  return name == "run.json" || name == "metrics.jsonl" || name == "adapter_model.safetensors" ||
         name.rfind("checkpoint-", 0) == 0;
}

std::string value_text(const json& value) { return value.is_string() ? value.get<std::string>() : value.dump(); }

// Creates the folder and proves it writable, so a bad --output-dir fails in a second, before the
// model loads, rather than at the first checkpoint.
void check_writable(const fs::path& dir) {
  const std::string hint = "give an --output-dir in a folder you can write to";
  std::error_code error;
  if (fs::exists(dir, error) && !fs::is_directory(dir, error))
    throw UserError("--output-dir " + dir.string() + " is a file, not a folder",
                    "remove the file or give another --output-dir");
  for (fs::path parent = dir.parent_path(); !parent.empty() && parent != parent.parent_path();
       parent = parent.parent_path())
    if (fs::exists(parent, error) && !fs::is_directory(parent, error))
      throw UserError("--output-dir " + dir.string() + ": " + parent.string() + " is a file, not a folder", hint);
  fs::create_directories(dir, error);
  if (error) throw UserError("cannot create --output-dir " + dir.string() + ": " + error.message(), hint);
  const fs::path probe = dir / ".vktune-write-check";
  std::FILE* file = std::fopen(probe.c_str(), "wb");
  if (!file)
    throw UserError("cannot write into --output-dir " + dir.string() + ": " + std::strerror(errno),
                    hint + " (it may be read-only)");
  std::fclose(file);
  fs::remove(probe, error);
}

// A resume: every identity field of the run being continued must be unchanged.
void check_same_run(const TrainConfig& config, const json& identity) {
  fs::path recorded = fs::path(config.output_dir) / "run.json";
  if (!fs::exists(recorded) && config.resume_from_checkpoint != "latest")
    recorded = fs::path(config.resume_from_checkpoint).parent_path() / "run.json";
  if (!fs::exists(recorded)) return;
  json previous;
  try {
    previous = json::parse(read_text_file(recorded)).value("identity", json::object());
  } catch (const json::exception& error) {
    throw UserError(recorded.string() + ": not valid JSON: " + error.what(),
                    "remove it to resume without the check, or use --overwrite-output-dir");
  }
  if (!previous.is_object()) return;
  std::string differences;
  for (const auto& [field, value] : identity.items())
    if (previous.contains(field) && previous[field] != value)
      differences += "\n  " + field + ": " + value_text(previous[field]) + " -> " + value_text(value);
  if (differences.empty()) return;
  if (config.ignore_config_mismatch) {
    log::warn("resuming although the run differs from " + recorded.string() + ":" + differences);
    return;
  }
  throw UserError("--resume-from-checkpoint: this run differs from the one in " + recorded.string() +
                      " (was -> now):" + differences,
                  "resume with the same model, data and flags; --ignore-config-mismatch resumes anyway, "
                  "--overwrite-output-dir starts over");
}

}  // namespace

json run_identity(const TrainConfig& config) {
  json identity = json::object();
  const fs::path model(config.model);
  identity["model"] = absolute_path(config.model);
  uint64_t weights = 0;
  std::error_code error;
  if (fs::is_regular_file(model)) {  // a GGUF file: its size stands for it (hashing gigabytes is too slow)
    identity["model_config_hash"] = "";
    weights = fs::file_size(model, error);
  } else {
    identity["model_config_hash"] = file_hash(model / "config.json");
    for (const auto& entry : fs::directory_iterator(model, error))
      if (entry.path().extension() == ".safetensors") weights += entry.file_size(error);
  }
  identity["model_safetensors_bytes"] = weights;
  if (const auto sources = parse_data_sources(config.data); !is_mixture(sources)) {
    identity["data"] = absolute_path(config.data);
    identity["data_hash"] = file_hash(config.data);
  } else {  // FILE:weight,...
    std::string data, hashes;
    for (const DataSource& source : sources) {
      data += (data.empty() ? "" : ",") + absolute_path(source.path) + ":" + json(source.weight).dump();
      hashes += (hashes.empty() ? "" : ",") + file_hash(source.path);
    }
    identity["data"] = data;
    identity["data_hash"] = hashes;
  }
  const json options = json::parse(to_json(config));
  for (const char* name : kTrajectoryOptions) identity[name] = options.at(name);
  // Paths need not be UTF-8: as run.json records them (U+FFFD for bad bytes), so a resume compares alike.
  return json::parse(identity.dump(-1, ' ', false, json::error_handler_t::replace));
}

void prepare_output_dir(const TrainConfig& config, const json& identity) {
  const fs::path dir(config.output_dir);
  std::error_code error;
  if (fs::exists(dir, error) && fs::equivalent(dir, config.model, error))
    throw UserError("--output-dir is the --model folder " + config.model,
                    "write the run into another folder: it would replace the model's files");
  check_writable(dir);
  std::vector<fs::path> run_files;
  bool has_run = false;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (is_run_file(name)) run_files.push_back(entry.path());
    has_run = has_run || marks_a_run(name);
  }
  if (!config.resume_from_checkpoint.empty()) return check_same_run(config, identity);
  if (!has_run) return;
  if (config.overwrite_output_dir) {
    // Nothing of the old run may survive beside the new one: `latest` would resume it.
    for (const fs::path& path : run_files) fs::remove_all(path);
    log::info("--overwrite-output-dir: removed the previous run's files from " + dir.string());
    return;
  }
  throw UserError("--output-dir " + dir.string() + " already holds a run (run.json, metrics.jsonl or checkpoints)",
                  "--resume-from-checkpoint latest continues it, --overwrite-output-dir replaces it, "
                  "or give another --output-dir");
}

}  // namespace vkt::train
