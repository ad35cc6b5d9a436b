// libFuzzer target: a training YAML config (`train --config`), applied over the defaults and
// validated as the command does before anything is loaded.
#include "engine/train/config.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto path = vkt::fuzz::write_scratch_file(data, size, "train.yaml");
  return vkt::fuzz::accept_user_errors([&] {
    vkt::train::TrainConfig config;
    vkt::train::apply_yaml_file(config, path.string());
    vkt::train::validate(config);
    (void)vkt::train::to_json(config);
  });
}
