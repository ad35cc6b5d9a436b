// libFuzzer target: a .safetensors file (8-byte header length, JSON header, tensor data), read as
// model loading does: open (validate header and tiling), then convert every tensor to fp32.
#include "engine/model/safetensors.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto path = vkt::fuzz::write_scratch_file(data, size, "model.safetensors");
  return vkt::fuzz::accept_user_errors([&] {
    vkt::model::SafetensorsFile file(path);
    for (const auto& tensor : file.tensors()) {
      file.tensor(tensor.name);
      (void)vkt::model::to_fp32(tensor);
    }
  });
}
