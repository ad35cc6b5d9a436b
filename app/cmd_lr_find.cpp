// `vktune lr-find --model DIR --data FILE --output-dir DIR [train flags] [--end-lr 1e-2 --num-steps 200]`:
// the learning-rate range test (engine/train/lr_find.hpp), printed and drawn into a PNG.
#include <cstdio>
#include <cstdlib>

#include "app/commands.hpp"
#include "app/train_flags.hpp"
#include "engine/base/log.hpp"
#include "engine/train/lr_find.hpp"
#include "ui/lr_find_view.hpp"
#include "ui/offscreen.hpp"

namespace vkt::app {

void add_lr_find_command(CLI::App& app) {
  auto* command = app.add_subcommand(
      "lr-find", "Learning-rate range test: loss vs an exponentially growing rate, with a suggested rate");
  static TrainFlags flags;
  flags.add_to(*command);
  static train::LrFindSettings settings;
  static double pretraining_lr = 0;
  static std::string png;
  command->add_option("--start-lr", settings.start_lr, "the first step's learning rate")->capture_default_str();
  command->add_option("--end-lr", settings.end_lr, "the last step's learning rate")->capture_default_str();
  command->add_option("--num-steps", settings.steps, "steps of the ramp (one loss per step)")->capture_default_str();
  command->add_option("--smoothing", settings.smoothing, "weight of the debiased EMA of the loss")
      ->capture_default_str();
  command
      ->add_option("--divergence-factor", settings.divergence_factor,
                   "stop once the smoothed loss exceeds this x its minimum")
      ->capture_default_str();
  command->add_option("--pretraining-lr", pretraining_lr,
                      "the base's pretraining learning rate (default: read from the model folder's run.json, "
                      "trainer_state.json or training_args.json)");
  command->add_option("--png", png, "draw the curve here (default: OUTPUT_DIR/lr_find.png)");
  command->footer(
      "Every train flag applies (model, data, method, LoRA, batch, ...); the learning rate, schedule,\n"
      "evaluation and checkpointing are the test's own. Writes OUTPUT_DIR/lr_find.json (curve and\n"
      "suggestion; `vktune dashboard OUTPUT_DIR` shows it) and the PNG. The suggestion is the steepest\n"
      "descent of the smoothed loss against log10(lr); the safe value is the rate at the lowest loss / 10.\n"
      "Warns when the suggestion leaves the book's range [1e-7, 1e-3] or exceeds the base's pretraining rate.");
  command->callback([] {
    train::TrainConfig config = flags.resolve();  // train() validates it first thing
    std::optional<train::PretrainingLr> pretraining =
        pretraining_lr > 0 ? std::optional(train::PretrainingLr{pretraining_lr, "--pretraining-lr"})
                           : train::read_pretraining_lr(config.model);
    train::LrFindResult result = train::run_lr_find(config, settings, pretraining);
    std::printf("\n%s", train::format_lr_find(result).c_str());
    std::filesystem::path picture =
        png.empty() ? std::filesystem::path(config.output_dir) / "lr_find.png" : std::filesystem::path(png);
    ui::LrFindPanelState state;
    ui::render_png([&] { ui::draw_lr_find_window(result, state); }, picture, 1100, 650);
    std::printf("curve: %s, %s\n", result.json_file.string().c_str(), picture.string().c_str());
    if (result.stop_signal) {
      std::fflush(stdout);
      std::exit(128 + result.stop_signal);
    }
  });
}

}  // namespace vkt::app
