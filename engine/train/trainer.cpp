#include "engine/train/trainer.hpp"

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
// --layers-to-transform "0,2": layer indices; UserError naming a bad item.
std::vector<uint32_t> parse_layer_list(const std::string& list) {
  std::vector<uint32_t> layers;
  std::stringstream stream(list);
  for (std::string item; std::getline(stream, item, ',');) {
    size_t used = 0;
    unsigned long value = 0;
    try {
      value = std::stoul(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || item[0] == '-' || value > 0xffffu)
      throw UserError("--layers-to-transform: '" + item + "' is not a layer index", "e.g. --layers-to-transform 0,1,2");
    layers.push_back(static_cast<uint32_t>(value));
  }
  return layers;
}
}  // namespace

void set_step_hook(std::function<void(int64_t)> hook) { step_hook = std::move(hook); }


spec::RunSettings run_settings(const TrainConfig& c, uint64_t seq_len, const spec::ModelShape* model) {
  spec::RunSettings s;
  s.method = c.method;
  s.dtype = base_dtype(c.dtype);
  s.base_format = c.quant;
  if (s.base_format == WeightFormat::f32)  // unquantized base: stored in --dtype
    s.base_format = s.dtype == DType::f16    ? WeightFormat::f16
                    : s.dtype == DType::bf16 ? WeightFormat::bf16
                                             : WeightFormat::f32;
  if (s.method == spec::Method::qlora) s.base_format = WeightFormat::nf4;
  s.double_quant = c.double_quant;
  s.activation_dtype = activation_dtype(c);  // --bf16 / --fp16
  s.pure_bf16 = c.pure_bf16;
  s.lora_r = static_cast<uint32_t>(c.lora_r);
  s.target_modules = model::parse_target_modules(c.target_modules, model);
  s.peft_type = c.peft_type;
  model::resolve_peft_targets(s, c.target_modules, model, c.model);                     // IA3, BitFit: no LoRA
  s.batch = static_cast<uint64_t>(c.per_device_train_batch_size) * preference_rows(c);  // DPO/ORPO pairs: 2 rows
  s.seq_len = seq_len;
  s.gradient_checkpointing = c.gradient_checkpointing;
  s.optimizer = spec::optimizer_update_rule(c.optim);
  s.offload_optimizer = c.offload_optimizer;
  // paged_adamw_* (HF's names) page as --paged-optimizer does: on the device while the budget allows.
  s.page_optimizer = c.paged_optimizer || spec::optimizer_is_paged(c.optim);
  if (!c.device_memory.empty()) s.paging_budget_bytes = parse_byte_size(c.device_memory);
  s.lora_dropout = static_cast<float>(c.lora_dropout);
  model::LoraSettings extras;
  model::parse_modules_to_save(c.modules_to_save, extras);
  s.save_embed_tokens = extras.save_embed_tokens;
  s.save_lm_head = extras.save_lm_head;
  s.trainable_token_indices = model::parse_token_indices(c.trainable_token_indices);
  if (!c.layers_to_transform.empty()) {
    for (uint32_t layer : parse_layer_list(c.layers_to_transform)) {
      if (model && layer >= model->layers)
        throw UserError("--layers-to-transform " + c.layers_to_transform + ": layer " + std::to_string(layer) +
                            " does not exist, the model has " + std::to_string(model->layers),
                        "layers are numbered 0.." + std::to_string(model ? model->layers - 1 : 0));
      s.lora_layers.push_back(layer);
    }
    std::sort(s.lora_layers.begin(), s.lora_layers.end());
    s.lora_layers.erase(std::unique(s.lora_layers.begin(), s.lora_layers.end()), s.lora_layers.end());
  }
  // A GGUF base keeps its own types (--quant gguf, its default): plan each weight at its stored size.
  if (model && model::is_gguf_file(c.model)) model::resolve_gguf_formats(c.model, model::load_model_config(c.model), s);
  return s;
}

namespace {

std::string now_iso8601() {
  std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return text;
}

class TrainingRun {
 public:
  TrainingRun(const TrainConfig& config, RunMonitor* monitor) : config_(config), monitor_(monitor) {}
  TrainSummary run();

 private:
  void prepare_data();
  void prepare_device();
  uint64_t device_budget() const;  // --device-memory, else the device's VK_EXT_memory_budget (0: unknown)
  void preflight();
  int64_t resume();
  uint32_t train_step(int64_t step, bool profile);  // the step's non-finite flags
  void log_step(int64_t step, double elapsed);
  double evaluate(const std::vector<TokenizedExample>& examples);
  // Evaluates, logs the result and tells the best-model tracker (kept: a checkpoint is saved at
  // this step); true when early stopping asks the run to stop.
  bool evaluate_and_log(int64_t step, double elapsed, bool kept);
  void load_best_weights(int64_t final_step);
  TrainableState trainable() const;  // what checkpoints save and restore
  void save_checkpoint(int64_t step);
  void write_run_json(RunState state);
  void append_metrics(const std::string& line);
  fs::path output_dir() const { return fs::path(config_.output_dir); }

  TrainConfig config_;
  RunMonitor* monitor_;
  // Data parallel (mpirun): rank 0 alone writes the output folder. A sweep trial trains alone.
  Communicator& ranks_ = config_.single_process ? single_process() : world();
  RunMonitor own_monitor_;
  model::ModelConfig model_config_;
  std::unique_ptr<text::Tokenizer> tokenizer_;
  std::vector<TokenizedExample> train_examples_;
  std::vector<std::pair<EvalSet, std::vector<TokenizedExample>>> eval_sets_;  // --eval-data, in order
  std::unique_ptr<DataMixture> mixture_;                                      // --data FILE:weight,...
  std::unique_ptr<Batcher> batcher_;
  uint32_t seq_len_ = 0;
  int64_t max_steps_ = 0, accumulation_ = 1;
  plan::MemoryPlan plan_;
  std::unique_ptr<Schedule> schedule_;
  LossScaler scaler_{false};  // --fp16's dynamic loss scale (set up in prepare_device)
  RunInfo info_;

  std::unique_ptr<vk::Context> context_;
  std::unique_ptr<model::ModelSession> session_;
  model::BufferSet* buffers_ = nullptr;
  model::Transformer* transformer_ = nullptr;
  model::LoraSettings lora_;
  std::unique_ptr<StepRunner> runner_;
  std::unique_ptr<PreferenceRunner> preference_;  // --objective dpo/orpo
  std::unique_ptr<BestModelTracker> best_;

  // Progress.
  int64_t tokens_ = 0, window_tokens_ = 0, window_steps_ = 0;
  double window_seconds_ = 0, elapsed_before_ = 0;
  std::chrono::steady_clock::time_point started_;
  double first_loss_ = NAN, last_loss_ = NAN, last_eval_ = -1;
};

void TrainingRun::prepare_data() {
  fs::path model_dir(config_.model);
  if (!fs::is_directory(model_dir) && !model::is_gguf_file(model_dir))
    throw UserError("--model " + config_.model + " is neither a folder nor a GGUF file",
                    "give an HF model folder with config.json, "
                    "*.safetensors and tokenizer.json, or a .gguf file");
  model_config_ = model::load_model_config(model_dir);
  resolve_auto_dtype(config_, model_config_.torch_dtype);
  tokenizer_ = std::make_unique<text::Tokenizer>(model::load_model_tokenizer(model_dir));
  model::check_tokenizer_fits(model_config_, tokenizer_->vocab_size(), model::tokenizer_location(model_dir));
  text::ChatFormat chat = model::load_model_chat_format(model_dir);
  TokenizerHooks hooks;
  hooks.encode = [this](const std::string& text) { return tokenizer_->encode(text, false); };
  hooks.add_bos = tokenizer_->adds_bos();
  hooks.bos_id = tokenizer_->bos_id().value_or(0);
  for (int64_t id : model_config_.eos_token_ids) hooks.eos_ids.push_back(static_cast<uint32_t>(id));
  if (hooks.eos_ids.empty() && tokenizer_->eos_id()) hooks.eos_ids.push_back(*tokenizer_->eos_id());

  TokenizeReport report;
  const std::vector<DataSource> sources = parse_data_sources(config_.data);
  std::vector<int64_t> source_sizes;
  std::vector<double> source_weights;
  for (const DataSource& source : sources) {
    const uint32_t max_length = static_cast<uint32_t>(config_.max_length);
    auto examples = is_preference(config_)
                        ? read_preference_data(source.path, chat, hooks, config_, report)
                        : tokenize_examples(read_jsonl(source.path, chat), hooks, config_.prompt_loss_weight,
                                            max_length, source.path, report);
    if (examples.empty() && is_mixture(sources))
      throw UserError("--data: " + source.path + " has no usable examples", "drop it from the mixture");
    source_sizes.push_back(static_cast<int64_t>(examples.size()));
    source_weights.push_back(source.weight);
    std::move(examples.begin(), examples.end(), std::back_inserter(train_examples_));
  }
  log::info("data: " + std::to_string(report.examples) + " examples, " + std::to_string(report.tokens) + " tokens" +
            (report.truncated ? ", " + std::to_string(report.truncated) + " truncated to --max-length " +
                                    std::to_string(config_.max_length)
                              : ""));
  seq_len_ = choose_seq_len(train_examples_, static_cast<uint32_t>(config_.max_length), config_.packing);
  for (const EvalSet& set : parse_eval_sets(config_.eval_data)) {
    TokenizeReport eval_report;
    auto eval_parsed = read_jsonl(set.path, chat);
    eval_sets_.push_back({set, tokenize_examples(eval_parsed, hooks, config_.prompt_loss_weight, seq_len_, set.path,
                                                 eval_report, false)});
  }
  if (best_->settings().active() && std::none_of(eval_sets_.begin(), eval_sets_.end(), [&](const auto& set) {
        return set.first.metric() == best_->settings().metric;
      })) {
    std::string metrics;
    for (const auto& set : eval_sets_) metrics += (metrics.empty() ? "" : ", ") + set.first.metric();
    throw UserError("--metric-for-best-model " + best_->settings().metric + " is not among the evaluation metrics (" +
                        metrics + ")",
                    "pick one of them: --metric-for-best-model " + eval_sets_.front().first.metric());
  }
  BatcherSettings settings;
  settings.batch = static_cast<uint32_t>(config_.per_device_train_batch_size);
  settings.seq_len = seq_len_;
  settings.packing = config_.packing;
  settings.shuffle = config_.shuffle;
  settings.seed = static_cast<uint64_t>(config_.seed);
  settings.pad_id =
      static_cast<uint32_t>(model_config_.pad_token_id.value_or(hooks.eos_ids.empty() ? 0 : hooks.eos_ids[0]));
  if (is_mixture(sources)) {
    mixture_ = std::make_unique<DataMixture>(source_sizes, source_weights, static_cast<uint64_t>(config_.seed));
    std::string counts;
    for (size_t i = 0; i < sources.size(); i++)
      counts += (i ? ", " : "") + sources[i].path + " " + std::to_string(mixture_->per_epoch()[i]) + " of " +
                std::to_string(source_sizes[i]);
    log::info("data mixture, examples per epoch: " + counts);
    settings.epoch_examples = [mixture = mixture_.get()](int64_t epoch) { return mixture->epoch(epoch); };
  }
  if (preference_rows(config_) == 2) batch_in_pairs(settings, train_examples_.size(), config_.shuffle);
  batcher_ = std::make_unique<Batcher>(train_examples_, settings);
  batcher_->shard(static_cast<uint32_t>(ranks_.rank()), static_cast<uint32_t>(ranks_.size()));
  accumulation_ = config_.gradient_accumulation_steps;
  // HF: update steps per epoch = micro-batches // accumulation (at least 1).
  int64_t steps_per_epoch = std::max<int64_t>(1, batcher_->micro_batches_per_epoch() / accumulation_);
  max_steps_ = config_.max_steps > 0
                   ? config_.max_steps
                   : static_cast<int64_t>(std::ceil(config_.num_train_epochs * double(steps_per_epoch)));
  AdviceFacts facts{pretraining_rate(model_dir), static_cast<int64_t>(train_examples_.size()),
                    double(max_steps_) / double(steps_per_epoch)};
  for (const std::string& line : hyperparameter_advice(config_, facts)) log::warn("advice: " + line);

  ScheduleSettings schedule;
  schedule.type = config_.lr_scheduler_type;
  schedule.peak_lr = config_.learning_rate;
  schedule.max_steps = max_steps_;
  schedule.warmup_steps = resolve_warmup_steps(config_.warmup_steps, max_steps_);
  apply_schedule_kwargs(schedule, config_.lr_scheduler_kwargs, "--lr-scheduler-kwargs");
  schedule_ = std::make_unique<Schedule>(schedule);

  const spec::ModelShape shape = model::model_shape(model_config_);
  plan_ = plan::make_plan(shape, run_settings(config_, seq_len_, &shape));  // also checks --lora-r against the model
  if (config_.method != spec::Method::full) {
    lora_.rank = static_cast<uint32_t>(config_.lora_r);
    lora_.alpha = static_cast<float>(config_.lora_alpha);
    lora_.dropout = static_cast<float>(config_.lora_dropout);
    lora_.rslora = config_.use_rslora;
    lora_.targets = plan_.settings.target_modules;
    lora_.layers = plan_.settings.lora_layers;
    lora_.save_embed_tokens = plan_.settings.save_embed_tokens;
    lora_.save_lm_head = plan_.settings.save_lm_head;
    lora_.token_indices = plan_.settings.trainable_token_indices;
    lora_.peft_type = plan_.settings.peft_type;
    lora_.ia3_targets = plan_.settings.ia3_targets;
    lora_.ia3_feedforward = plan_.settings.ia3_feedforward;
    model::check_token_indices(lora_.token_indices, plan_.shape.vocab, "--trainable-token-indices");
    if (!config_.adapter.empty()) {
      // Start from an existing adapter: its shape settings win over the flags.
      model::AdapterFile file = model::load_adapter_config(config_.adapter);
      if (file.settings.rank != lora_.rank || file.settings.targets != lora_.targets)
        log::warn("--adapter " + config_.adapter + " has r=" + std::to_string(file.settings.rank) +
                  " and its own target_modules: using those");
      lora_.rank = file.settings.rank;
      lora_.alpha = file.settings.alpha;
      lora_.rslora = file.settings.rslora;
      lora_.targets = file.settings.targets;
      lora_.layers = file.settings.layers;
      lora_.save_embed_tokens = file.settings.save_embed_tokens;
      lora_.save_lm_head = file.settings.save_lm_head;
      lora_.token_indices = file.settings.token_indices;
      lora_.peft_type = file.settings.peft_type;
      lora_.ia3_targets = file.settings.ia3_targets;
      lora_.ia3_feedforward = file.settings.ia3_feedforward;
      spec::RunSettings settings = plan_.settings;
      settings.lora_r = lora_.rank;
      settings.target_modules = lora_.targets;
      settings.lora_layers = lora_.layers;
      settings.save_embed_tokens = lora_.save_embed_tokens;
      settings.save_lm_head = lora_.save_lm_head;
      settings.trainable_token_indices = lora_.token_indices;
      settings.peft_type = lora_.peft_type;
      settings.ia3_targets = lora_.ia3_targets;
      settings.ia3_feedforward = lora_.ia3_feedforward;
      plan_ = plan::make_plan(model::model_shape(model_config_), settings);
    }
  }
}

void TrainingRun::prepare_device() {
  vk::ContextOptions options;
  options.device_index = static_cast<int>(device_for_rank(config_.device, ranks_.size(), ranks_.local_rank(),
                                                          ranks_.size() > 1 ? vk::list_devices().size() : 0));
  context_ = std::make_unique<vk::Context>(options);
  context_->ledger().reset_peaks();
  if (plan_.settings.page_optimizer && plan_.settings.paging_budget_bytes == 0) {
    spec::RunSettings settings = plan_.settings;
    settings.paging_budget_bytes = device_budget();
    plan_ = plan::make_plan(plan_.shape, settings);
  }
  if (plan_.settings.page_optimizer) {
    uint64_t paged = plan_.bytes(vk::Category::optimizer_state, vk::MemoryKind::offload);
    log::info("paged optimizer: " + format_bytes(double(paged)) + " of " +
              format_bytes(double(plan_.bytes(vk::Category::optimizer_state))) +
              " optimizer states in host memory (budget " + format_bytes(double(plan_.settings.paging_budget_bytes)) +
              ")");
  }
  preflight();
  int64_t tensors = 2 + model_config_.num_hidden_layers * static_cast<int64_t>(spec::module_count);
  ProgressBar loading("load", tensors);
  const bool full = plan_.settings.method == spec::Method::full;
  session_ = model::open_model(*context_, config_.model, plan_.settings, full ? nullptr : &lora_, &loading);
  loading.finish();
  plan_ = session_->plan;
  buffers_ = session_->buffers.get();
  transformer_ = session_->transformer.get();
  if (!full) {
    if (!config_.adapter.empty())
      model::load_adapter_weights(*context_, *buffers_, plan_.shape, lora_, config_.adapter);
    else {
      model::init_adapter(*context_, *buffers_, plan_.shape, lora_, static_cast<uint64_t>(config_.seed));
      context_->run([&](vk::Recorder& r) { transformer_->record_token_rows_init(r); });
    }
  }
  OptimizerSettings optimizer;
  optimizer.optimizer = plan_.settings.optimizer;
  optimizer.beta1 = config_.adam_beta1;
  optimizer.beta2 = config_.adam_beta2;
  optimizer.epsilon = config_.adam_epsilon;
  optimizer.weight_decay = config_.weight_decay;
  optimizer.loraplus_lr_ratio = config_.loraplus_lr_ratio;
  optimizer.momentum = config_.momentum;
  optimizer.max_grad_norm = config_.max_grad_norm;
  optimizer.seed = static_cast<uint32_t>(config_.seed);
  optimizer.communicator = &ranks_;
  optimizer.deterministic = config_.deterministic;
  runner_ = std::make_unique<StepRunner>(*context_, *session_, optimizer);
  runner_->reset();
  scaler_ = LossScaler(config_.fp16);
  runner_->set_loss_scaler(&scaler_);
  if (is_preference(config_))
    preference_ = std::make_unique<PreferenceRunner>(*context_, *session_, *runner_, preference_settings(config_));
}

// Refuses, before the model loads, a run whose plan exceeds the device's memory budget, with the
// planner's advice (the run would otherwise swap or die at allocation, minutes in).
uint64_t TrainingRun::device_budget() const {
  if (!config_.device_memory.empty()) return parse_byte_size(config_.device_memory);
  uint64_t budget = 0;
  for (const auto& heap : context_->memory_heaps())
    if (heap.device_local) budget = std::max(budget, heap.budget ? heap.budget : heap.size);
  return budget;
}

void TrainingRun::preflight() {
  uint64_t budget = device_budget();
  if (config_.no_preflight || budget == 0) return;
  plan::Verdict verdict = plan::judge(plan_, budget);
  if (verdict.fits) return;
  std::string advice;
  for (const auto& line : verdict.advice) advice += "\n  - " + line;
  for (const auto& line : lighter_method_advice(plan_, static_cast<uint32_t>(config_.lora_r), model_config_.torch_dtype,
                                                verdict.available))
    advice += "\n  - instead of full finetuning, " + line;
  throw UserError("the memory plan needs " + format_bytes(double(verdict.required)) + " of device memory, " +
                      context_->caps().name + " has " + format_bytes(double(verdict.available)) +
                      " (`vktune plan` with the same flags shows every category)",
                  "what to change, cheapest first:" + advice + "\n  or --no-preflight to start anyway");
}

uint32_t TrainingRun::train_step(int64_t step, bool profile) {
  // All micro-batches of the step first: the loss is normalised by Σw over all of them.
  std::vector<MicroBatch> micro_batches;
  for (int64_t i = 0; i < accumulation_; i++) micro_batches.push_back(batcher_->next());
  const double lr = schedule_->learning_rate(scaler_.schedule_step(step));
  uint32_t flags = preference_ ? preference_->step(step, lr, micro_batches, profile)
                               : runner_->step(step, lr, micro_batches, profile);
  tokens_ += runner_->step_tokens();  // over all ranks
  window_tokens_ += runner_->step_tokens();
  window_steps_++;
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
  m.loss = window_steps_ ? window_loss / double(window_steps_) : 0;
  m.learning_rate = schedule_->learning_rate(scaler_.schedule_step(step));
  m.grad_norm = device_state.grad_norm;
  m.loss_scale = scaler_.enabled() ? scaler_.scale() : 0;
  m.skipped_steps = scaler_.skipped_steps();
  if (preference_) m.extra = preference_->take_metrics();
  m.step_seconds = window_steps_ ? window_seconds_ / double(window_steps_) : 0;
  m.tokens_per_second = window_seconds_ > 0 ? double(window_tokens_) / window_seconds_ : 0;
  m.elapsed_seconds = elapsed;
  m.tokens = tokens_;
  vk::LedgerSnapshot ledger = context_->ledger().snapshot();
  for (size_t c = 0; c < vk::category_count; c++) m.memory_bytes[c] = ledger.category_current(vk::Category(c));
  m.offloaded_optimizer_bytes = ledger.current[size_t(vk::Category::optimizer_state)][size_t(vk::MemoryKind::offload)];
  m.rank_step_seconds = ranks_.gather(m.step_seconds);  // a collective: every rank logs the same steps
  m.all_reduce_seconds = window_steps_ ? runner_->take_all_reduce_seconds() / double(window_steps_) : 0;
  append_metrics(step_to_json_line(m));
  if (!kernel_times.empty()) append_metrics(kernels_to_json_line(step, kernel_times));
  monitor_->push_step(m);
  monitor_->set_kernels(kernel_times);
  if (std::isnan(first_loss_)) first_loss_ = m.loss;
  last_loss_ = m.loss;
  window_steps_ = 0;
  window_tokens_ = 0;
  window_seconds_ = 0;
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
  state.trainable_names = runner_->trainable_names();
  state.model_config = &model_config_;
  state.base_model = config_.model;
  return state;
}

void TrainingRun::save_checkpoint(int64_t step) {
  if (!ranks_.writer()) return;  // every rank holds the same weights and optimizer states
  TrainerState state;
  state.step = step;
  state.max_steps = max_steps_;
  state.position = batcher_->position();
  state.tokens = tokens_;
  state.elapsed_s =
      elapsed_before_ + std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  context_->download(buffers_->buffer("loss.window"), &state.window_loss, 0, 4);
  state.window_steps = window_steps_;
  state.window_tokens = window_tokens_;
  state.window_seconds = window_seconds_;
  state.seed = config_.seed;
  state.data = config_.data;
  state.method = spec::method_name(config_.method);
  state.best = best_->state();
  if (scaler_.enabled()) state.loss_scaler = scaler_.state();
  train::save_checkpoint(trainable(), state, output_dir());
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
  window_steps_ = state.window_steps;
  window_tokens_ = state.window_tokens;
  window_seconds_ = state.window_seconds;
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
      window_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - before).count();
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

}  // namespace

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
