#pragma once
// A PEFT LoRA adapter folder with random A and B (B nonzero, unlike a fresh adapter), for tests of
// merging and exporting (test_merge, test_gguf_export, test_llamacpp).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/spec/model_shape.hpp"

namespace vkt::test {

// Values uniform in ±0.2 from (seed, tensor index); written under test::temp_dir("adapter-" + name).
std::filesystem::path random_adapter(const std::filesystem::path& base, const std::string& name, uint32_t rank,
                                     float alpha, bool rslora, const std::vector<spec::Module>& targets, uint32_t seed);

}  // namespace vkt::test
