#include "engine/train/checkpoint.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/log.hpp"
#include "engine/kernels/optimizer_8bit.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/dtype.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/train/soft_prompt_run.hpp"

namespace vkt::train {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The HF shape of a full-finetuning weight held flat on the device: linear weights (out, in),
// embeddings and lm_head (vocab, hidden), the rest vectors.
std::vector<uint64_t> hf_shape(const spec::ModelShape& shape, const std::string& name, uint64_t elements) {
  return plan::hf_parameter_shape(shape, 0, name, elements);  // full finetuning: no LoRA tensors
}

// The steps of the checkpoint-N folders in `output_dir`, unsorted; folders still being written
// (".tmp-") are skipped, and with `skip_set_aside` those an overwrite moved aside (".old-") too.
std::vector<int64_t> checkpoint_steps(const fs::path& output_dir, bool skip_set_aside) {
  std::vector<int64_t> steps;
  if (!fs::is_directory(output_dir)) return steps;
  for (const auto& entry : fs::directory_iterator(output_dir)) {
    std::string name = entry.path().filename().string();
    if (entry.is_directory() && name.rfind("checkpoint-", 0) == 0 && name.find(".tmp-") == std::string::npos &&
        (!skip_set_aside || name.find(".old-") == std::string::npos))
      steps.push_back(std::stoll(name.substr(11)));
  }
  return steps;
}

// A device buffer of fp32 values as a tensor to write, read back when the writer gets to it.
model::TensorToWrite fp32_tensor(vk::Context& context, const vk::Buffer& buffer, const std::string& file_name) {
  const vk::Buffer* source = &buffer;
  return model::TensorToWrite{
      file_name, model::FileDtype::F32, {buffer.size() / 4}, [&context, source](model::TensorSink& sink) {
        std::vector<float> values(source->size() / 4);
        context.download(*source, values.data());
        sink.write(values.data(), values.size() * 4);
      }};
}

// A trained weight of full finetuning in `dtype` (rounded to nearest even from fp32: a 16-bit
// weight's master rounds to the weight's own bits), read when the writer gets to it.
model::TensorToWrite trained_tensor(const TrainableState& trainable, const std::string& name, model::FileDtype dtype) {
  vk::Context* context = trainable.context;
  const SixteenBitWeights* weights = trainable.weights;
  const uint64_t count = trainable.buffers->range("grad." + name).bytes / 4;
  // --shard-optimizer: the masters gathered from every rank (gather_sharded_states)
  const std::vector<float>* gathered_master = nullptr;
  if (trainable.gathered_states)
    for (const auto& entry : *trainable.gathered_states)
      if (entry.first == "master." + name) gathered_master = &entry.second;
  return {name, dtype, hf_shape(trainable.plan->shape, name, count),
          [context, weights, name, dtype, gathered_master](model::TensorSink& sink) {
            std::vector<float> values = gathered_master ? *gathered_master : weights->download(*context, name);
            std::vector<uint8_t> bytes(values.size() * model::file_dtype_size(dtype));
            model::convert_from_fp32(values, dtype, bytes);
            sink.write(bytes.data(), bytes.size());
          }};
}

// A device buffer as raw bytes (U8): adamw_8bit's packed states (codes + fp32 absmax), which read
// as fp32 would be arbitrary bit patterns, NaN among them.
model::TensorToWrite byte_tensor(vk::Context& context, const vk::Buffer& buffer, const std::string& file_name) {
  const vk::Buffer* source = &buffer;
  return model::TensorToWrite{
      file_name, model::FileDtype::U8, {buffer.size()}, [&context, source](model::TensorSink& sink) {
        std::vector<uint8_t> bytes(source->size());
        context.download(*source, bytes.data());
        sink.write(bytes.data(), bytes.size());
      }};
}

// The plan's sharded state buffers ("adam_m.shard", ...) by state name ("adam_m").
std::vector<std::string> sharded_state_names(const plan::MemoryPlan& plan) {
  std::vector<std::string> names;
  for (const auto& spec : plan.buffers)
    if (spec.category == vk::Category::optimizer_state && spec.name.ends_with(".shard"))
      names.push_back(spec.name.substr(0, spec.name.size() - 6));
  return names;
}

}  // namespace

std::vector<std::pair<std::string, std::vector<float>>> gather_sharded_states(const TrainableState& trainable) {
  std::vector<std::pair<std::string, std::vector<float>>> states;
  for (const std::string& state : sharded_state_names(*trainable.plan)) {
    std::vector<std::vector<float>> values =
        trainable.optimizer_shard->gather_state(*trainable.context, trainable.buffers->range(state + ".shard"));
    for (size_t i = 0; i < values.size(); i++)
      states.emplace_back(state + "." + trainable.trainable_names.at(i), std::move(values[i]));
  }
  if (trainable.weights && trainable.weights->sharded_masters())  // 16-bit full finetuning: "master.<name>"
    for (auto& master : trainable.weights->gather_sharded_masters(*trainable.context))
      states.push_back(std::move(master));
  return states;
}

void save_checkpoint(const TrainableState& trainable, const TrainerState& state, const fs::path& output_dir) {
  AtomicDirectory directory(output_dir / ("checkpoint-" + std::to_string(state.step)));
  vk::Context& context = *trainable.context;
  const plan::MemoryPlan& plan = *trainable.plan;
  if (plan.settings.method == spec::Method::full) {
    std::vector<model::TensorToWrite> weights;
    for (const std::string& name : trainable.trainable_names)  // fp32: the master of a 16-bit weight
      weights.push_back(trained_tensor(trainable, name, model::FileDtype::F32));
    model::write_safetensors(directory.path() / "model.safetensors", std::move(weights));
    model::save_model_config(*trainable.model_config, directory.path() / "config.json");
  } else {
    model::save_adapter(context, *trainable.buffers, plan.shape, *trainable.lora, trainable.base_model,
                        directory.path());
    save_prompt_encoder(context, *trainable.buffers, plan.shape, *trainable.lora, directory.path());  // P-tuning
  }
  std::vector<model::TensorToWrite> states;
  if (trainable.gathered_states)
    for (const auto& [name, values] : *trainable.gathered_states) {
      if (name.starts_with("master.")) continue;  // sharded masters: model.safetensors' values (trained_tensor)
      const std::vector<float>* source = &values;
      // adamw_8bit's packed states (codes + absmax, gathered as words): bytes, as the unsharded run saves them
      const bool packed =
          values.size() * 4 != trainable.buffers->range("grad." + name.substr(name.find('.') + 1)).bytes;
      states.push_back({name,
                        packed ? model::FileDtype::U8 : model::FileDtype::F32,
                        {packed ? values.size() * 4 : values.size()},
                        [source](model::TensorSink& sink) { sink.write(source->data(), source->size() * 4); }});
    }
  for (const auto& spec : plan.buffers)
    if (spec.category == vk::Category::optimizer_state && !trainable.gathered_states) {
      const vk::Buffer& buffer = trainable.buffers->buffer(spec.name);
      const bool packed = plan.settings.optimizer == spec::Optimizer::adamw_8bit &&
                          spec.bytes != plan.find("grad." + spec.name.substr(spec.name.find('.') + 1)).bytes;
      states.push_back(packed ? byte_tensor(context, buffer, spec.name) : fp32_tensor(context, buffer, spec.name));
    }
  if (!states.empty()) model::write_safetensors(directory.path() / "optimizer.safetensors", std::move(states));
  json trainer_state = {{"version", 1},
                        {"step", state.step},
                        {"max_steps", state.max_steps},
                        {"epoch", state.position.epoch},
                        {"next_row", state.position.next_row},
                        {"tokens", state.tokens},
                        {"elapsed_s", state.elapsed_s},
                        {"window_loss", state.window_loss},
                        {"window_steps", state.window_steps},
                        {"window_tokens", state.window_tokens},
                        {"window_seconds", state.window_seconds},
                        {"seed", state.seed},
                        {"data", state.data},
                        {"method", state.method}};
  if (state.best.best_metric) {
    trainer_state["best_metric"] = *state.best.best_metric;
    trainer_state["best_global_step"] = state.best.best_step;
  }
  if (state.best.best_kept_step >= 0) {
    trainer_state["best_checkpoint_step"] = state.best.best_kept_step;
    trainer_state["best_checkpoint_metric"] = state.best.best_kept_metric;
  }
  trainer_state["early_stopping_patience_counter"] = state.best.patience_counter;
  if (state.loss_scaler)
    trainer_state["loss_scaler"] = {{"scale", state.loss_scaler->scale},
                                    {"growth_tracker", state.loss_scaler->growth_tracker},
                                    {"skipped_steps", state.loss_scaler->skipped_steps}};
  // "data" is a path, which need not be UTF-8: such bytes become U+FFFD.
  write_file_atomically(directory.path() / "trainer_state.json",
                        trainer_state.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  directory.commit();
}

void prune_checkpoints(const fs::path& output_dir, int64_t keep, int64_t best_step) {
  std::vector<int64_t> steps = checkpoint_steps(output_dir, false);
  std::sort(steps.begin(), steps.end());
  auto best = std::find(steps.begin(), steps.end(), best_step);
  if (best != steps.end()) {
    if (keep == 1 && best + 1 != steps.end()) keep = 2;
    std::rotate(best, best + 1, steps.end());  // HF: the best checkpoint sorts as the newest
  }
  while (static_cast<int64_t>(steps.size()) > keep) {
    fs::remove_all(output_dir / ("checkpoint-" + std::to_string(steps.front())));
    steps.erase(steps.begin());
  }
}

std::optional<fs::path> checkpoint_to_resume(const std::string& resume_from, const fs::path& output_dir) {
  if (resume_from != "latest") return fs::path(resume_from);
  std::vector<int64_t> steps = checkpoint_steps(output_dir, true);
  if (steps.empty()) return std::nullopt;
  return output_dir / ("checkpoint-" + std::to_string(*std::max_element(steps.begin(), steps.end())));
}

TrainerState load_checkpoint(const TrainableState& trainable, const fs::path& path, const std::string& method,
                             int64_t max_steps) {
  const fs::path state_file = path / "trainer_state.json";
  if (!fs::exists(state_file))
    throw UserError(path.string() + " is not a vktune checkpoint (no trainer_state.json)",
                    "give a checkpoint-N folder of an earlier run, or 'latest'");
  json saved;
  try {
    saved = json::parse(read_text_file(state_file));
  } catch (const json::exception& error) {
    throw UserError(state_file.string() + ": not valid JSON: " + error.what(), "resume from another checkpoint");
  }
  // Checked before any weight is loaded: a step past the run's end would "resume" into nothing
  // and rewrite the adapter untrained.
  const json step = saved.is_object() ? saved.value("step", json()) : json();
  if (!step.is_number_integer() || step.get<int64_t>() < 0 || step.get<int64_t>() > max_steps)
    throw UserError(state_file.string() + ": \"step\" is " + step.dump() + ", outside this run's 0.." +
                        std::to_string(max_steps) + " steps",
                    "the file is damaged or belongs to a longer run: resume from another checkpoint-N");
  if (saved.value("method", method) != method)
    throw UserError(path.string() + " was written by a --method " + saved.value("method", std::string()) + " run",
                    "resume with the same flags as the interrupted run");
  vk::Context& context = *trainable.context;
  const plan::MemoryPlan& plan = *trainable.plan;
  if (plan.settings.method == spec::Method::full) {
    model::SafetensorsFile weights(path / "model.safetensors");
    for (const std::string& name : trainable.trainable_names)
      trainable.weights->upload(context, name, model::to_fp32(weights.tensor(name)));
  } else {
    model::load_adapter_weights(context, *trainable.buffers, plan.shape, *trainable.lora, path);
    load_prompt_encoder(context, *trainable.buffers, plan.shape, *trainable.lora, path);  // P-tuning
  }
  if (fs::exists(path / "optimizer.safetensors") && trainable.optimizer_shard) {
    model::SafetensorsFile states(path / "optimizer.safetensors");
    for (const std::string& state : sharded_state_names(plan))
      for (size_t i = 0; i < trainable.trainable_names.size(); i++) {
        const std::string name = state + "." + trainable.trainable_names[i];
        const model::TensorView& saved_state = states.tensor(name);
        std::vector<float> values;
        if (saved_state.dtype == model::FileDtype::U8) {  // adamw_8bit's packed states: their bytes as words
          values.resize(saved_state.bytes.size() / 4);
          std::memcpy(values.data(), saved_state.bytes.data(), values.size() * 4);
        } else {
          values = model::to_fp32(saved_state);
        }
        const uint64_t count = trainable.buffers->range("grad." + trainable.trainable_names[i]).bytes / 4;
        const bool packed =
            plan.settings.optimizer == spec::Optimizer::adamw_8bit && count >= kernels::blockwise_8bit_min_elements;
        if (saved_state.bytes.size() != (packed ? kernels::adamw_8bit_state_bytes(count) : count * 4) ||
            (saved_state.dtype == model::FileDtype::U8) != packed)
          throw UserError((path / "optimizer.safetensors").string() + ": optimizer state " + name + " holds " +
                              std::to_string(saved_state.bytes.size()) + " bytes, this run needs " +
                              std::to_string(packed ? kernels::adamw_8bit_state_bytes(count) : count * 4) +
                              (packed ? " (8-bit, U8)" : " (fp32)"),
                          "resume with the --optim and trainable modules of the run that wrote the checkpoint");
        trainable.optimizer_shard->load_state(context, trainable.buffers->range(state + ".shard"), i, values.data());
      }
  } else if (fs::exists(path / "optimizer.safetensors")) {
    model::SafetensorsFile states(path / "optimizer.safetensors");
    for (const auto& spec : plan.buffers)
      if (spec.category == vk::Category::optimizer_state) {
        const model::TensorView& saved_state = states.tensor(spec.name);
        if (saved_state.dtype == model::FileDtype::U8) {  // adamw_8bit's packed states, as saved
          if (saved_state.bytes.size() != spec.bytes)
            throw UserError((path / "optimizer.safetensors").string() + ": optimizer state " + spec.name + " holds " +
                                std::to_string(saved_state.bytes.size()) + " bytes, this run needs " +
                                std::to_string(spec.bytes),
                            "resume with the --optim and trainable modules of the run that wrote the checkpoint");
          context.upload(trainable.buffers->buffer(spec.name), saved_state.bytes.data());
          continue;
        }
        std::vector<float> values = model::to_fp32(saved_state);
        context.upload(trainable.buffers->buffer(spec.name), values.data());
      }
  }
  TrainerState state;
  state.step = saved.at("step");
  state.position = {saved.at("epoch").get<int64_t>(), saved.at("next_row").get<int64_t>()};
  state.tokens = saved.value("tokens", int64_t{0});
  state.elapsed_s = saved.value("elapsed_s", 0.0);
  state.window_loss = saved.value("window_loss", 0.0f);
  state.window_steps = saved.value("window_steps", int64_t{0});
  state.window_tokens = saved.value("window_tokens", int64_t{0});
  state.window_seconds = saved.value("window_seconds", 0.0);
  state.method = method;
  if (saved.contains("best_metric") && saved["best_metric"].is_number()) {
    state.best.best_metric = saved["best_metric"].get<double>();
    state.best.best_step = saved.value("best_global_step", int64_t{-1});
  }
  state.best.best_kept_step = saved.value("best_checkpoint_step", int64_t{-1});
  state.best.best_kept_metric = saved.value("best_checkpoint_metric", 0.0);
  state.best.patience_counter = saved.value("early_stopping_patience_counter", int64_t{0});
  if (saved.contains("loss_scaler") && saved["loss_scaler"].is_object()) {
    const json& scaler = saved["loss_scaler"];
    state.loss_scaler = LossScalerState{scaler.value("scale", 65536.0f), scaler.value("growth_tracker", int64_t{0}),
                                        scaler.value("skipped_steps", int64_t{0})};
  }
  return state;
}

void truncate_metrics(const fs::path& metrics, int64_t step) {
  if (!fs::exists(metrics)) return;
  std::ifstream in(metrics);
  std::string line, kept;
  while (std::getline(in, line)) {
    try {
      if (json::parse(line).value("step", int64_t{0}) <= step) kept += line + "\n";
    } catch (const json::exception&) {}
  }
  write_file_atomically(metrics, kept);
}

void save_final_weights(const TrainableState& trainable, const fs::path& output_dir) {
  vk::Context& context = *trainable.context;
  const plan::MemoryPlan& plan = *trainable.plan;
  if (plan.settings.method != spec::Method::full) {
    model::save_adapter(context, *trainable.buffers, plan.shape, *trainable.lora, trainable.base_model, output_dir);
    return;
  }
  std::vector<model::TensorToWrite> tensors;
  // A 16-bit run (--bf16/--fp16) saves its type, as HF saves a bf16/fp16 model (config.json's
  // torch_dtype says so); an fp32 run the base model's torch_dtype.
  model::ModelConfig saved_config = *trainable.model_config;
  if (plan.settings.dtype == kernels::DType::bf16) saved_config.torch_dtype = "bfloat16";
  if (plan.settings.dtype == kernels::DType::f16) saved_config.torch_dtype = "float16";
  const model::FileDtype dtype = model::file_dtype_from_torch(saved_config.torch_dtype);
  for (const std::string& name : trainable.trainable_names) tensors.push_back(trained_tensor(trainable, name, dtype));
  model::write_safetensors_sharded(output_dir, std::move(tensors), 5000000000ull);
  model::save_model_config(saved_config, output_dir / "config.json");
  for (const char* file :
       {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"}) {
    fs::path source = fs::path(trainable.base_model) / file;
    if (fs::exists(source)) write_file_atomically(output_dir / file, read_text_file(source));
  }
}

}  // namespace vkt::train
