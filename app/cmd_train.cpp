// `vktune train`: LoRA / QLoRA / full finetuning. With a display (or --dashboard) the training runs
// on its own thread and the dashboard window on the main thread; headless it prints a progress
// bar. At the end the dashboard is rendered to a PNG (--plot FILE, else OUTPUT_DIR/dashboard.png
// for headless runs).
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>

#include "app/commands.hpp"
#include "app/train_flags.hpp"
#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/log.hpp"
#include "engine/merge/gguf_export.hpp"
#include "engine/model/session.hpp"
#include "engine/plan/data_parallel.hpp"
#include "engine/plan/report.hpp"
#include "engine/train/advice.hpp"
#include "engine/train/distill.hpp"
#include "engine/train/distributed.hpp"
#include "engine/train/mixed_precision.hpp"
#include "engine/train/trainer.hpp"
#include "ui/offscreen.hpp"
#include "ui/window.hpp"

namespace vkt::app {

namespace {

void print_summary(const train::TrainSummary& summary) {
  std::printf("\ntrained %lld steps: loss %.4f -> %.4f, %.1f tokens/s\n", static_cast<long long>(summary.steps),
              summary.first_loss, summary.last_loss, summary.tokens_per_second);
  if (summary.eval_loss >= 0) std::printf("eval loss %.4f\n", summary.eval_loss);
  if (summary.early_stopped) std::printf("early stopping ended the run at step %lld\n", (long long)summary.steps);
  if (summary.best_checkpoint_step >= 0)
    std::printf("best weights (--load-best-model-at-end): step %lld\n", (long long)summary.best_checkpoint_step);
  std::printf("memory, planned vs measured (vktune plan predicts the planned column):\n%s",
              plan::format_plan_vs_measured(summary.plan, summary.measured).c_str());
  std::printf("output: %s\n", summary.output.c_str());
}

// The rules of thumb (train::hyperparameter_advice) as warnings on stderr, and for a full finetune
// that does not fit, LoRA and QLoRA with their planned bytes (stdout in text mode).
void print_plan_advice(const train::TrainConfig& config, const spec::RunSettings& settings,
                       const spec::ModelShape& shape, const std::string& torch_dtype, std::optional<uint64_t> budget,
                       bool as_json) {
  train::AdviceFacts facts;
  facts.pretraining_learning_rate = train::pretraining_rate(config.model);
  if (!config.data.empty()) facts.examples = train::count_data_examples(config.data);
  if (config.max_steps > 0 && facts.examples && *facts.examples > 0)
    facts.epochs = double(config.max_steps) * double(config.per_device_train_batch_size) *
                   double(config.gradient_accumulation_steps) / double(*facts.examples);
  else if (config.max_steps <= 0)
    facts.epochs = config.num_train_epochs;
  for (const std::string& line : train::hyperparameter_advice(config, facts)) log::warn("advice: " + line);
  if (!budget || settings.method != spec::Method::full) return;
  plan::MemoryPlan full = plan::make_plan(shape, settings);
  if (plan::judge(full, *budget).fits) return;
  std::vector<std::string> lines =
      train::lighter_method_advice(full, static_cast<uint32_t>(config.lora_r), torch_dtype, *budget);
  if (as_json) {
    for (const std::string& line : lines) log::warn("instead of full finetuning: " + line);
    return;
  }
  std::printf("Full finetuning does not fit; parameter-efficient instead:\n");
  for (const std::string& line : lines) std::printf("  %s\n", line.c_str());
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto* command =
      app.add_subcommand("train", "Finetune a model: LoRA, QLoRA or full (HF TrainingArguments flag names)");
  static TrainFlags flags;
  flags.add_to(*command);
  static std::string save_gguf_lora;
  static CLI::Option* save_gguf_lora_option =
      command
          ->add_option("--save-gguf-lora", save_gguf_lora,
                       "also write the final adapter as OUTPUT_DIR/adapter.gguf for llama.cpp / Ollama, in this "
                       "type: f32 | f16 (a bare flag) | bf16 | q8_0 (as vktune export --format gguf-lora)")
          ->expected(0, 1);
  command->footer(
      "Example:\n  vktune train --model examples/base --data data.jsonl --output-dir out --method qlora "
      "--lora-r 16 --learning-rate 2e-4 --max-steps 200\n\n"
      "Stopping: Ctrl-C (SIGINT), SIGTERM or SIGHUP finish the current step, save checkpoint-N, mark\n"
      "run.json \"stopped\" and exit 130, 143 or 129 (no final adapter); a second signal exits at once.\n"
      "Resume with the same flags plus --resume-from-checkpoint latest. A NaN/Inf loss or gradient, or a\n"
      "failed write, stops the run with exit 1 and run.json \"failed\"; the last checkpoint stays intact.\n\n"
      "Several GPUs or machines: mpirun -np N vktune train ... (data parallel; README: Several GPUs and machines).");
  command->callback([] {
    train::TrainConfig config = flags.resolve();
    train::validate(config);
    std::optional<merge::GgufOutType> gguf_lora;
    if (save_gguf_lora_option->count() > 0) {  // checked before the run, not after it
      gguf_lora =
          merge::gguf_outtype_from_flag(save_gguf_lora.empty() ? "f16" : save_gguf_lora, "--save-gguf-lora", true);
      if (config.method == spec::Method::full)
        throw UserError("--save-gguf-lora needs a LoRA adapter, but --method full trains every weight",
                        "export the trained model with vktune export --format gguf");
      if (config.peft_type != spec::PeftType::lora)
        throw UserError("--save-gguf-lora needs a LoRA adapter (llama.cpp's adapters hold LoRA factors only)",
                        "export the merged model with vktune export --format gguf after training");
    }
    // Under mpirun, rank 0 speaks for the run: the others log only warnings and draw nothing.
    const bool rank0 = train::world().writer();
    if (!rank0) {
      log::set_level(log::Level::warn);
      config.headless = true;
      config.dashboard = false;
      config.plot.clear();
    }
    bool window = config.dashboard || (!config.headless && ui::display_available());
    if (config.dashboard && !ui::display_available())
      throw UserError("--dashboard needs a display (DISPLAY or WAYLAND_DISPLAY)",
                      "run with --headless; `vktune dashboard OUTPUT_DIR` can watch it from another machine");
    train::RunMonitor monitor;
    train::TrainSummary summary;
    if (!window) {
      summary = train::train(config, &monitor);
      if (config.plot.empty() && rank0)
        config.plot = (std::filesystem::path(config.output_dir) / "dashboard.png").string();
    } else {
      std::exception_ptr failure;
      std::thread worker([&] {
        try {
          summary = train::train(config, &monitor);
        } catch (...) {
          failure = std::current_exception();
          monitor.set_state(train::RunState::failed);
        }
      });
      ui::WindowOptions options;
      options.title = "vktune: " + config.output_dir;
      // Automation (tests, documentation): save the window's last frame and close with the run.
      if (const char* screenshot = std::getenv("VKT_DASHBOARD_SCREENSHOT")) {
        options.screenshot_png = screenshot;
        options.close_when_run_ends = true;
      }
      ui::run_dashboard_window(monitor, options);
      worker.join();
      if (failure) std::rethrow_exception(failure);
    }
    if (!config.plot.empty()) {
      ui::render_dashboard_png(monitor.snapshot(), config.plot, 1280, 800);
      log::info("dashboard written to " + config.plot);
    }
    if (gguf_lora && !summary.stop_signal && rank0) {
      merge::GgufLoraExportOptions options;
      options.adapter = config.output_dir;
      options.model = config.model;
      options.output = std::filesystem::path(config.output_dir) / "adapter.gguf";
      options.outtype = *gguf_lora;
      const merge::GgufExportSummary exported = merge::export_gguf_lora(options);
      log::info("GGUF LoRA adapter written to " + options.output.string() + " (Ollama: " + exported.modelfile.string() +
                ")");
    }
    if (rank0) print_summary(summary);
    // A stopped run is not a finished one: `train && export` must not go on. Shell conventions.
    if (summary.stop_signal) {
      std::fflush(stdout);
      std::exit(128 + summary.stop_signal);
    }
  });
}

void add_plan_command(CLI::App& app) {
  auto* command =
      app.add_subcommand("plan", "Tell before a run whether it fits, category by category (needs only config.json)");
  static TrainFlags flags;
  flags.add_to(*command);
  static bool as_json = false;
  static int64_t seq_len = 0;
  static int64_t world_size = 1;
  command->add_flag("--json", as_json, "print JSON instead of the table");
  command->add_option("--world-size", world_size,
                      "ranks of `mpirun -np N vktune train`: the plan is one rank's memory (its gradient buckets' host "
                      "staging, ddp.buckets; with --shard-optimizer its 1/N of the optimizer states)");
  command->add_option("--seq-len", seq_len, "tokens per sequence (default: --max-length)");
  command->callback([] {
    train::TrainConfig config = flags.resolve();
    if (config.model.empty()) throw UserError("--model is required", "give a model folder or its config.json");
    train::validate_precision_flags(config);
    train::validate_shard_optimizer(config);
    if (world_size < 1) throw UserError("--world-size must be at least 1", "the -np of mpirun, e.g. --world-size 2");
    model::ModelConfig model_config = model::load_model_config(config.model);
    train::resolve_auto_dtype(config, model_config.torch_dtype);
    uint64_t tokens = seq_len > 0 ? static_cast<uint64_t>(seq_len) : static_cast<uint64_t>(config.max_length);
    const spec::ModelShape shape = model::model_shape(model_config);
    spec::RunSettings settings = train::run_settings(config, tokens, &shape);
    settings.optimizer_shards = config.shard_optimizer ? static_cast<uint32_t>(world_size) : 1;
    std::optional<uint64_t> budget;
    std::string device_name;
    if (!config.device_memory.empty()) {
      budget = parse_byte_size(config.device_memory);
    } else if (config.device >= 0) {
      auto devices = vk::list_devices();
      if (config.device >= static_cast<int64_t>(devices.size()))
        throw UserError("--device " + std::to_string(config.device) + " does not exist", "`vktune devices` lists them");
      const auto& caps = devices[static_cast<size_t>(config.device)];
      uint64_t best = 0;
      for (const auto& heap : caps.heaps)
        if (heap.device_local) best = std::max(best, heap.budget ? heap.budget : heap.size);
      budget = best;
      device_name = caps.name;
    }
    if (budget) settings.paging_budget_bytes = *budget;  // --paged-optimizer pages against it
    plan::PlanReport report = plan::make_report(model::model_shape(model_config), settings, budget, device_name);
    plan::add_data_parallel_staging(report, static_cast<uint32_t>(world_size));  // ddp.buckets, one rank of N
    std::printf("%s\n", as_json ? plan::report_json(report).c_str() : plan::format_report(report).c_str());
    print_plan_advice(config, settings, model::model_shape(model_config), model_config.torch_dtype, budget, as_json);
    if (train::is_distill(config) && !as_json) {  // the teacher shares the device; train's pre-flight adds it
      const plan::MemoryPlan teacher = train::teacher_plan(settings, train::distill_settings(config));
      const uint64_t weights =
          teacher.bytes(vk::Category::base_weights) + teacher.bytes(vk::Category::quantized_weights);
      std::printf("distillation teacher %s: +%s of device memory (weights %s, forward activations and workspace %s)\n",
                  config.teacher.c_str(), format_bytes(double(teacher.device_bytes())).c_str(),
                  format_bytes(double(weights)).c_str(),
                  format_bytes(double(teacher.device_bytes() - weights)).c_str());
    }
  });
}

}  // namespace vkt::app
