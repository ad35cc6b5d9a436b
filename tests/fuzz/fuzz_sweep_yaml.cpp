// libFuzzer target: a sweep file (`vktune sweep SWEEP.yaml`), read and expanded into its trials
// as the command does before any trial is planned or run.
#include "engine/train/sweep.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto path = vkt::fuzz::write_scratch_file(data, size, "sweep.yaml");
  return vkt::fuzz::accept_user_errors([&] {
    vkt::train::SweepSpec spec = vkt::train::load_sweep_spec(path);
    spec.output_dir = "out";
    for (const auto& trial : vkt::train::plan_trials(spec)) (void)vkt::train::to_json(trial.config);
  });
}
