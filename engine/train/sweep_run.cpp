// Running a sweep: plan each trial, skip what does not fit, train the rest through train::train
// (the `vktune train` code path), score them, persist after each, and write the outputs.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/log.hpp"
#include "engine/model/config.hpp"
#include "engine/plan/plan.hpp"
#include "engine/train/batcher.hpp"
#include "engine/train/checkpoint.hpp"
#include "engine/train/distributed.hpp"
#include "engine/train/evaluate.hpp"
#include "engine/train/generation_eval.hpp"
#include "engine/train/sweep.hpp"
#include "engine/train/trainer.hpp"
#include "engine/vk/capabilities.hpp"
#include "engine/vk/context.hpp"

namespace vkt::train {

namespace fs = std::filesystem;
using json = nlohmann::json;

uint64_t default_device_budget(int64_t device) {
  uint64_t best = 0;
  auto devices = vk::list_devices();
  for (size_t i = 0; i < devices.size(); i++) {
    if (device >= 0 && int64_t(i) != device) continue;
    for (const auto& heap : devices[i].heaps)
      if (heap.device_local) best = std::max(best, heap.budget ? heap.budget : heap.size);
  }
  return best;
}

namespace {

json trial_to_json(const TrialResult& t) {
  json flags = json::object();
  for (const auto& [name, value] : t.flags) flags[name] = value;
  return {{"index", t.index},   {"flags", flags},           {"status", trial_status_name(t.status)},
          {"reason", t.reason}, {"objective", t.objective}, {"planned_bytes", t.planned_bytes},
          {"steps", t.steps},   {"seconds", t.seconds},     {"output", t.output}};
}

TrialResult trial_from_json(const json& j) {
  TrialResult t;
  t.index = j.at("index").get<int64_t>();
  for (const auto& [name, value] : j.at("flags").items()) t.flags.emplace_back(name, value.get<std::string>());
  t.status = trial_status_from_name(j.at("status").get<std::string>());
  t.reason = j.at("reason").get<std::string>();
  t.objective = j.at("objective").get<double>();
  t.planned_bytes = j.at("planned_bytes").get<uint64_t>();
  t.steps = j.at("steps").get<int64_t>();
  t.seconds = j.at("seconds").get<double>();
  t.output = j.at("output").get<std::string>();
  return t;
}

// Earlier results of this sweep folder, by trial index (empty when there are none).
std::map<int64_t, TrialResult> load_state(const fs::path& state_file) {
  std::map<int64_t, TrialResult> done;
  if (!fs::exists(state_file)) return done;
  try {
    json state = json::parse(read_text_file(state_file));
    for (const auto& trial : state.at("trials")) {
      TrialResult t = trial_from_json(trial);
      done[t.index] = t;
    }
  } catch (const json::exception& error) {
    throw UserError(state_file.string() + " is not a sweep state file: " + error.what(),
                    "delete it to start the sweep over, or give another output_dir");
  }
  return done;
}

// Under `mpirun -np N vktune sweep`, rank r > 0 keeps its trials in sweep_state.rank<r>.json (rank
// 0 in sweep_state.json): no two processes write one file. Every rank reads them all, so a resumed
// sweep (with any N) skips every trial some rank finished.
fs::path rank_state_file(const fs::path& output_dir, int rank) {
  return output_dir /
         (rank == 0 ? std::string("sweep_state.json") : "sweep_state.rank" + std::to_string(rank) + ".json");
}
std::map<int64_t, TrialResult> load_all_states(const fs::path& output_dir) {
  std::map<int64_t, TrialResult> done = load_state(output_dir / "sweep_state.json");
  for (const auto& entry : fs::directory_iterator(output_dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("sweep_state.rank", 0) == 0 && entry.path().extension() == ".json")
      for (auto& [index, trial] : load_state(entry.path())) done.emplace(index, trial);
  }
  return done;
}

void save_state(const fs::path& state_file, const SweepSpec& spec, const std::map<int64_t, TrialResult>& done) {
  json trials = json::array();
  for (const auto& [index, t] : done) trials.push_back(trial_to_json(t));
  json state = {{"sweep", spec.file.string()}, {"objective", spec.objective}, {"trials", trials}};
  write_file_atomically(state_file, state.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
}

// The sequence length the trainer will choose for this data (longest example up to max_length,
// or max_length when packing), cached per data file and settings: the plan depends on it.
class SeqLenCache {
 public:
  uint32_t get(const TrainConfig& c) {
    std::string key = c.model + "\n" + c.data + "\n" + std::to_string(c.max_length) + "\n" +
                      std::to_string(c.prompt_loss_weight) + "\n" + (c.packing ? "1" : "0");
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    EvalData data = tokenize_eval_file(c.model, c.data, uint32_t(c.max_length), c.prompt_loss_weight);
    uint32_t seq_len = choose_seq_len(data.examples, uint32_t(c.max_length), c.packing);
    cache_[key] = seq_len;
    return seq_len;
  }

 private:
  std::map<std::string, uint32_t> cache_;
};

// Plans the trial; a reason to skip it (the planner's verdict) or to fail it (bad flags).
void plan_trial(const PlannedTrial& trial, uint64_t budget, SeqLenCache& seq_lens, TrialResult& result) {
  try {
    validate(trial.config);
    const spec::ModelShape shape = model::model_shape(model::load_model_config(trial.config.model));
    plan::MemoryPlan plan = plan::make_plan(shape, run_settings(trial.config, seq_lens.get(trial.config), &shape));
    result.planned_bytes = plan.device_bytes();
    if (budget == 0) return;
    plan::Verdict verdict = plan::judge(plan, budget);
    if (verdict.fits) return;
    result.status = TrialStatus::skipped;
    result.reason = "planner: needs " + format_bytes(double(verdict.required)) + " of " +
                    format_bytes(double(verdict.available)) + " (" + format_bytes(double(-verdict.headroom)) +
                    " missing)";
    if (!verdict.advice.empty()) result.reason += "; cheapest fix: " + verdict.advice.front();
  } catch (const UserError& error) {
    result.status = TrialStatus::failed;
    result.reason = error.what();
  }
}

// Stops a run after `minutes` through its monitor (the trainer saves a checkpoint and stops).
class TimeBudget {
 public:
  TimeBudget(RunMonitor& monitor, double minutes) {
    if (minutes <= 0) return;
    thread_ = std::thread([this, &monitor, minutes] {
      std::unique_lock lock(mutex_);
      if (!done_cv_.wait_for(lock, std::chrono::duration<double>(minutes * 60), [this] { return done_; })) {
        expired = true;
        monitor.stop_requested = true;
      }
    });
  }
  ~TimeBudget() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    done_cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  std::atomic<bool> expired{false};

 private:
  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::thread thread_;
};

double score_trial(const SweepSpec& spec, const TrainConfig& config, const TrainSummary& summary,
                   const fs::path& adapter) {
  if (spec.objective == "train_loss") return summary.last_loss;
  const bool full = config.method == spec::Method::full;
  TrainConfig resolved = config;  // --dtype auto as the trial's trainer resolved it
  resolve_auto_dtype(resolved, model::load_model_config(config.model).torch_dtype);
  const kernels::DType base_weights_dtype = base_dtype(resolved.dtype);
  vk::ContextOptions options;
  options.device_index = static_cast<int>(config.device);
  options.log_capabilities = false;
  if (spec.objective == "eval_loss") {
    if (summary.eval_loss >= 0) return summary.eval_loss;
    // Stopped by the time budget before the trainer's final evaluation: score the checkpoint.
    vk::Context context(options);
    EvalOptions eval;
    eval.batch = uint32_t(config.per_device_train_batch_size);
    eval.max_length = uint32_t(config.max_length);
    eval.prompt_loss_weight = config.prompt_loss_weight;
    if (!full) eval.adapter = adapter;
    eval.base_format = config.method == spec::Method::qlora ? kernels::WeightFormat::nf4 : config.quant;
    eval.double_quant = config.double_quant;
    eval.dtype = base_weights_dtype;
    return evaluate_model(context, full ? adapter : fs::path(config.model), config.eval_data, eval).loss;
  }
  vk::Context context(options);
  GenerationEvalOptions eval;
  eval.model = full ? adapter : fs::path(config.model);
  if (!full) eval.adapter = adapter;
  eval.data = spec.evaluate_data;
  eval.json_keys = spec.evaluate_json_keys;
  eval.limit = size_t(spec.evaluate_limit);
  eval.base_format = config.method == spec::Method::qlora ? kernels::WeightFormat::nf4 : config.quant;
  eval.dtype = base_weights_dtype;
  GenerationEvalResult result = evaluate_generation(context, eval);
  if (spec.objective == "form") return result.form_rate;
  if (spec.objective == "content") return result.content_rate;
  return result.field_rate;
}

void run_trial(const SweepSpec& spec, PlannedTrial trial, TrialResult& result, int& stop_signal) {
  fs::path folder = trial.config.output_dir;
  // A trial cut off by a crash: continue from its last checkpoint, or start it over.
  if (fs::exists(folder / "run.json")) {
    if (checkpoint_to_resume("latest", folder))
      trial.config.resume_from_checkpoint = "latest";
    else
      trial.config.overwrite_output_dir = true;
  }
  RunMonitor monitor;
  auto started = std::chrono::steady_clock::now();
  try {
    TrainSummary summary;
    bool budget_expired = false;
    {
      TimeBudget budget(monitor, spec.budget_minutes);
      summary = train(trial.config, &monitor);
      budget_expired = budget.expired;
    }
    result.steps = summary.steps;
    if (summary.stop_signal != 0 && !budget_expired) {  // Ctrl-C: the sweep stops, this trial is not done
      stop_signal = summary.stop_signal;
      return;
    }
    fs::path adapter = summary.output;
    if (budget_expired) {
      adapter = *checkpoint_to_resume("latest", folder);
      result.reason = "time budget: stopped after " + std::to_string(summary.steps) + " steps";
    }
    result.objective = score_trial(spec, trial.config, summary, adapter);
    result.status = std::isfinite(result.objective) ? TrialStatus::finished : TrialStatus::failed;
    if (result.status == TrialStatus::failed) result.reason = "the objective is not finite";
  } catch (const std::exception& error) {
    result.status = TrialStatus::failed;
    result.reason = error.what();
    log::warn("trial " + std::to_string(trial.index) + " failed: " + error.what());
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
}

}  // namespace

SweepResult run_sweep(const SweepSpec& spec, const SweepHooks& hooks) {
  if (spec.output_dir.empty())
    throw UserError(spec.file.string() + ": no output_dir", "give output_dir: in the file or --output-dir");
  std::vector<PlannedTrial> trials = plan_trials(spec);
  fs::create_directories(spec.output_dir);
  // mpirun -np N: rank r runs trials r+1, r+1+N, ... alone on its device; rank 0 writes the results.
  Communicator& ranks = world();
  const int my_rank = ranks.rank(), rank_count = ranks.size();
  const fs::path state_file = rank_state_file(spec.output_dir, my_rank);
  std::map<int64_t, TrialResult> done = load_all_states(spec.output_dir);
  const uint64_t budget = spec.device_memory ? *spec.device_memory : default_device_budget(spec.base.device);
  SeqLenCache seq_lens;
  SweepResult result;
  const size_t device_count = rank_count > 1 ? vk::list_devices().size() : 0;  // enumerated once
  for (PlannedTrial trial : trials) {
    if (rank_count > 1) {
      if ((trial.index - 1) % rank_count != my_rank) continue;  // another rank's trial
      trial.config.single_process = true;
      trial.config.device = device_for_rank(spec.base.device, rank_count, ranks.local_rank(), device_count);
    }
    auto previous = done.find(trial.index);
    if (previous != done.end()) {
      if (previous->second.flags != trial.flags)
        throw UserError(state_file.string() + ": trial " + std::to_string(trial.index) +
                            " was run with other flags than the sweep file gives now",
                        "use a new output_dir for a changed sweep (or delete " + state_file.string() + ")");
      result.reused++;
      log::info("trial " + std::to_string(trial.index) + ": done in an earlier run (" +
                trial_status_name(previous->second.status) + ")");
      continue;
    }
    TrialResult outcome;
    outcome.index = trial.index;
    outcome.flags = trial.flags;
    outcome.output = trial.config.output_dir;
    outcome.status = TrialStatus::finished;
    std::string flags_text;
    for (const auto& [name, value] : trial.flags) flags_text += " " + name + "=" + value;
    log::info("trial " + std::to_string(trial.index) + "/" + std::to_string(trials.size()) + ":" + flags_text);
    plan_trial(trial, budget, seq_lens, outcome);
    if (outcome.status == TrialStatus::finished) {
      int stop_signal = 0;
      run_trial(spec, trial, outcome, stop_signal);
      if (stop_signal != 0) {
        result.stop_signal = stop_signal;
        break;
      }
    } else {
      log::info("trial " + std::to_string(trial.index) + " " + trial_status_name(outcome.status) + ": " +
                outcome.reason);
    }
    done[trial.index] = outcome;
    save_state(state_file, spec, done);
    if (hooks.after_trial) hooks.after_trial(outcome);
  }
  if (rank_count > 1) {  // every rank's trials are done: rank 0 gathers them from their state files
    ranks.barrier();
    if (my_rank != 0) return result;
    done = load_all_states(spec.output_dir);
  }
  for (const auto& [index, t] : done)
    if (index <= int64_t(trials.size())) result.trials.push_back(t);
  auto rank = [](TrialStatus s) { return s == TrialStatus::finished ? 0 : s == TrialStatus::failed ? 1 : 2; };
  std::stable_sort(result.trials.begin(), result.trials.end(), [&](const TrialResult& a, const TrialResult& b) {
    if (rank(a.status) != rank(b.status)) return rank(a.status) < rank(b.status);
    if (a.status == TrialStatus::finished && a.objective != b.objective)
      return spec.minimize ? a.objective < b.objective : a.objective > b.objective;
    return a.index < b.index;
  });
  if (!result.trials.empty() && result.trials.front().status == TrialStatus::finished) result.best = 0;
  result.csv = spec.output_dir / "results.csv";
  write_file_atomically(result.csv, sweep_csv(spec, result));
  if (result.best) {
    const TrialResult& best = result.trials[*result.best];
    const PlannedTrial& planned = trials[size_t(best.index - 1)];
    std::string flags_text;
    for (const auto& [name, value] : best.flags) flags_text += " " + name + "=" + value;
    result.best_yaml = spec.output_dir / "best_config.yaml";
    write_file_atomically(
        result.best_yaml,
        best_config_yaml(planned.config, "best trial of " + spec.file.string() + ": trial " +
                                             std::to_string(best.index) + "," + flags_text + ", " + spec.objective +
                                             " " + std::to_string(best.objective) +
                                             "\nuse: vktune train --config THIS_FILE --output-dir DIR"));
  }
  return result;
}

}  // namespace vkt::train
