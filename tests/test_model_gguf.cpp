// GGUF: the reader against files written by the `gguf` package (llama.cpp's own writer), ggml's
// block formats bit-exact against its numpy dequantizers and quantizers, and clear errors for
// damaged files. Goldens: tests/reference/gguf_golden.py -> tests/data/gguf/.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "engine/base/error.hpp"
#include "engine/model/gguf.hpp"
#include "engine/quant/ggml_blocks.hpp"
#include "tests/gguf_builder.hpp"
#include "tests/model_io_support.hpp"
#include "tests/support.hpp"

using namespace vkt;
using namespace vkt::model;
using namespace vkt::test;  // user_error_of, write_bytes
using quant::GgmlType;
namespace fs = std::filesystem;

namespace {

fs::path golden(const char* name) { return source_dir() / "tests" / "data" / "gguf" / name; }

// Index of the first element whose bits differ, or -1: dequantization must be bit-exact, so the
// comparison is on bits (a NaN-free golden makes this the same as ==, but it also tells -0 from 0).
long first_bit_difference(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); i++)
    if (std::memcmp(&a[i], &b[i], 4) != 0) return static_cast<long>(i);
  return -1;
}

// One F32 tensor "w" of 8 values: a valid file to damage.
std::string small_valid_file() {
  GgufBuilder b;
  b.header(3, 1, 1);
  b.key_u32("general.alignment", 32);
  b.tensor_info("w", {8}, 0, 0);
  b.pad_to(32);
  for (int i = 0; i < 8; i++) b.put<float>(static_cast<float>(i));
  return b.bytes;
}

std::string error_for(const std::string& bytes, const std::string& name = "damaged.gguf") {
  fs::path path = temp_dir("gguf_errors") / name;
  write_bytes(path, bytes);
  return user_error_of([&] { GgufFile file(path); });
}

}  // namespace

TEST_SUITE("model_io") {
TEST_CASE("gguf: every ggml type vktune reads dequantizes bit-exactly as ggml (gguf-py's numpy)") {
  GgufFile file(golden("blocks.gguf"));
  for (const char* type : {"F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"}) {
    CAPTURE(type);
    const GgufTensor& blocks = file.tensor(std::string(type) + ".blocks");
    const GgufTensor& expected = file.tensor(std::string(type) + ".expected");
    CHECK(quant::ggml_type_name(blocks.type) == std::string(type));
    CHECK(blocks.shape() == expected.shape());
    CHECK(first_bit_difference(file.to_fp32(blocks), file.to_fp32(expected)) == -1);
  }
}

namespace {

// Quantizes `file`'s "source" tensor as each type and compares with its "<TYPE>.quantized" bytes;
// the bytes must also decode back near the source (the quantizer's round trip).
void check_quantizers(const GgufFile& file, std::initializer_list<const char*> names) {
  const std::vector<float> source = file.to_fp32(file.tensor("source"));
  for (const char* name : names) {
    CAPTURE(name);
    const GgufTensor& reference = file.tensor(std::string(name) + ".quantized");
    GgmlType type = *quant::ggml_type_from_name(name);
    REQUIRE(quant::ggml_can_quantize(type));
    std::vector<uint8_t> ours(quant::ggml_row_bytes(type, source.size()));
    quant::quantize_ggml(type, source, ours);
    REQUIRE(ours.size() == reference.bytes.size());
    size_t first_difference = ours.size();
    for (size_t i = 0; i < ours.size(); i++)
      if (ours[i] != reference.bytes[i]) {
        first_difference = i;
        break;
      }
    CHECK(first_difference == ours.size());
    std::vector<float> decoded(source.size());
    quant::dequantize_ggml(type, ours, decoded);
    double worst = 0;
    for (size_t i = 0; i < source.size(); i++) worst = std::max(worst, double(std::fabs(decoded[i] - source[i])));
    CHECK(worst < 0.2);  // 4-bit steps of the widest rows (a 3.0 outlier) stay below this
  }
}

}  // namespace

TEST_CASE("gguf: the exporter's quantizers write ggml's reference bytes (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, BF16)") {
  check_quantizers(GgufFile(golden("blocks.gguf")), {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "BF16"});
}

TEST_CASE(
    "gguf: Q4_K and Q6_K quantizers write ggml's quantize_row_*_ref bytes (tests/reference/ggml_kquant_golden.py)") {
  check_quantizers(GgufFile(golden("kquants.gguf")), {"Q4_K", "Q6_K"});
}

TEST_CASE("gguf: block sizes and bits per weight as ggml defines them") {
  CHECK(quant::ggml_row_bytes(GgmlType::Q4_K, 512) == 288);
  CHECK(quant::ggml_row_bytes(GgmlType::Q6_K, 256) == 210);
  CHECK(quant::ggml_bits_per_weight(GgmlType::Q8_0) == doctest::Approx(8.5));
  CHECK(quant::ggml_bits_per_weight(GgmlType::Q4_K) == doctest::Approx(4.5));
  CHECK(quant::ggml_bits_per_weight(GgmlType::Q6_K) == doctest::Approx(6.5625));
  CHECK(quant::ggml_type_name_of(16) == "IQ2_XXS");
  CHECK(quant::ggml_type_name_of(99) == "type 99");
  CHECK(quant::ggml_can_quantize(GgmlType::Q4_K));
  CHECK(!quant::ggml_can_quantize(GgmlType::Q5_K));  // no exporter mix needs it yet
}

TEST_CASE("gguf: metadata of every value type, nested arrays, alignment and tensors of 1 to 4 dimensions") {
  GgufFile file(golden("metadata.gguf"));
  CHECK(file.version() == 3);
  CHECK(file.alignment() == 64);
  CHECK(file.data_offset() % 64 == 0);
  CHECK(file.get_string("general.architecture") == "llama");
  CHECK(file.get_uint("test.u8") == 200);
  CHECK(file.get_int("test.i8") == -100);
  CHECK(file.get_uint("test.u16") == 60000);
  CHECK(file.get_int("test.i16") == -30000);
  CHECK(file.get_uint("test.u32") == 4000000000u);
  CHECK(file.get_int("test.i32") == -2000000000);
  CHECK(file.get_float("test.f32") == static_cast<double>(0.1f));
  CHECK(file.get_uint("test.u64") == 18000000000000000000ull);
  CHECK(file.get_int("test.i64") == -9000000000000000000ll);
  CHECK(file.get_float("test.f64") == 0.1);
  CHECK(file.get_bool("test.bool"));
  CHECK(file.get_string("test.string") == "h\xC3\xA9llo, \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x99\x82");
  CHECK(file.get_string_array("test.strings") ==
        std::vector<std::string>{"a", "", "\xC3\xBCn\xC3\xAF", "<|im_start|>"});
  CHECK(file.get_int_array("test.i32s") == std::vector<int64_t>{1, -2, 3});
  CHECK(file.get_float_array("test.f32s") == std::vector<double>{0.5, -1.25});
  CHECK(file.get_int_array("test.u8s") == std::vector<int64_t>{0, 255});
  const GgufValue* nested = file.find("test.nested");
  REQUIRE(nested);
  CHECK(nested->element_type == GgufValueType::ARRAY);
  const auto& outer = std::get<std::vector<GgufValue>>(nested->value);
  REQUIRE(outer.size() == 2);
  CHECK(std::get<std::vector<GgufValue>>(outer[0].value).size() == 2);
  CHECK(std::get<std::vector<GgufValue>>(outer[1].value).size() == 1);
  // A signed value where an unsigned one is needed, and a wrong type, name the key.
  CHECK(user_error_of([&] { file.get_uint("test.i8"); }).find("\"test.i8\" is INT8") != std::string::npos);
  CHECK(user_error_of([&] { file.get_string("test.u8s"); }).find("ARRAY of UINT8") != std::string::npos);
  CHECK(user_error_of([&] { file.get_uint("no.such.key"); }).find("no metadata key \"no.such.key\"") !=
        std::string::npos);

  const std::vector<uint64_t> dims = {2, 3, 5, 7};
  for (size_t d = 1; d <= 4; d++) {
    const GgufTensor& tensor = file.tensor("t" + std::to_string(d) + "d");
    CHECK(tensor.ne == std::vector<uint64_t>(dims.begin(), dims.begin() + static_cast<long>(d)));
    std::vector<float> values = file.to_fp32(tensor);
    for (size_t i = 0; i < values.size(); i++) CHECK(values[i] == static_cast<float>(i));
    CHECK(tensor.offset % 64 == 0);
  }
  const GgufTensor& half = file.tensor("t_f16");
  CHECK(half.shape() == std::vector<uint64_t>{2, 3});
  CHECK(file.to_fp32(half) == std::vector<float>{0, 1, 2, 3, 4, 5});
}

TEST_CASE("gguf: damaged files give errors naming the file, the offset or tensor, and a hint") {
  const std::string valid = small_valid_file();
  {
    fs::path path = temp_dir("gguf_valid") / "valid.gguf";
    write_bytes(path, valid);
    GgufFile file(path);
    CHECK(file.to_fp32(file.tensor("w"))[7] == 7.0f);
  }
  CHECK(error_for("GGML" + valid.substr(4)).find("is not a GGUF file") != std::string::npos);
  {
    std::string v1 = valid;
    v1[4] = 1;
    CHECK(error_for(v1).find("GGUF version 1") != std::string::npos);
    std::string big = valid;
    big[4] = 0;
    big[7] = 3;
    CHECK(error_for(big).find("big-endian") != std::string::npos);
  }
  GgufBuilder b;
  // An unknown value type.
  b.header(3, 0, 1);
  b.put_string("k");
  b.put<uint32_t>(13);
  CHECK(error_for(b.bytes).find("value type 13") != std::string::npos);
  // An array claiming more elements than the file holds.
  b.header(3, 0, 1);
  b.put_string("tokens");
  b.put<uint32_t>(9);
  b.put<uint32_t>(8);
  b.put<uint64_t>(1ull << 40);
  CHECK(error_for(b.bytes).find("\"tokens\" claims 1099511627776 STRING elements") != std::string::npos);
  // A string longer than the file.
  b.header(3, 0, 1);
  b.put<uint64_t>(1ull << 50);
  b.bytes += std::string(16, 'x');
  CHECK(error_for(b.bytes).find("claims 1125899906842624 bytes") != std::string::npos);
  // Duplicate keys, a bad alignment.
  b.header(3, 0, 2);
  b.key_u32("a", 1);
  b.key_u32("a", 2);
  CHECK(error_for(b.bytes).find("\"a\" appears twice") != std::string::npos);
  b.header(3, 0, 1);
  b.key_u32("general.alignment", 48);
  CHECK(error_for(b.bytes).find("general.alignment is 48, which is not a power of two") != std::string::npos);
  // A tensor type vktune does not read, a row that is not whole blocks, a lying offset, too many dimensions.
  auto one_tensor = [&](std::vector<uint64_t> ne, uint32_t type, uint64_t offset, size_t data_bytes) {
    b.header(3, 1, 0);
    b.tensor_info("blk.0.attn_q.weight", ne, type, offset);
    b.pad_to(32);
    b.bytes += std::string(data_bytes, '\0');
    return error_for(b.bytes);
  };
  std::string unknown = one_tensor({256}, 16, 0, 66);
  CHECK(unknown.find("tensor \"blk.0.attn_q.weight\" is of ggml type IQ2_XXS") != std::string::npos);
  CHECK(unknown.find("HINT: vktune reads F32, F16") != std::string::npos);
  CHECK(one_tensor({100}, 12, 0, 144).find("rows of 100 values, not a whole number of Q4_K blocks of 256") !=
        std::string::npos);
  CHECK(one_tensor({8}, 0, 64, 128).find("starts at data offset 64, but ggml's layout puts it at 0") !=
        std::string::npos);
  CHECK(one_tensor({8}, 0, 0, 16).find("needs 32 bytes of F32 data, but only 16 bytes") != std::string::npos);
  CHECK(one_tensor({1, 1, 1, 1, 1}, 0, 0, 4).find("has 5 dimensions") != std::string::npos);
  CHECK(one_tensor({1ull << 62, 1ull << 62}, 0, 0, 4).find("overflows 64 bits") != std::string::npos);
  // Found by fuzz_gguf: a row whose byte size alone wraps (2^62 F32 values are 2^64 bytes), and a
  // tensor that starts past the end of the file (the bytes left wrapped around); both once asked
  // for gigabytes of fp32.
  CHECK(one_tensor({1ull << 62}, 0, 0, 4).find("overflows 64 bits") != std::string::npos);
  {
    GgufBuilder past_end;
    past_end.header(3, 2, 0);
    past_end.tensor_info("a", {4}, 0, 0);
    past_end.tensor_info("b", {3, 1660944386}, 1, 32);
    past_end.pad_to(32);
    past_end.bytes += std::string(24, '\0');  // "a" (16 bytes) and 8 of padding: "b" at 32 starts past the end
    CHECK(error_for(past_end.bytes).find("tensor \"b\" needs 9965666316 bytes of F16 data, but only 0 bytes") !=
          std::string::npos);
  }
}

TEST_CASE("gguf: every truncation and random byte damage gives a UserError, never a crash") {
  const fs::path source = golden("metadata.gguf");
  const std::string bytes = read_text_file(source);
  fs::path path = temp_dir("gguf_fuzz") / "cut.gguf";
  int errors = 0, opened = 0;
  // Every cut inside the header and tensor infos, then a sample of cuts through the data.
  for (size_t cut = 0; cut < bytes.size(); cut += cut < 1100 ? 1 : 37) {
    write_bytes(path, bytes.substr(0, cut));
    try {
      GgufFile file(path);
      opened++;
    } catch (const UserError&) {
      errors++;
    }
  }
  CHECK(errors > 1000);
  std::mt19937 random(7);
  for (int trial = 0; trial < 300; trial++) {
    std::string damaged = bytes;
    for (int k = 0; k < 3; k++) damaged[random() % 1100] = static_cast<char>(random());
    write_bytes(path, damaged);
    try {
      GgufFile file(path);
      for (const auto& tensor : file.tensors()) (void)file.to_fp32(tensor);
      opened++;
    } catch (const UserError&) {
      errors++;
    }
  }
  MESSAGE("damaged GGUF files: " << errors << " errors, " << opened << " opened");
}
}
