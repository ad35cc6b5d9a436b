// libFuzzer target: a .gguf file, read as loading a GGUF model does: open (header, metadata, tensor
// infos, ggml's layout rules), dequantize every tensor, then map the metadata to a config.json and
// the tokenizer keys to a tokenizer.json (either may refuse the file with a UserError).
#include "engine/model/gguf.hpp"
#include "engine/model/gguf_model.hpp"
#include "engine/model/gguf_tokenizer.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto path = vkt::fuzz::write_scratch_file(data, size, "model.gguf");
  return vkt::fuzz::accept_user_errors([&] {
    vkt::model::GgufFile file(path);
    for (const auto& tensor : file.tensors()) (void)file.to_fp32(tensor);
    vkt::fuzz::accept_user_errors([&] { (void)vkt::model::gguf_model_config(file); });
    vkt::fuzz::accept_user_errors([&] { (void)vkt::model::gguf_tokenizer_documents(file); });
  });
}
