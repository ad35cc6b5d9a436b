#include "engine/train/trainer.hpp"
#include "engine/train/training_run.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/log.hpp"
#include "engine/base/progress.hpp"
#include "engine/kernels/elementwise.hpp"
#include "engine/kernels/optimizer.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/config.hpp"
#include "engine/model/gguf_model.hpp"
#include "engine/model/gguf_tokenizer.hpp"
#include "engine/model/gguf_weights.hpp"
#include "engine/model/ia3.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/model/session.hpp"
#include "engine/model/transformer.hpp"
#include "engine/model/weights.hpp"
#include "engine/text/tokenizer.hpp"
#include "engine/train/advice.hpp"
#include "engine/train/batcher.hpp"
#include "engine/train/checkpoint.hpp"
#include "engine/train/data_mixture.hpp"
#include "engine/train/dataset.hpp"
#include "engine/train/distributed.hpp"
#include "engine/train/early_stopping.hpp"
#include "engine/train/loss_scaler.hpp"
#include "engine/train/mixed_precision.hpp"
#include "engine/train/preference.hpp"
#include "engine/train/run_identity.hpp"
#include "engine/train/run_parts.hpp"
#include "engine/train/schedule.hpp"
#include "engine/train/step_runner.hpp"

namespace vkt::train {

namespace fs = std::filesystem;
using kernels::DType;
using kernels::WeightFormat;
using nlohmann::json;

namespace {
std::function<void(int64_t)> step_hook;
// The signal that asked the run to stop (0: none). A second one exits at once, as shells expect.
std::atomic<int> stop_signal{0};
extern "C" void on_stop_signal(int signal) {
  if (stop_signal.exchange(signal) != 0) _exit(128 + signal);
}
constexpr int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};

// VKT_TEST_RAISE_AT_STEP=N[,N...] and VKT_TEST_RAISE_SIGNAL=INT|TERM|HUP (test-only, see trainer.hpp).
void raise_test_signals(int64_t step) {
  const char* steps = std::getenv("VKT_TEST_RAISE_AT_STEP");
  if (!steps) return;
  const char* name = std::getenv("VKT_TEST_RAISE_SIGNAL");
  std::string which = name ? name : "TERM";
  int signal = which == "INT" ? SIGINT : which == "HUP" ? SIGHUP : SIGTERM;
  std::stringstream list(steps);
  std::string item;
  while (std::getline(list, item, ','))
    if (!item.empty() && std::stoll(item) == step) std::raise(signal);
}

// The step's finite check failed: the optimizers skipped it on the device, so the weights are
// still those of the last finite step. (With --fp16 the loss scaler absorbs an overflowed
// gradient first: that step is skipped, not fatal.)
[[noreturn]] void stop_on_non_finite(int64_t step, uint32_t flags, double learning_rate, kernels::DType dtype) {
  std::string what = (flags & kernels::step_flag_non_finite_loss) ? "the loss" : "the gradient";
  if ((flags & kernels::step_flag_non_finite) == kernels::step_flag_non_finite) what = "the loss and the gradient";
  char lr[32];
  std::snprintf(lr, sizeof lr, "%g", learning_rate);
  std::string hint = "likely causes: a learning rate too high (this step's was " + std::string(lr) +
                     ": lower --learning-rate, keep --max-grad-norm 1.0, add --warmup-steps), bad data in this "
                     "step's examples";
  if (dtype == kernels::DType::f16) hint += ", or fp16 overflow (try --dtype bf16)";
  throw UserError("step " + std::to_string(step) + ": " + what +
                      " became NaN or Inf; the run stopped before the step changed any weight",
                  hint + "; the last checkpoint is intact: resume from it with --resume-from-checkpoint");
}

std::string now_iso8601() {
  std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return text;
}
}  // namespace

void set_step_hook(std::function<void(int64_t)> hook) { step_hook = std::move(hook); }

uint32_t TrainingRun::train_step(int64_t step, bool profile) {
  // All micro-batches of the step first: the loss is normalised by Σw over all of them.
  std::vector<MicroBatch> micro_batches;
  for (int64_t i = 0; i < accumulation_; i++) micro_batches.push_back(batcher_->next());
  const double lr = schedule_->learning_rate(scaler_.schedule_step(step));
  uint32_t flags = preference_ ? preference_->step(step, lr, micro_batches, profile)
                               : runner_->step(step, lr, micro_batches, profile);
  tokens_ += runner_->step_tokens();  // over all ranks
  return scaler_.absorb(flags);  // fp16: an overflowed step is skipped, not fatal
}

void TrainingRun::append_metrics(const std::string& line) {
  if (!ranks_.writer()) return;
  append_to_file(output_dir() / "metrics.jsonl", line + "\n");
}

void TrainingRun::log_step(int64_t step, double elapsed) {
  double window_loss = runner_->take_loss_sum();
  kernels::StepState device_state = runner_->device_state();
  const std::vector<KernelTime>& kernel_times = runner_->kernel_times();
  StepMetrics m;
  m.step = step;
  m.epoch = batcher_->epoch_progress();
  m.loss = window_.steps ? window_loss / double(window_.steps) : 0;
  m.learning_rate = schedule_->learning_rate(scaler_.schedule_step(step));
  m.grad_norm = device_state.grad_norm;
  m.loss_scale = scaler_.enabled() ? scaler_.scale() : 0;
  m.skipped_steps = scaler_.skipped_steps();
  if (preference_) m.extra = preference_->take_metrics();
  if (teacher_) {  // the distillation loss's parts, averaged as the loss is (loss = alpha·kl + (1 - alpha)·ce)
    // loss.window [1], [2]: Σ over the window's steps of Σ w·T²·KL / Σw and Σ w·CE / Σw (StepRunner).
    float sums[2] = {0, 0}, zeros[2] = {0, 0};
    context_->download(buffers_->buffer("loss.window"), sums, 4, 8);
    context_->upload(buffers_->buffer("loss.window"), zeros, 4, 8);
    const double steps = window_.steps ? double(window_.steps) : 1.0;
    m.extra = {{"distill/kl", sums[0] / steps}, {"distill/ce", sums[1] / steps}};
  }
  m.step_seconds = window_.step_seconds();
  m.tokens_per_second = window_.tokens_per_second();
  m.elapsed_seconds = elapsed;
  m.tokens = tokens_;
  vk::LedgerSnapshot ledger = context_->ledger().snapshot();
  for (size_t c = 0; c < vk::category_count; c++) m.memory_bytes[c] = ledger.category_current(vk::Category(c));
  m.offloaded_optimizer_bytes = ledger.current[size_t(vk::Category::optimizer_state)][size_t(vk::MemoryKind::offload)];
  m.rank_step_seconds = ranks_.gather(m.step_seconds);  // a collective: every rank logs the same steps
  m.all_reduce_seconds = window_.steps ? runner_->take_all_reduce_seconds() / double(window_.steps) : 0;
  m.all_reduce_busy_seconds = window_.steps ? runner_->take_all_reduce_busy_seconds() / double(window_.steps) : 0;
  append_metrics(step_to_json_line(m));
  if (!kernel_times.empty()) append_metrics(kernels_to_json_line(step, kernel_times));
  monitor_->push_step(m);
  monitor_->set_kernels(kernel_times);
  if (std::isnan(first_loss_)) first_loss_ = m.loss;
  last_loss_ = m.loss;
  window_ = LoggingWindow{};
  if (!std::isfinite(m.loss))
    throw UserError("the loss became " + std::to_string(m.loss) + " at step " + std::to_string(step),
                    "lower --learning-rate, keep --max-grad-norm at 1.0, or check the data");
}

double TrainingRun::evaluate(const std::vector<TokenizedExample>& examples) {
  if (examples.empty()) return -1;
  BatcherSettings settings = batcher_->settings();
  settings.epoch_examples = nullptr;
  settings.shuffle = false;
  settings.packing = false;
  settings.wrap_epochs = false;
  Batcher eval_batcher(examples, settings);
  std::vector<MicroBatch> batches;
  for (int64_t i = 0; i < eval_batcher.micro_batches_per_epoch(); i++) batches.push_back(eval_batcher.next());
  return runner_->evaluate(batches);
}

bool TrainingRun::evaluate_and_log(int64_t step, double elapsed, bool kept) {
  std::optional<double> tracked;  // the --metric-for-best-model set's loss
  for (const auto& [set, examples] : eval_sets_) {
    double loss = evaluate(examples);
    if (loss < 0) continue;
    EvalMetrics e{step, batcher_->epoch_progress(), loss, elapsed, set.metric()};
    append_metrics(eval_to_json_line(e));
    monitor_->push_eval(e);
    if (set.metric() == best_->settings().metric || (!tracked && &set == &eval_sets_.front().first)) tracked = loss;
  }
  if (!tracked) return false;
  last_eval_ = *tracked;
  return best_->settings().active() && best_->observe(step, last_eval_, kept);
}

// --load-best-model-at-end: the best kept state's weights replace the final ones (HF loads the
// best checkpoint into the model before the final save).
void TrainingRun::load_best_weights(int64_t final_step) {
  const BestModelState& best = best_->state();
  const std::string metric = best_->settings().metric;
  if (best.best_kept_step < 0 || best.best_kept_step == final_step) {
    log::info("--load-best-model-at-end: the final weights are the best (" + metric + " " +
              std::to_string(best.best_kept_metric) + " at step " + std::to_string(final_step) + ")");
    return;
  }
  const fs::path path = output_dir() / ("checkpoint-" + std::to_string(best.best_kept_step));
  if (!fs::exists(path / "trainer_state.json"))
    throw UserError("--load-best-model-at-end: the best checkpoint " + path.string() + " is gone",
                    "it was removed outside the run; the last checkpoint is intact");
  load_checkpoint(trainable(), path, spec::method_name(config_.method), max_steps_);
  last_eval_ = best.best_kept_metric;
  log::info("--load-best-model-at-end: loaded " + path.filename().string() + " (" + metric + " " +
            std::to_string(best.best_kept_metric) + ")");
}

void TrainingRun::write_run_json(RunState state) {
  if (!ranks_.writer()) return;
  write_file_atomically(output_dir() / "run.json", run_info_to_json(info_, state) + "\n");
}

// checkpoint-N: trainable weights (a PEFT adapter, or HF-named fp32 weights for full
// finetuning), optimizer states, and trainer_state.json (step, data position, loss window).
TrainableState TrainingRun::trainable() const {
  TrainableState state;
  state.context = context_.get();
  state.buffers = buffers_;
  state.plan = &plan_;
  state.lora = &lora_;
  state.initial_lora = &initial_lora_;
  state.trainable_names = runner_->trainable_names();
  state.weights = &runner_->sixteen_bit_weights();
  state.model_config = &model_config_;
  state.base_model = config_.model;
  state.optimizer_shard = runner_->optimizer_shard();
  return state;
}

void TrainingRun::save_checkpoint(int64_t step) {
  // --shard-optimizer: every rank holds its slice of the states; all of them gather them for rank 0.
  std::vector<std::pair<std::string, std::vector<float>>> gathered;
  if (runner_->optimizer_shard()) gathered = gather_sharded_states(trainable());
  if (!ranks_.writer()) return;  // every rank holds the same weights (and unsharded, optimizer states)
  TrainerState state;
  state.step = step;
  state.max_steps = max_steps_;
  state.position = batcher_->position();
  state.tokens = tokens_;
  state.elapsed_s =
      elapsed_before_ + std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  context_->download(buffers_->buffer("loss.window"), &state.window_loss, 0, 4);
  state.window_steps = window_.steps;
  state.window_tokens = window_.tokens;
  state.window_seconds = window_.seconds;
  state.seed = config_.seed;
  state.data = config_.data;
  state.method = spec::method_name(config_.method);
  state.best = best_->state();
  if (scaler_.enabled()) state.loss_scaler = scaler_.state();
  TrainableState saved = trainable();
  if (runner_->optimizer_shard()) saved.gathered_states = &gathered;
  train::save_checkpoint(saved, state, output_dir());
  if (config_.save_total_limit > 0)
    prune_checkpoints(output_dir(), config_.save_total_limit,
                      best_->settings().load_best ? state.best.best_kept_step : -1);
  log::info("saved checkpoint-" + std::to_string(step));
}

int64_t TrainingRun::resume() {
  if (config_.resume_from_checkpoint.empty()) return 0;
  std::optional<fs::path> path = checkpoint_to_resume(config_.resume_from_checkpoint, output_dir());
  if (!path) {
    log::info("--resume-from-checkpoint latest: no checkpoint in " + config_.output_dir + ", starting fresh");
    return 0;
  }
  TrainerState state = load_checkpoint(trainable(), *path, spec::method_name(config_.method), max_steps_);
  batcher_->restore(state.position);
  tokens_ = state.tokens;
  elapsed_before_ = state.elapsed_s;
  context_->upload(buffers_->buffer("loss.window"), &state.window_loss, 0, 4);
  // Checkpoints fall between logging steps, so every step of a saved window was counted.
  window_ = LoggingWindow{state.window_seconds, state.window_tokens, state.window_steps, state.window_steps};
  best_ = std::make_unique<BestModelTracker>(best_->settings(), state.best);
  if (state.loss_scaler) scaler_.restore(*state.loss_scaler);
  if (ranks_.writer())
    truncate_metrics(output_dir() / "metrics.jsonl", state.step);  // keeps what was logged up to the checkpoint
  log::info("resumed from " + path->string() + " at step " + std::to_string(state.step));
  return state.step;
}

TrainSummary TrainingRun::run() {
  if (!monitor_) monitor_ = &own_monitor_;
  monitor_->set_state(RunState::starting);
  validate(config_);
  refuse_unwired_precision(config_);  // 16-bit full finetuning, until its weights path lands
  best_ = std::make_unique<BestModelTracker>(best_model_settings(config_));
  prepare_data();  // everything that can fail on bad input happens before output is written
  info_.identity_json = run_identity(config_).dump(-1, ' ', false, json::error_handler_t::replace);
  if (ranks_.writer()) prepare_output_dir(config_, json::parse(info_.identity_json));  // before the model loads
  ranks_.barrier();  // the others read a checkpoint to resume only once rank 0 has readied the folder
  prepare_device();

  info_.config_json = to_json(config_);
  info_.device = context_->caps().summary_line();
  info_.max_steps = max_steps_;
  info_.schedule_type = schedule_name(config_.lr_scheduler_type);
  info_.peak_learning_rate = config_.learning_rate;
  info_.loraplus_lr_ratio = config_.loraplus_lr_ratio;
  info_.warmup_steps = schedule_->settings().warmup_steps;
  info_.schedule_kwargs = config_.lr_scheduler_kwargs;
  for (size_t c = 0; c < vk::category_count; c++) info_.planned_bytes[c] = plan_.bytes(vk::Category(c));
  info_.planned_offload_bytes = plan_.bytes(vk::Category::optimizer_state, vk::MemoryKind::offload);
  info_.trainable_parameters = trainable_parameters_by_kind(plan_);
  info_.memory_parts = adapter_memory_parts(plan_, buffers_);
  if (teacher_) info_.memory_parts.push_back(teacher_memory_part(teacher_->session->plan, *teacher_->session->buffers));
  for (const auto& heap : context_->memory_heaps())
    if (heap.device_local)
      info_.device_budget_bytes = std::max(info_.device_budget_bytes, heap.budget ? heap.budget : heap.size);
  info_.started_at = now_iso8601();
  monitor_->set_info(info_);

  int64_t start = resume();
  if (start == 0 && ranks_.writer()) write_file_atomically(output_dir() / "metrics.jsonl", "");
  write_run_json(RunState::running);
  monitor_->set_state(RunState::running);
  log::info("training: " + std::to_string(max_steps_) + " steps of " + std::to_string(accumulation_) + " x " +
            std::to_string(config_.per_device_train_batch_size) + " x " + std::to_string(seq_len_) + " tokens, " +
            std::to_string(runner_->trainable_elements()) + " trainable parameters");
  if (ranks_.size() > 1)
    log::info("data parallel: " + std::to_string(ranks_.size()) + " ranks, global batch " +
              std::to_string(ranks_.size() * accumulation_ * config_.per_device_train_batch_size) + " sequences");

  stop_signal = 0;
  struct sigaction action = {};
  struct sigaction previous[std::size(stop_signals)] = {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  for (size_t i = 0; i < std::size(stop_signals); i++) {
    sigaction(stop_signals[i], nullptr, &previous[i]);
    // `nohup vktune train` ignores SIGHUP on purpose: keep it ignored.
    if (stop_signals[i] != SIGHUP || previous[i].sa_handler != SIG_IGN) sigaction(stop_signals[i], &action, nullptr);
  }
  auto restore_signals = [&] {
    for (size_t i = 0; i < std::size(stop_signals); i++) sigaction(stop_signals[i], &previous[i], nullptr);
  };
  started_ = std::chrono::steady_clock::now();
  ProgressBar bar("train", max_steps_, start);
  RunState final_state = RunState::finished;
  int64_t step = start;
  bool early_stop = false;
  try {
    for (step = start + 1; step <= max_steps_; step++) {
      while (monitor_->pause_requested && !monitor_->stop_requested && stop_signal == 0) {
        monitor_->set_state(RunState::paused);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      monitor_->set_state(RunState::running);
      bool logging = step % config_.logging_steps == 0 || step == max_steps_ || step == start + 1;
      auto before = std::chrono::steady_clock::now();
      if (uint32_t flags = train_step(step, logging))
        stop_on_non_finite(step, flags, schedule_->learning_rate(scaler_.schedule_step(step)), plan_.settings.dtype);
      raise_test_signals(step);
      window_.add(std::chrono::duration<double>(std::chrono::steady_clock::now() - before).count(),
                  runner_->step_tokens(), logging);  // logging steps are the profiled ones
      double elapsed =
          elapsed_before_ + std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
      monitor_->set_progress(step, elapsed);
      if (logging) {
        log_step(step, elapsed);
        char extra[160];
        std::snprintf(extra, sizeof extra, "loss %.4f lr %.2e %.0f tok/s", last_loss_,
                      schedule_->learning_rate(scaler_.schedule_step(step)),
                      monitor_->snapshot().steps.back().tokens_per_second);
        bar.report(step, extra + metrics_summary(monitor_->snapshot().steps.back().extra));
      } else {
        bar.update(step);
      }
      const bool save_step = config_.save_steps > 0 && step % config_.save_steps == 0 && step < max_steps_;
      if (config_.eval_steps > 0 && step % config_.eval_steps == 0 && step < max_steps_) {
        monitor_->set_state(RunState::evaluating);
        early_stop = evaluate_and_log(step, elapsed, save_step);
      }
      bool stop = ranks_.any(monitor_->stop_requested || stop_signal != 0);  // all ranks stop at the same step
      if (monitor_->save_requested || stop || save_step) {
        monitor_->set_state(RunState::saving);
        save_checkpoint(step);
        monitor_->save_requested = false;
      }
      if (step_hook) step_hook(step);
      if (early_stop && !stop) {
        const BestModelState& best = best_->state();
        log::info("early stopping at step " + std::to_string(step) + ": " + best_->settings().metric +
                  " did not improve by more than " + std::to_string(best_->settings().threshold) + " in " +
                  std::to_string(best.patience_counter) + " evaluations (best " + std::to_string(*best.best_metric) +
                  " at step " + std::to_string(best.best_step) + ")");
        best_->keep(step, last_eval_);  // the run ends with these weights
        break;
      }
      if (stop) {
        final_state = RunState::stopped;
        log::info(std::string("stopped at step ") + std::to_string(step) + " (" +
                  (stop_signal != 0 ? strsignal(stop_signal) : "stop requested") +
                  "); resume with --resume-from-checkpoint latest");
        break;
      }
    }
  } catch (const std::exception& error) {
    restore_signals();
    monitor_->set_state(RunState::failed, error.what());
    try {
      write_run_json(RunState::failed);
    } catch (const std::exception& also) {  // e.g. the disk that failed the run is still full
      log::warn(std::string("could not mark run.json failed: ") + also.what());
    }
    throw;
  }
  restore_signals();
  bar.finish();
  TrainSummary summary;
  summary.steps = std::min(step, max_steps_);
  if (final_state == RunState::finished) {
    double elapsed =
        elapsed_before_ + std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    if (!eval_sets_.empty() && !early_stop) {
      monitor_->set_state(RunState::evaluating);
      evaluate_and_log(max_steps_, elapsed, true);
    }
    if (best_->settings().load_best) load_best_weights(std::min(step, max_steps_));
    if (ranks_.writer()) save_final_weights(trainable(), output_dir());
  }
  write_run_json(final_state);
  monitor_->set_state(final_state);
  summary.first_loss = first_loss_;
  summary.last_loss = last_loss_;
  summary.eval_loss = last_eval_;
  summary.output = output_dir();
  summary.plan = plan_;
  summary.measured = context_->ledger().snapshot();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  summary.tokens_per_second = seconds > 0 ? double(tokens_) / seconds : 0;
  summary.stop_signal = final_state == RunState::stopped ? stop_signal.load() : 0;
  summary.early_stopped = early_stop && final_state == RunState::finished;
  summary.best_checkpoint_step = best_->settings().load_best ? best_->state().best_kept_step : -1;
  return summary;
}

TrainSummary train(const TrainConfig& config, RunMonitor* monitor) {
  TrainingRun run(config, monitor);
  try {
    return run.run();
  } catch (const std::exception& error) {
    // Under mpirun the other ranks would wait in the next all-reduce (a sweep trial fails alone).
    if (!config.single_process) world().abort_all(error);
    throw;
  }
}

}  // namespace vkt::train
