#pragma once
// GGUF files built by hand in tests: damaged inputs the real writer cannot produce, and metadata
// variations of real architectures (tests/test_model_gguf.cpp, tests/test_model_gguf_families.cpp).
#include <cstdint>
#include <string>
#include <vector>

namespace vkt::test {

// A GGUF file built by hand, for damaged inputs the real writer cannot produce.
struct GgufBuilder {
  std::string bytes;
  template <typename T>
  void put(T value) {
    bytes.append(reinterpret_cast<const char*>(&value), sizeof(T));
  }
  void put_string(const std::string& text) {
    put<uint64_t>(text.size());
    bytes += text;
  }
  void header(uint32_t version, uint64_t tensors, uint64_t keys) {
    bytes = "GGUF";
    put(version);
    put(tensors);
    put(keys);
  }
  void key_u32(const std::string& key, uint32_t value) {
    put_string(key);
    put<uint32_t>(4);
    put(value);
  }
  void key_f32(const std::string& key, float value) {
    put_string(key);
    put<uint32_t>(6);
    put(value);
  }
  void key_string(const std::string& key, const std::string& value) {
    put_string(key);
    put<uint32_t>(8);
    put_string(value);
  }
  void key_bool_array(const std::string& key, const std::vector<bool>& values) {
    put_string(key);
    put<uint32_t>(9);
    put<uint32_t>(7);
    put<uint64_t>(values.size());
    for (bool value : values) put<uint8_t>(value ? 1 : 0);
  }
  void tensor_info(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    put_string(name);
    put<uint32_t>(static_cast<uint32_t>(ne.size()));
    for (uint64_t n : ne) put(n);
    put(type);
    put(offset);
  }
  void pad_to(size_t alignment) { bytes.resize((bytes.size() + alignment - 1) / alignment * alignment, '\0'); }
};

}  // namespace vkt::test
