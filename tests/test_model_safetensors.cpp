// Hugging Face interop: safetensors reading and writing (single and sharded), against the
// reference writer's layout, with errors for malformed files.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>

#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/half.hpp"
#include "engine/model/safetensors.hpp"
#include "tests/model_io_support.hpp"
#include "tests/support.hpp"

using namespace vkt;
using namespace vkt::model;
using namespace vkt::test;  // user_error_of, write_bytes, load_json
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string read_bytes(const fs::path& path) { return read_text_file(path); }

// A safetensors file built by hand: 8-byte length, the header text as given, `data_bytes` bytes.
std::string raw_safetensors(const std::string& header, size_t data_bytes) {
  std::string bytes(8, '\0');
  uint64_t length = header.size();
  std::memcpy(bytes.data(), &length, 8);
  bytes += header;
  bytes += std::string(data_bytes, '\x5a');
  return bytes;
}

template <class T>
std::span<const uint8_t> as_bytes(const std::vector<T>& values) {
  return {reinterpret_cast<const uint8_t*>(values.data()), values.size() * sizeof(T)};
}

}  // namespace

TEST_SUITE("model_io") {

TEST_CASE("safetensors: a tiny file is byte-identical to the reference writer's layout") {
  // The reference (huggingface/safetensors serialize) writes: u64 N, compact JSON with
  // "__metadata__" first then tensors in file order with dtype/shape/data_offsets, padded with
  // spaces to a multiple of 8, then the data. Expected bytes written out by hand:
  fs::path dir = test::temp_dir("safetensors_tiny");
  std::vector<float> values = {1.0f, -2.0f};
  write_safetensors(dir / "a.safetensors", {TensorToWrite::from_bytes("a", FileDtype::F32, {2}, as_bytes(values))},
                    {{"format", "pt"}});
  std::string header = R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  REQUIRE(header.size() == 85);
  header += std::string(3, ' ');  // 85 -> 88, a multiple of 8
  std::string expected(8, '\0');
  expected[0] = 88;
  expected += header;
  expected.append(reinterpret_cast<const char*>(values.data()), 8);
  CHECK(read_bytes(dir / "a.safetensors") == expected);
}

TEST_CASE("safetensors: write then read many dtypes, scalars, empty tensors, metadata") {
  fs::path dir = test::temp_dir("safetensors_roundtrip");
  std::vector<float> f32(6);
  std::iota(f32.begin(), f32.end(), -2.5f);
  std::vector<uint16_t> bf16 = {float_to_bf16(1.0f), float_to_bf16(-3.5f), float_to_bf16(0.15625f)};
  std::vector<uint16_t> f16 = {float_to_half(0.5f), float_to_half(-65504.0f)};
  std::vector<int64_t> i64 = {-1, 1ll << 40};
  std::vector<uint8_t> u8 = {7, 8, 9};
  std::vector<uint8_t> boolean = {1};
  std::vector<float> scalar = {42.0f};
  std::vector<TensorToWrite> tensors;
  tensors.push_back(TensorToWrite::from_bytes("model.embed.weight", FileDtype::F32, {2, 3}, as_bytes(f32)));
  tensors.push_back(TensorToWrite::from_bytes("b.bf16", FileDtype::BF16, {3}, as_bytes(bf16)));
  tensors.push_back(TensorToWrite::from_bytes("a.f16", FileDtype::F16, {1, 2}, as_bytes(f16)));
  tensors.push_back(TensorToWrite::from_bytes("step", FileDtype::I64, {2}, as_bytes(i64)));
  tensors.push_back(TensorToWrite::from_bytes("bytes", FileDtype::U8, {3}, as_bytes(u8)));
  tensors.push_back(TensorToWrite::from_bytes("flag", FileDtype::BOOL, {}, as_bytes(boolean)));  // 0-rank: one element
  tensors.push_back(TensorToWrite::from_bytes("scale", FileDtype::F32, {}, as_bytes(scalar)));
  tensors.push_back(TensorToWrite::from_bytes("empty", FileDtype::F32, {0, 4}, {}));
  // A tensor streamed in three pieces by its callback, as a GPU download in chunks would be.
  TensorToWrite streamed{"streamed", FileDtype::F32, {5}, [](TensorSink& sink) {
                           float chunk_a[2] = {1, 2}, chunk_b[1] = {3}, chunk_c[2] = {4, 5};
                           sink.write(chunk_a, 8);
                           sink.write(chunk_b, 4);
                           sink.write(chunk_c, 8);
                         }};
  tensors.push_back(streamed);
  write_safetensors(dir / "m.safetensors", tensors, {{"format", "pt"}, {"note", "vktune test"}});

  SafetensorsFile file(dir / "m.safetensors");
  CHECK(file.header_size() % 8 == 0);
  CHECK(file.metadata().at("format") == "pt");
  CHECK(file.metadata().at("note") == "vktune test");
  // File order: by dtype size class as the reference orders dtypes (I64 > F32 > BF16 > F16 > U8 > BOOL), then name.
  std::vector<std::string> order;
  for (const auto& view : file.tensors()) order.push_back(view.name);
  CHECK(order == std::vector<std::string>{"step", "empty", "model.embed.weight", "scale", "streamed", "b.bf16", "a.f16",
                                          "bytes", "flag"});
  const TensorView& embed = file.tensor("model.embed.weight");
  CHECK(embed.dtype == FileDtype::F32);
  CHECK(embed.shape == std::vector<uint64_t>{2, 3});
  CHECK(to_fp32(embed) == f32);
  CHECK(to_fp32(file.tensor("b.bf16")) == std::vector<float>{1.0f, -3.5f, 0.15625f});
  CHECK(to_fp32(file.tensor("a.f16")) == std::vector<float>{0.5f, -65504.0f});
  CHECK(to_fp32(file.tensor("streamed")) == std::vector<float>{1, 2, 3, 4, 5});
  CHECK(file.tensor("scale").shape.empty());
  CHECK(file.tensor("scale").element_count() == 1);
  CHECK(to_fp32(file.tensor("scale")) == std::vector<float>{42.0f});
  CHECK(file.tensor("empty").element_count() == 0);
  CHECK(file.tensor("empty").bytes.empty());
  const TensorView& step = file.tensor("step");
  int64_t step_values[2];
  std::memcpy(step_values, step.bytes.data(), 16);
  CHECK(step_values[0] == -1);
  CHECK(step_values[1] == (1ll << 40));
  CHECK(std::vector<uint8_t>(file.tensor("bytes").bytes.begin(), file.tensor("bytes").bytes.end()) == u8);
  // Every tensor is aligned to its element size within the file (the point of the ordering).
  for (const auto& view : file.tensors()) {
    CAPTURE(view.name);
    CHECK(reinterpret_cast<uintptr_t>(view.bytes.data()) % file_dtype_size(view.dtype) == 0);
  }
  // Integer tensors do not convert to fp32.
  CHECK(user_error_of([&] { to_fp32(step); }).find("\"step\" has dtype I64") != std::string::npos);
  // Missing tensor: names file and tensor.
  std::string missing = user_error_of([&] { file.tensor("lm_head.weight"); });
  CHECK(missing.find("m.safetensors") != std::string::npos);
  CHECK(missing.find("\"lm_head.weight\"") != std::string::npos);
}

TEST_CASE("safetensors: fp32 to bf16/f16 conversion rounds to nearest even") {
  // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties to even -> 1.
  // 1 + 3*2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even -> 1 + 2^-6.
  std::vector<float> values = {1.0f + 1.0f / 256, 1.0f + 3.0f / 256, -0.0f};
  std::vector<uint8_t> bytes(values.size() * 2);
  convert_from_fp32(values, FileDtype::BF16, bytes);
  TensorView view{"t", FileDtype::BF16, {3}, bytes};
  std::vector<float> back = to_fp32(view);
  CHECK(back[0] == 1.0f);
  CHECK(back[1] == 1.0f + 1.0f / 64);
  CHECK(std::signbit(back[2]));
  convert_from_fp32(std::span<const float>(values.data(), 2), FileDtype::F16, std::span<uint8_t>(bytes.data(), 4));
  TensorView half_view{"h", FileDtype::F16, {2}, std::span<const uint8_t>(bytes.data(), 4)};
  // fp16 has 10 mantissa bits: 1 + 2^-8 and 1 + 3*2^-8 are exact.
  CHECK(to_fp32(half_view) == std::vector<float>{1.0f + 1.0f / 256, 1.0f + 3.0f / 256});
}

TEST_CASE("safetensors: sharded save as save_pretrained, index, folder reading, re-save cleans up") {
  fs::path dir = test::temp_dir("safetensors_sharded");
  // Five 400-byte tensors (100 fp32), limit 1000 bytes: [t0 t1] (800; t2 would make 1200), [t2 t3], [t4].
  std::vector<std::vector<float>> data(5, std::vector<float>(100));
  for (size_t t = 0; t < data.size(); t++)
    for (size_t i = 0; i < 100; i++) data[t][i] = static_cast<float>(t * 1000 + i);
  auto make_tensors = [&]() {
    std::vector<TensorToWrite> tensors;
    for (size_t t = 0; t < data.size(); t++)
      tensors.push_back(TensorToWrite::from_bytes("layers." + std::to_string(t) + ".weight", FileDtype::F32, {10, 10},
                                                  as_bytes(data[t])));
    return tensors;
  };
  ShardedWriteResult result = write_safetensors_sharded(dir, make_tensors(), 1000);
  REQUIRE(result.files.size() == 3);
  CHECK(result.files[0].filename() == "model-00001-of-00003.safetensors");
  CHECK(result.files[2].filename() == "model-00003-of-00003.safetensors");
  REQUIRE(result.index.has_value());
  json index = load_json(*result.index);
  CHECK(index["metadata"]["total_size"] == 2000);
  CHECK(index["weight_map"]["layers.0.weight"] == "model-00001-of-00003.safetensors");
  CHECK(index["weight_map"]["layers.1.weight"] == "model-00001-of-00003.safetensors");
  CHECK(index["weight_map"]["layers.2.weight"] == "model-00002-of-00003.safetensors");
  CHECK(index["weight_map"]["layers.3.weight"] == "model-00002-of-00003.safetensors");
  CHECK(index["weight_map"]["layers.4.weight"] == "model-00003-of-00003.safetensors");
  CHECK(SafetensorsFile(result.files[0]).metadata().at("format") == "pt");  // transformers checks it

  SafetensorsFolder folder(dir);
  CHECK(folder.sharded());
  CHECK(folder.tensor_count() == 5);
  CHECK(folder.total_bytes() == 2000);
  CHECK(folder.file_of("layers.3.weight").path().filename() == "model-00002-of-00003.safetensors");
  for (size_t t = 0; t < data.size(); t++)
    CHECK(to_fp32(folder.tensor("layers." + std::to_string(t) + ".weight")) == data[t]);
  CHECK(user_error_of([&] { folder.tensor("nope"); }).find("\"nope\"") != std::string::npos);

  // A tensor larger than the limit gets a shard of its own.
  std::vector<float> big(300, 1.0f);
  std::vector<TensorToWrite> with_big = make_tensors();
  with_big.insert(with_big.begin() + 1, TensorToWrite::from_bytes("big", FileDtype::F32, {300}, as_bytes(big)));
  ShardedWriteResult with_big_result = write_safetensors_sharded(dir, std::move(with_big), 1000);
  // As huggingface_hub: [big] goes out first, then [t0 t1] [t2 t3] [t4].
  CHECK(with_big_result.files.size() == 4);
  json big_index = load_json(dir / "model.safetensors.index.json");
  CHECK(big_index["weight_map"]["big"] == "model-00001-of-00004.safetensors");
  CHECK(big_index["weight_map"]["layers.0.weight"] == "model-00002-of-00004.safetensors");
  CHECK(big_index["weight_map"]["layers.1.weight"] == "model-00002-of-00004.safetensors");
  CHECK(big_index["weight_map"]["layers.2.weight"] == "model-00003-of-00004.safetensors");
  CHECK(big_index["weight_map"]["layers.4.weight"] == "model-00004-of-00004.safetensors");
  CHECK(big_index["metadata"]["total_size"] == 3200);
  CHECK(!fs::exists(dir / "model-00001-of-00003.safetensors"));  // the 3-shard save is gone

  // Saving again under the limit: one model.safetensors; the shards and index of before are removed.
  ShardedWriteResult single = write_safetensors_sharded(dir, make_tensors(), 1u << 20);
  CHECK(single.files.size() == 1);
  CHECK(!single.index.has_value());
  size_t entries = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    CAPTURE(entry.path().string());
    CHECK(entry.path().filename() == "model.safetensors");
    entries++;
  }
  CHECK(entries == 1);
  SafetensorsFolder single_folder(dir);
  CHECK(!single_folder.sharded());
  CHECK(to_fp32(single_folder.tensor("layers.4.weight")) == data[4]);
  CHECK(SafetensorsFolder(dir / "model.safetensors").tensor_count() == 5);  // a file path works too
}

TEST_CASE("safetensors: the writer checks what its callbacks deliver") {
  fs::path dir = test::temp_dir("safetensors_callback");
  TensorToWrite short_tensor{"short", FileDtype::F32, {4}, [](TensorSink& sink) {
                               float value = 1;
                               sink.write(&value, 4);  // 4 of 16 bytes
                             }};
  CHECK_THROWS_AS(write_safetensors(dir / "bad.safetensors", {short_tensor}), std::logic_error);
  CHECK(!fs::exists(dir / "bad.safetensors"));  // nothing half-written is left behind
  size_t leftovers = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir)) leftovers++;
  CHECK(leftovers == 0);
}

TEST_CASE("safetensors: malformed files give errors naming the file, the tensor and a hint") {
  fs::path dir = test::temp_dir("safetensors_malformed");
  auto error_for = [&](const std::string& name, const std::string& bytes) {
    write_bytes(dir / name, bytes);
    std::string message = user_error_of([&] { SafetensorsFile file(dir / name); });
    CHECK(message.find(name) != std::string::npos);
    CHECK(message.find("HINT: ") != std::string::npos);
    return message;
  };
  const std::string good_entry = R"("w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})";

  SUBCASE("truncated below the length field") {
    CHECK(error_for("tiny.safetensors", "abc").find("truncated") != std::string::npos);
  }
  SUBCASE("header length beyond the file") {
    std::string bytes = raw_safetensors("{" + good_entry + "}", 16);
    uint64_t wrong = 4096;
    std::memcpy(bytes.data(), &wrong, 8);
    std::string message = error_for("long_header.safetensors", bytes);
    CHECK(message.find("header length 4096 reaches beyond the end of the file") != std::string::npos);
  }
  SUBCASE("header length above 100 MB") {
    std::string bytes = raw_safetensors("{}", 0);
    uint64_t huge = 200'000'000;
    std::memcpy(bytes.data(), &huge, 8);
    CHECK(error_for("huge_header.safetensors", bytes).find("larger than the format's limit") != std::string::npos);
  }
  SUBCASE("invalid JSON") {
    CHECK(error_for("bad_json.safetensors", raw_safetensors(R"({"w":{"dtype":)", 0)).find("not valid JSON") !=
          std::string::npos);
  }
  SUBCASE("header not starting with {") {
    CHECK(error_for("no_brace.safetensors", raw_safetensors(R"([1,2])", 0)).find("does not start with '{'") !=
          std::string::npos);
  }
  SUBCASE("unknown dtype") {
    std::string message =
        error_for("dtype.safetensors", raw_safetensors(R"({"w":{"dtype":"F7","shape":[2],"data_offsets":[0,2]}})", 2));
    CHECK(message.find("tensor \"w\"") != std::string::npos);
    CHECK(message.find("unknown or unsupported dtype \"F7\"") != std::string::npos);
    CHECK(message.find("BF16") != std::string::npos);  // the hint lists the supported ones
  }
  SUBCASE("shape does not match the byte length") {
    std::string message = error_for(
        "shape.safetensors", raw_safetensors(R"({"w":{"dtype":"BF16","shape":[3,3],"data_offsets":[0,16]}})", 16));
    CHECK(message.find("tensor \"w\"") != std::string::npos);
    CHECK(message.find("shape [3, 3] of BF16 needs 18 bytes but data_offsets [0, 16] hold 16") != std::string::npos);
  }
  SUBCASE("overlapping tensors") {
    std::string header = R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})";
    std::string message = error_for("overlap.safetensors", raw_safetensors(header, 16));
    CHECK(message.find("tensor \"b\": data_offsets [8, 16] overlap tensor \"a\" [0, 16]") != std::string::npos);
  }
  SUBCASE("a hole between tensors") {
    std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                         R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
    std::string message = error_for("hole.safetensors", raw_safetensors(header, 12));
    CHECK(message.find("tensor \"b\"") != std::string::npos);
    CHECK(message.find("leave a hole of 4 bytes") != std::string::npos);
  }
  SUBCASE("data cut off (truncated file)") {
    std::string message = error_for("cut.safetensors", raw_safetensors("{" + good_entry + "}", 10));
    CHECK(message.find("tensor \"w\"") != std::string::npos);
    CHECK(message.find("reach beyond the byte buffer (10 bytes): the file is truncated") != std::string::npos);
  }
  SUBCASE("bytes after the last tensor") {
    std::string message = error_for("trailing.safetensors", raw_safetensors("{" + good_entry + "}", 20));
    CHECK(message.find("4 bytes after the last tensor belong to no tensor") != std::string::npos);
  }
  SUBCASE("duplicate tensor names") {
    std::string header = "{" + good_entry + "," + good_entry + "}";
    CHECK(error_for("duplicate.safetensors", raw_safetensors(header, 16)).find("tensor \"w\" appears twice") !=
          std::string::npos);
  }
  SUBCASE("negative shape, bad offsets, non-string metadata") {
    CHECK(error_for("negative.safetensors",
                    raw_safetensors(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", 0))
              .find("\"shape\" holds -1") != std::string::npos);
    CHECK(
        error_for("offsets.safetensors", raw_safetensors(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4]}})", 4))
            .find("\"data_offsets\" is [4], not two non-negative integers") != std::string::npos);
    CHECK(error_for("metadata.safetensors", raw_safetensors(R"({"__metadata__":{"step":3}})", 0))
              .find("\"__metadata__\".step is not a string") != std::string::npos);
  }
}

TEST_CASE("safetensors: every truncation and random header damage gives a UserError, never a crash") {
  fs::path dir = test::temp_dir("safetensors_fuzz");
  std::vector<float> a(6, 1.5f);
  std::vector<uint16_t> b(5, float_to_bf16(2.0f));
  write_safetensors(dir / "good.safetensors",
                    {TensorToWrite::from_bytes("a", FileDtype::F32, {2, 3}, as_bytes(a)),
                     TensorToWrite::from_bytes("b", FileDtype::BF16, {5}, as_bytes(b))},
                    {{"format", "pt"}});
  const std::string good = read_bytes(dir / "good.safetensors");
  // Any truncation leaves the buffer not fully indexed (or the header cut): always an error.
  size_t truncation_errors = 0;
  for (size_t length = 0; length < good.size(); length++) {
    write_bytes(dir / "cut.safetensors", good.substr(0, length));
    try {
      SafetensorsFile file(dir / "cut.safetensors");
    } catch (const UserError&) {
      truncation_errors++;
    }
  }
  CHECK(truncation_errors == good.size());
  // Random byte changes in the length field and header: either still a valid file whose tensors
  // lie inside it, or a UserError -- no other exception, no crash.
  std::mt19937 random(7);
  size_t opened = 0, rejected = 0;
  for (int trial = 0; trial < 300; trial++) {
    std::string damaged = good;
    int changes = 1 + static_cast<int>(random() % 3);
    for (int c = 0; c < changes; c++) {
      size_t at = random() % (8 + SafetensorsFile(dir / "good.safetensors").header_size());
      damaged[at] = static_cast<char>(random() % 256);
    }
    write_bytes(dir / "damaged.safetensors", damaged);
    try {
      SafetensorsFile file(dir / "damaged.safetensors");
      uint64_t covered = 0;
      for (const auto& view : file.tensors()) {
        CHECK(view.bytes.size() == view.element_count() * file_dtype_size(view.dtype));
        covered += view.bytes.size();
      }
      CHECK(8 + file.header_size() + covered == file.file_size());  // the tensors tile the rest exactly
      opened++;
    } catch (const UserError&) {
      rejected++;
    }
  }
  MESSAGE("damaged headers: " << opened << " still valid, " << rejected << " rejected with a UserError");
  CHECK(opened + rejected == 300);
  CHECK(rejected > 200);
}

TEST_CASE("safetensors: folder errors name the index, the shard and the tensor") {
  fs::path dir = test::temp_dir("safetensors_folder_errors");
  CHECK(user_error_of([&] {
          SafetensorsFolder folder(dir);
        }).find("neither model.safetensors nor model.safetensors.index.json") != std::string::npos);
  std::vector<float> values(4, 1.0f);
  write_safetensors(dir / "model-00001-of-00002.safetensors",
                    {TensorToWrite::from_bytes("a", FileDtype::F32, {4}, as_bytes(values))});
  json index = {{"metadata", {{"total_size", 32}}},
                {"weight_map", {{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00002-of-00002.safetensors"}}}};
  write_file_atomically(dir / "model.safetensors.index.json", index.dump());
  std::string missing = user_error_of([&] { SafetensorsFolder folder(dir); });
  CHECK(missing.find("model.safetensors.index.json") != std::string::npos);
  CHECK(missing.find("shard model-00002-of-00002.safetensors (holding tensor \"b\") is missing") != std::string::npos);
  index["weight_map"]["b"] = "model-00001-of-00002.safetensors";
  write_file_atomically(dir / "model.safetensors.index.json", index.dump());
  CHECK(user_error_of([&] {
          SafetensorsFolder folder(dir);
        }).find("weight_map puts tensor \"b\" in model-00001-of-00002.safetensors, which does not hold it") !=
        std::string::npos);
  // transformers prefers a single model.safetensors to an index when both are there: so do we.
  write_safetensors(dir / "model.safetensors",
                    {TensorToWrite::from_bytes("single", FileDtype::F32, {4}, as_bytes(values))});
  CHECK(SafetensorsFolder(dir).contains("single"));
  CHECK(!SafetensorsFolder(dir).sharded());
  fs::remove(dir / "model.safetensors");
  index["weight_map"]["b"] = "../elsewhere.safetensors";
  write_file_atomically(dir / "model.safetensors.index.json", index.dump());
  CHECK(user_error_of([&] { SafetensorsFolder folder(dir); }).find("not a file in the model folder") !=
        std::string::npos);
}

}  // TEST_SUITE
