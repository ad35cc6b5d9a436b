#include "engine/train/monitor.hpp"

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

namespace vkt::train {

using nlohmann::json;

const char* run_state_name(RunState state) {
  static const char* names[] = {"starting",   "running",  "paused",  "saving",
                                "evaluating", "finished", "stopped", "failed"};
  return names[static_cast<int>(state)];
}

void RunMonitor::set_info(const RunInfo& info) {
  std::lock_guard lock(mutex_);
  state_.info = info;
  state_.version++;
}

void RunMonitor::set_state(RunState state, const std::string& message) {
  std::lock_guard lock(mutex_);
  state_.state = state;
  state_.status_message = message;
  state_.version++;
}

void RunMonitor::push_step(const StepMetrics& metrics) {
  std::lock_guard lock(mutex_);
  state_.steps.push_back(metrics);
  state_.current_step = std::max(state_.current_step, metrics.step);
  state_.current_elapsed = std::max(state_.current_elapsed, metrics.elapsed_seconds);
  state_.version++;
}

void RunMonitor::push_eval(const EvalMetrics& metrics) {
  std::lock_guard lock(mutex_);
  state_.evals.push_back(metrics);
  state_.version++;
}

void RunMonitor::set_kernels(std::vector<KernelTime> kernels) {
  std::lock_guard lock(mutex_);
  state_.kernels = std::move(kernels);
  state_.version++;
}

void RunMonitor::set_progress(int64_t step, double elapsed_seconds) {
  std::lock_guard lock(mutex_);
  state_.current_step = step;
  state_.current_elapsed = elapsed_seconds;
  state_.version++;
}

void RunMonitor::clear_metrics() {
  std::lock_guard lock(mutex_);
  state_.steps.clear();
  state_.evals.clear();
  state_.kernels.clear();
  state_.current_step = 0;
  state_.current_elapsed = 0;
  state_.version++;
}

RunSnapshot RunMonitor::snapshot() const {
  std::lock_guard lock(mutex_);
  return state_;
}

uint64_t RunMonitor::version() const {
  std::lock_guard lock(mutex_);
  return state_.version;
}

std::string step_to_json_line(const StepMetrics& m) {
  json memory = json::object();
  for (size_t c = 0; c < vk::category_count; c++) memory[vk::category_name(vk::Category(c))] = m.memory_bytes[c];
  memory["optimizer_state_offload"] = m.offloaded_optimizer_bytes;
  json line = {{"step", m.step},
               {"epoch", m.epoch},
               {"loss", m.loss},
               {"lr", m.learning_rate},
               {"grad_norm", m.grad_norm},
               {"tokens_per_sec", m.tokens_per_second},
               {"step_time_s", m.step_seconds},
               {"elapsed_s", m.elapsed_seconds},
               {"tokens", m.tokens},
               {"memory", memory}};
  if (m.loss_scale > 0) {  // fp16 runs
    line["loss_scale"] = m.loss_scale;
    line["skipped_steps"] = m.skipped_steps;
  }
  if (m.rank_step_seconds.size() > 1) {
    line["rank_step_time_s"] = m.rank_step_seconds;
    line["all_reduce_s"] = m.all_reduce_seconds;
    line["all_reduce_busy_s"] = m.all_reduce_busy_seconds;
  }
  for (const auto& [name, value] : m.extra) line[name] = value;
  return line.dump();
}

std::string eval_to_json_line(const EvalMetrics& m) {
  json line = {{"step", m.step}, {"epoch", m.epoch}, {m.metric, m.eval_loss}, {"elapsed_s", m.elapsed_seconds}};
  return line.dump();
}

void LoggingWindow::add(double step_seconds, int64_t step_tokens, bool profiled) {
  if (!profiled || steps == 0) {
    seconds += step_seconds;
    tokens += step_tokens;
    counted++;
  }
  steps++;
}

std::string kernels_to_json_line(int64_t step, const std::vector<KernelTime>& kernels) {
  json times = json::array();
  for (const auto& k : kernels) times.push_back({k.name, k.milliseconds});
  return json{{"step", step}, {"kernels", times}}.dump();
}

std::string run_info_to_json(const RunInfo& info, RunState state) {
  json planned = json::object();
  for (size_t c = 0; c < vk::category_count; c++) planned[vk::category_name(vk::Category(c))] = info.planned_bytes[c];
  planned["optimizer_state_offload"] = info.planned_offload_bytes;
  json config = info.config_json.empty() ? json::object() : json::parse(info.config_json);
  json kwargs = info.schedule_kwargs.empty() ? json::object() : json::parse(info.schedule_kwargs);
  json trainable = json::array(), parts = json::array();  // arrays: the order is the display order
  for (const auto& [kind, count] : info.trainable_parameters) trainable.push_back({kind, count});
  for (const MemoryPart& part : info.memory_parts)
    parts.push_back({{"name", part.name}, {"planned", part.planned}, {"measured", part.measured}});
  json out = {{"config", config},
              {"device", info.device},
              {"max_steps", info.max_steps},
              {"schedule",
               {{"type", info.schedule_type},
                {"peak_lr", info.peak_learning_rate},
                {"loraplus_lr_ratio", info.loraplus_lr_ratio},
                {"warmup_steps", info.warmup_steps},
                {"kwargs", kwargs}}},
              {"planned_bytes", planned},
              {"device_budget_bytes", info.device_budget_bytes},
              {"started_at", info.started_at},
              {"identity", json::parse(info.identity_json.empty() ? "{}" : info.identity_json)},
              {"trainable_parameters", trainable},
              {"memory_parts", parts},
              {"state", run_state_name(state)},
              {"version", 1}};
  return out.dump(2, ' ', false, json::error_handler_t::replace);  // paths need not be UTF-8
}

RunInfo run_info_from_json(const std::string& text, RunState* state) {
  json in = json::parse(text);
  RunInfo info;
  info.config_json = in.value("config", json::object()).dump();
  info.device = in.value("device", "");
  info.max_steps = in.value("max_steps", 0);
  json schedule = in.value("schedule", json::object());
  info.schedule_type = schedule.value("type", "constant");
  info.peak_learning_rate = schedule.value("peak_lr", 0.0);
  info.loraplus_lr_ratio = schedule.value("loraplus_lr_ratio", 1.0);
  info.warmup_steps = schedule.value("warmup_steps", 0);
  info.schedule_kwargs = schedule.value("kwargs", json::object()).dump();
  json planned = in.value("planned_bytes", json::object());
  for (size_t c = 0; c < vk::category_count; c++)
    info.planned_bytes[c] = planned.value(vk::category_name(vk::Category(c)), uint64_t{0});
  info.planned_offload_bytes = planned.value("optimizer_state_offload", uint64_t{0});
  info.device_budget_bytes = in.value("device_budget_bytes", uint64_t{0});
  info.started_at = in.value("started_at", "");
  info.identity_json = in.value("identity", json::object()).dump();
  for (const json& entry : in.value("trainable_parameters", json::array()))
    if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_number_unsigned())
      info.trainable_parameters.emplace_back(entry[0].get<std::string>(), entry[1].get<uint64_t>());
  for (const json& entry : in.value("memory_parts", json::array()))
    if (entry.is_object())
      info.memory_parts.push_back(
          {entry.value("name", ""), entry.value("planned", uint64_t{0}), entry.value("measured", uint64_t{0})});
  if (state) {
    std::string name = in.value("state", "running");
    for (int s = 0; s <= static_cast<int>(RunState::failed); s++)
      if (name == run_state_name(RunState(s))) *state = RunState(s);
  }
  return info;
}

bool apply_metrics_line(RunMonitor& monitor, const std::string& line) {
  json in;
  try {
    in = json::parse(line);
  } catch (const json::exception&) {
    return false;
  }
  if (!in.is_object() || !in.contains("step")) return false;
  if (in.contains("kernels") && in["kernels"].is_array()) {
    std::vector<KernelTime> kernels;
    for (const auto& k : in["kernels"])
      if (k.is_array() && k.size() == 2 && k[0].is_string() && k[1].is_number()) kernels.push_back({k[0], k[1]});
    monitor.set_kernels(std::move(kernels));
    return true;
  }
  // An evaluation: eval_loss, or eval_<name>_loss of a named set.
  std::string metric;
  for (const auto& [key, value] : in.items())
    if (key.rfind("eval_", 0) == 0 && key.size() >= 9 && key.compare(key.size() - 4, 4, "loss") == 0 &&
        value.is_number())
      metric = key;
  if (!metric.empty()) {
    EvalMetrics e;
    e.metric = metric;
    e.step = in.value("step", int64_t{0});
    e.epoch = in.value("epoch", 0.0);
    e.eval_loss = in[metric].get<double>();
    e.elapsed_seconds = in.value("elapsed_s", 0.0);
    monitor.push_eval(e);
    return true;
  }
  if (!in.contains("loss")) return false;
  StepMetrics m;
  m.step = in.value("step", int64_t{0});
  m.epoch = in.value("epoch", 0.0);
  m.loss = in.value("loss", 0.0);
  m.learning_rate = in.value("lr", 0.0);
  m.grad_norm = in.value("grad_norm", 0.0);
  m.tokens_per_second = in.value("tokens_per_sec", 0.0);
  m.step_seconds = in.value("step_time_s", 0.0);
  m.elapsed_seconds = in.value("elapsed_s", 0.0);
  m.tokens = in.value("tokens", int64_t{0});
  m.loss_scale = in.value("loss_scale", 0.0);
  m.skipped_steps = in.value("skipped_steps", int64_t{0});
  m.rank_step_seconds = in.value("rank_step_time_s", std::vector<double>{});
  m.all_reduce_seconds = in.value("all_reduce_s", 0.0);
  m.all_reduce_busy_seconds = in.value("all_reduce_busy_s", 0.0);
  json memory = in.value("memory", json::object());
  for (size_t c = 0; c < vk::category_count; c++)
    m.memory_bytes[c] = memory.value(vk::category_name(vk::Category(c)), uint64_t{0});
  m.offloaded_optimizer_bytes = memory.value("optimizer_state_offload", uint64_t{0});
  // Objective-specific metrics (TRL's rewards/*, logps/*, nll_loss, kl; distill/*): the other numeric keys.
  static const std::set<std::string> known = {"step",      "epoch",          "loss",          "lr",
                                              "grad_norm", "tokens_per_sec", "step_time_s",   "elapsed_s",
                                              "tokens",    "loss_scale",     "skipped_steps", "all_reduce_s"};
  for (const auto& [key, value] : in.items())
    if (value.is_number() && !known.contains(key)) m.extra.emplace_back(key, value.get<double>());
  monitor.push_step(m);
  return true;
}

MetricsFollower::MetricsFollower(std::filesystem::path run_dir, RunMonitor& monitor)
    : run_dir_(std::move(run_dir)), monitor_(monitor) {}

size_t MetricsFollower::poll() {
  std::error_code error;
  auto run_json = run_dir_ / "run.json";
  auto time = std::filesystem::last_write_time(run_json, error);
  if (!error && time != run_json_time_) {
    std::ifstream in(run_json);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    try {
      RunState state = RunState::running;
      monitor_.set_info(run_info_from_json(text, &state));
      monitor_.set_state(state);
      run_json_time_ = time;
    } catch (const std::exception&) {
      // Being rewritten right now (it is renamed into place, so this is rare): retry next poll.
    }
  }
  std::ifstream in(run_dir_ / "metrics.jsonl", std::ios::binary);
  if (!in) return 0;
  in.seekg(0, std::ios::end);
  uint64_t size = static_cast<uint64_t>(in.tellg());
  if (size < offset_) {  // the file was replaced (a new run or a resume that cut it): start over
    offset_ = 0;
    partial_line_.clear();
    monitor_.clear_metrics();
  }
  if (size == offset_) return 0;
  in.seekg(static_cast<std::streamoff>(offset_));
  std::string chunk(size - offset_, '\0');
  in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  offset_ = size;
  partial_line_ += chunk;
  size_t applied = 0, start = 0;
  for (size_t end; (end = partial_line_.find('\n', start)) != std::string::npos; start = end + 1) {
    std::string line = partial_line_.substr(start, end - start);
    if (!line.empty() && apply_metrics_line(monitor_, line)) applied++;
  }
  partial_line_.erase(0, start);
  return applied;
}

}  // namespace vkt::train
