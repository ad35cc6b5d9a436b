// libFuzzer target: tokenizer.json, loaded as Tokenizer::load does, then used: encode a text
// that touches the usual paths (words, digits, accents, spaces, a special token), decode it back.
#include "engine/text/tokenizer.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto path = vkt::fuzz::write_scratch_file(data, size, "tokenizer.json");
  return vkt::fuzz::accept_user_errors([&] {
    auto tokenizer = vkt::text::Tokenizer::load(path);
    auto ids = tokenizer.encode("Hello  world 123, héllo\n\t<s>naïve ⅻ 日本", true);
    ids.push_back(0);
    ids.push_back(1u << 30);  // an id no tokenizer knows: skipped
    (void)tokenizer.decode(ids);
  });
}
