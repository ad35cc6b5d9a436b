// libFuzzer target: config.json, parsed into a ModelConfig as every model-loading command does,
// then written back (to_json) and its RoPE frequencies computed.
#include "engine/model/config.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto path = vkt::fuzz::write_scratch_file(data, size, "config.json");
  return vkt::fuzz::accept_user_errors([&] {
    auto config = vkt::model::load_model_config(path);
    (void)vkt::model::to_json(config);
    (void)vkt::model::rope_inv_freq(config);
  });
}
