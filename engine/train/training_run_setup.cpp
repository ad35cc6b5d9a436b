#include "engine/train/prefix_tuning_run.hpp"
#include "engine/train/soft_prompt_run.hpp"
#include "engine/train/training_run.hpp"

#include "engine/model/gguf_model.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/plan/data_parallel.hpp"
#include "engine/train/long_context.hpp"

namespace vkt::train {

namespace fs = std::filesystem;
using kernels::DType;
using kernels::WeightFormat;

namespace {
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
  s.qat_format = c.qat;                      // --qat (engine/model/qat.hpp), blocks of 64 as vktune quantize's default
  s.activation_dtype = activation_dtype(c);  // --bf16 / --fp16
  s.pure_bf16 = c.pure_bf16;
  s.lora_r = static_cast<uint32_t>(c.lora_r);
  s.target_modules = model::parse_target_modules(c.target_modules, model);
  s.peft_type = c.peft_type;
  model::resolve_peft_targets(s, c.target_modules, model, c.model);                     // IA3, BitFit: no LoRA
  s.batch = static_cast<uint64_t>(c.per_device_train_batch_size) * preference_rows(c);  // DPO/ORPO pairs: 2 rows
  s.virtual_tokens = virtual_tokens(c);                       // a soft prompt's cells lengthen every row
  s.prompt_encoder_hidden = prompt_encoder_hidden(c, model);  // P-tuning's encoder
  s.prompt_encoder_lstm_layers = prompt_encoder_lstm_layers(c);
  s.seq_len = seq_len + s.virtual_tokens;
  s.prefix_tokens = prefix_tokens(c);                               // prefix tuning: keys/values only, no cells
  s.prefix_projection_hidden = prefix_projection_hidden(c, model);  // its encoder (--prefix-projection)
  s.keep_pruned_zeros = c.method == spec::Method::full && fs::exists(fs::path(c.model) / "pruning.json");
  if (s.keep_pruned_zeros && c.pure_bf16)
    throw UserError(c.model +
                        "/pruning.json: a pruned model's masks are applied to fp32 master weights, which "
                        "--pure-bf16 does not keep",
                    "drop --pure-bf16 (--bf16 keeps the masks), or finetune with LoRA");
  if (s.keep_pruned_zeros && c.shard_optimizer && (c.bf16 || c.fp16))
    throw UserError(c.model +
                        "/pruning.json: a pruned model's masks are applied to whole fp32 master weights, which "
                        "--shard-optimizer splits across the ranks",
                    "drop --shard-optimizer, or finetune the pruned model in fp32");
  s.s2_group = c.s2_attn ? static_cast<uint32_t>(s.seq_len / 4) : 0;  // checked by s2_group_size
  if (c.s2_attn) {  // training pads the rows to a multiple of 8 (s2_sequence_length): plan those
    s.seq_len = s2_sequence_length(c, static_cast<uint32_t>(seq_len));
    s.s2_group = static_cast<uint32_t>(s.seq_len / 4);
  }
  s.gradient_checkpointing = c.gradient_checkpointing;
  s.optimizer = spec::optimizer_update_rule(c.optim);
  s.offload_optimizer = c.offload_optimizer;
  // paged_adamw_* (HF's names) page as --paged-optimizer does: on the device while the budget allows.
  s.page_optimizer = c.paged_optimizer || spec::optimizer_is_paged(c.optim);
  if (!c.device_memory.empty()) s.paging_budget_bytes = parse_byte_size(c.device_memory);
  s.lora_dropout = static_cast<float>(c.lora_dropout);
  model::LoraSettings extras;
  model::parse_modules_to_save(c.modules_to_save, extras);
  if (model) model::check_modules_to_save(*model, extras.saved_norms, "--modules-to-save");
  s.save_embed_tokens = extras.save_embed_tokens;
  s.save_lm_head = extras.save_lm_head;
  s.saved_norms = extras.saved_norms;
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

void TrainingRun::prepare_data() {
  fs::path model_dir(config_.model);
  if (!fs::is_directory(model_dir) && !model::is_gguf_file(model_dir))
    throw UserError("--model " + config_.model + " is neither a folder nor a GGUF file",
                    "give an HF model folder with config.json, "
                    "*.safetensors and tokenizer.json, or a .gguf file");
  model_config_ = with_rope_scaling(model::load_model_config(model_dir), config_);
  if (!config_.rope_scaling.empty() && config_.method != spec::Method::full)
    log::warn(
        "--rope-scaling with an adapter: adapter_config.json cannot carry RoPE settings; for inference put "
        "these rope_parameters into the base's config.json (max_position_embeddings " +
        std::to_string(model_config_.max_position_embeddings) +
        "): " + model::to_json(model_config_)["rope_parameters"].dump());
  resolve_auto_dtype(config_, model_config_.torch_dtype);
  if (is_distill(config_)) check_same_tokenizer(model_dir, config_.teacher);
  tokenizer_ = std::make_unique<text::Tokenizer>(model::load_model_tokenizer(model_dir));
  model::check_tokenizer_fits(model_config_, tokenizer_->vocab_size(), model::tokenizer_location(model_dir));
  text::ChatFormat chat = model::load_model_chat_format(model_dir);
  TokenizerHooks hooks;
  hooks.encode = [this](const std::string& text) { return tokenizer_->encode(text, false); };
  hooks.add_bos = tokenizer_->adds_bos();
  hooks.bos_id = tokenizer_->bos_id().value_or(0);
  for (int64_t id : model_config_.eos_token_ids) hooks.eos_ids.push_back(static_cast<uint32_t>(id));
  if (hooks.eos_ids.empty() && tokenizer_->eos_id()) hooks.eos_ids.push_back(*tokenizer_->eos_id());

  FimSettings fim;  // --fim-rate: bigcode's fill-in-the-middle examples (fim.hpp)
  if (config_.fim_rate > 0) {
    fim = {config_.fim_rate, config_.fim_spm_rate, static_cast<uint64_t>(config_.seed),
           find_fim_tokens(*tokenizer_, config_.fim_tokens, model::tokenizer_location(model_dir))};
    log::info("fill-in-the-middle: rate " + std::to_string(config_.fim_rate) + ", SPM share " +
              std::to_string(config_.fim_spm_rate));
  }
  TokenizeReport report;
  const std::vector<DataSource> sources = parse_data_sources(config_.data);
  std::vector<int64_t> source_sizes;
  std::vector<double> source_weights;
  for (const DataSource& source : sources) {
    const uint32_t max_length = static_cast<uint32_t>(config_.max_length);
    auto examples =
        is_preference(config_) ? read_preference_data(source.path, chat, hooks, config_, report)
        : config_.fim_rate > 0
            ? fim_tokenize_examples(read_jsonl(source.path, chat), hooks, fim, max_length, source.path, report)
            : tokenize_examples(read_jsonl(source.path, chat), hooks, config_.prompt_loss_weight, max_length,
                                source.path, report);
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
  seq_len_ = s2_sequence_length(
      config_, choose_seq_len(train_examples_, static_cast<uint32_t>(config_.max_length), config_.packing));
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
  settings.virtual_tokens = virtual_tokens(config_);
  settings.seq_len = seq_len_ + settings.virtual_tokens;
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
  spec::RunSettings settings_for_plan = run_settings(config_, seq_len_, &shape);
  settings_for_plan.s2_group = s2_group_size(config_, model_config_, static_cast<uint32_t>(seq_len_));
  settings_for_plan.optimizer_shards = config_.shard_optimizer ? static_cast<uint32_t>(ranks_.size()) : 1;
  plan_ = plan::make_plan(shape, settings_for_plan);  // also checks --lora-r against the model
  if (config_.method != spec::Method::full) {
    lora_.rank = static_cast<uint32_t>(config_.lora_r);
    lora_.alpha = static_cast<float>(config_.lora_alpha);
    lora_.dropout = static_cast<float>(config_.lora_dropout);
    lora_.rslora = config_.use_rslora;
    lora_.targets = plan_.settings.target_modules;
    lora_.layers = plan_.settings.lora_layers;
    lora_.save_embed_tokens = plan_.settings.save_embed_tokens;
    lora_.save_lm_head = plan_.settings.save_lm_head;
    lora_.saved_norms = plan_.settings.saved_norms;
    lora_.token_indices = plan_.settings.trainable_token_indices;
    lora_.peft_type = plan_.settings.peft_type;
    lora_.ia3_targets = plan_.settings.ia3_targets;
    lora_.ia3_feedforward = plan_.settings.ia3_feedforward;
    set_soft_prompt(config_, lora_, plan_.settings.prompt_encoder_hidden);
    set_prefix_tuning(config_, lora_, plan_.settings.prefix_projection_hidden);
    model::check_token_indices(lora_.token_indices, plan_.shape.vocab, "--trainable-token-indices");
    if (!config_.adapter.empty()) {
      // Start from an existing adapter: its shape settings win over the flags.
      model::AdapterFile file = model::load_adapter_config(config_.adapter);
      if (file.settings.peft_type == spec::PeftType::p_tuning)
        throw UserError("--adapter " + config_.adapter + " is a P_TUNING adapter: PEFT saves the encoder's output only",
                        "resume the run from its checkpoint-N (it keeps the encoder), or train a new one");
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
      lora_.saved_norms = file.settings.saved_norms;
      lora_.token_indices = file.settings.token_indices;
      lora_.peft_type = file.settings.peft_type;
      lora_.ia3_targets = file.settings.ia3_targets;
      lora_.ia3_feedforward = file.settings.ia3_feedforward;
      if (file.settings.virtual_tokens != lora_.virtual_tokens)
        throw UserError("--adapter " + config_.adapter + " has " + std::to_string(file.settings.virtual_tokens) +
                            " virtual tokens, the run " + std::to_string(lora_.virtual_tokens),
                        "use the adapter's --peft-type and --num-virtual-tokens");
      lora_.virtual_tokens = file.settings.virtual_tokens;
      lora_.prefix_tokens = file.settings.prefix_tokens;
      if (file.settings.prefix_projection)
        throw UserError("--adapter " + config_.adapter +
                            " is a prefix_projection adapter: PEFT saved its projected "
                            "prefix, not the projection, so it cannot train further",
                        "train a new prefix, or use the adapter with generate / evaluate");
      lora_.prompt_init = file.settings.prompt_init;
      lora_.prompt_init_text = file.settings.prompt_init_text;
      lora_.prompt_tokenizer = file.settings.prompt_tokenizer;
      spec::RunSettings settings = plan_.settings;
      model::apply_adapter_settings(settings, lora_);  // lora_.dropout is --lora-dropout, as the plan's
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
  session_ =
      model::open_model(*context_, config_.model, plan_.settings, full ? nullptr : &lora_, &loading, &model_config_);
  loading.finish();
  plan_ = session_->plan;
  plan::add_data_parallel_staging(plan_, static_cast<uint32_t>(ranks_.size()));  // GradientBuckets' staging
  buffers_ = session_->buffers.get();
  transformer_ = session_->transformer.get();
  upload_prune_masks(*context_, *session_);
  if (!full) {
    if (!config_.adapter.empty())
      model::load_adapter_weights(*context_, *buffers_, plan_.shape, lora_, config_.adapter);
    else {
      model::init_adapter(*context_, *buffers_, plan_.shape, lora_, static_cast<uint64_t>(config_.seed));
      initial_lora_ =
          model::apply_lora_init(*context_, *session_, lora_, model::parse_lora_init(config_.init_lora_weights),
                                 static_cast<uint64_t>(config_.seed));
      context_->run([&](vk::Recorder& r) {
        transformer_->record_token_rows_init(r);
        transformer_->record_dora_init(r);
      });
      init_soft_prompt(*context_, *session_, lora_, *tokenizer_, static_cast<uint64_t>(config_.seed));
      init_prefix_tuning(*context_, *session_, lora_, static_cast<uint64_t>(config_.seed));
    }
  }
  if (is_distill(config_))  // before the step runner records the forward that reads the teacher
    teacher_ = open_teacher(*context_, *session_, distill_settings(config_));
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
  optimizer.bucket_cap_bytes = config_.ddp_bucket_cap_mb * 1024 * 1024;
  runner_ = std::make_unique<StepRunner>(*context_, *session_, optimizer);
  runner_->reset();
  if (runner_->sixteen_bit_weights().sharded_masters()) {  // ZeRO-1: the slice's masters, from the file's values
    if (model::is_gguf_file(config_.model)) {
      runner_->sixteen_bit_weights().load_sharded_masters(*context_,
                                                          model::GgufTensorSource(config_.model, model_config_));
    } else {
      const model::SafetensorsFolder folder(config_.model);
      runner_->sixteen_bit_weights().load_sharded_masters(*context_, model::SafetensorsSource(folder));
    }
  }
  scaler_ = LossScaler(config_.fp16);
  runner_->set_loss_scaler(&scaler_);
  if (is_preference(config_))
    preference_ =
        std::make_unique<PreferenceRunner>(*context_, *session_, *runner_, preference_settings(config_), &ranks_);
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
  // Distillation: the teacher's weights and forward activations share the device.
  const uint64_t teacher_bytes =
      is_distill(config_) ? teacher_plan(plan_.settings, distill_settings(config_)).device_bytes() : 0;
  if (teacher_bytes > 0)
    log::info("distillation teacher: " + format_bytes(double(teacher_bytes)) + " of device memory (weights + forward)");
  budget = budget > teacher_bytes ? budget - teacher_bytes : 1;
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

}  // namespace vkt::train
