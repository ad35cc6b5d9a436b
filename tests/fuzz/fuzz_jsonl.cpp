// libFuzzer target: a training JSONL file (text, prompt/completion, messages rendered with the
// default ChatML template), read as `train --data` does.
#include "engine/train/dataset.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto path = vkt::fuzz::write_scratch_file(data, size, "data.jsonl");
  return vkt::fuzz::accept_user_errors([&] { (void)vkt::train::read_jsonl(path.string(), vkt::text::ChatFormat{}); });
}
