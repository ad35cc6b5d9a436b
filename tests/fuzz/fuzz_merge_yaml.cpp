// libFuzzer target: a mergekit YAML config, parsed and validated as `vktune merge` does before it
// opens any model (model references are resolved against a folder that does not exist).
#include <string>

#include "engine/merge/config.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  return vkt::fuzz::accept_user_errors(
      [&] { (void)vkt::merge::parse_merge_config(text, "merge.yaml", "/nonexistent-vkt-fuzz"); });
}
