// Hugging Face interop: safetensors reading/writing (single and sharded), config.json, RoPE
// frequencies against torch, and tokenizer.json encode/decode against ids worked out by hand
// from the HF algorithm (and against an independent Python implementation).
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
#include "engine/model/config.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/model/tokenizer.hpp"
#include "tests/support.hpp"

using namespace vkt;
using namespace vkt::model;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Runs `action`, which must throw vkt::UserError; returns its message and hint together.
std::string user_error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const UserError& error) {
    return std::string(error.what()) + "\n---> HINT: " + error.hint();
  }
  FAIL("expected a vkt::UserError");
  return {};
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

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

fs::path tokenizer_fixture(const std::string& name) { return test::source_dir() / "tests/data/tokenizers" / name; }

json load_json(const fs::path& path) { return json::parse(read_text_file(path)); }

std::vector<uint32_t> ids(std::initializer_list<uint32_t> list) { return list; }

}  // namespace

TEST_SUITE("model_io") {

// ============================ safetensors ============================

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
  for (size_t t = 0; t < data.size(); t++) CHECK(to_fp32(folder.tensor("layers." + std::to_string(t) + ".weight")) == data[t]);
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
    std::string message = error_for("shape.safetensors",
                                    raw_safetensors(R"({"w":{"dtype":"BF16","shape":[3,3],"data_offsets":[0,16]}})", 16));
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
    CHECK(error_for("offsets.safetensors", raw_safetensors(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4]}})", 4))
              .find("\"data_offsets\" is [4], not two non-negative integers") != std::string::npos);
    CHECK(error_for("metadata.safetensors", raw_safetensors(R"({"__metadata__":{"step":3}})", 0))
              .find("\"__metadata__\".step is not a string") != std::string::npos);
  }
}

TEST_CASE("safetensors: every truncation and random header damage gives a UserError, never a crash") {
  fs::path dir = test::temp_dir("safetensors_fuzz");
  std::vector<float> a(6, 1.5f);
  std::vector<uint16_t> b(5, float_to_bf16(2.0f));
  write_safetensors(dir / "good.safetensors", {TensorToWrite::from_bytes("a", FileDtype::F32, {2, 3}, as_bytes(a)),
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
  CHECK(user_error_of([&] { SafetensorsFolder folder(dir); }).find("neither model.safetensors nor model.safetensors.index.json") !=
        std::string::npos);
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
  CHECK(user_error_of([&] { SafetensorsFolder folder(dir); })
            .find("weight_map puts tensor \"b\" in model-00001-of-00002.safetensors, which does not hold it") !=
        std::string::npos);
  // transformers prefers a single model.safetensors to an index when both are there: so do we.
  write_safetensors(dir / "model.safetensors", {TensorToWrite::from_bytes("single", FileDtype::F32, {4}, as_bytes(values))});
  CHECK(SafetensorsFolder(dir).contains("single"));
  CHECK(!SafetensorsFolder(dir).sharded());
  fs::remove(dir / "model.safetensors");
  index["weight_map"]["b"] = "../elsewhere.safetensors";
  write_file_atomically(dir / "model.safetensors.index.json", index.dump());
  CHECK(user_error_of([&] { SafetensorsFolder folder(dir); }).find("not a file in the model folder") != std::string::npos);
}

// ============================ config.json ============================

// TinyLlama-1.1B-Chat-v1.0's config.json, as published.
const char* kTinyLlamaConfig = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 5632,
  "max_position_embeddings": 2048, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 22,
  "num_key_value_heads": 4, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 10000.0,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.35.0", "use_cache": true,
  "vocab_size": 32000})";

// Llama-3.2-1B-Instruct's config.json (llama3 rope scaling, eos list, tied embeddings, head_dim).
const char* kLlama32Config = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009], "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048,
  "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": false,
  "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.45.0.dev0",
  "use_cache": true, "vocab_size": 128256})";

// Qwen2.5-0.5B's config.json.
const char* kQwen2Config = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151643,
  "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02, "intermediate_size": 4864,
  "max_position_embeddings": 32768, "max_window_layers": 24, "model_type": "qwen2", "num_attention_heads": 14,
  "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.40.1",
  "use_cache": true, "use_mrope": false, "use_sliding_window": false, "vocab_size": 151936})";

// Mistral-7B-v0.1's config.json (sliding window 4096).
const char* kMistralConfig = R"({
  "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 32768,
  "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "transformers_version": "4.34.0.dev0", "use_cache": true, "vocab_size": 32000})";

TEST_CASE("config: TinyLlama, Llama 3.2, Qwen2.5, Mistral configs parse to the expected fields") {
  ModelConfig tiny = parse_model_config(json::parse(kTinyLlamaConfig), "tinyllama/config.json");
  CHECK(tiny.architecture == Architecture::llama);
  CHECK(tiny.hidden_size == 2048);
  CHECK(tiny.intermediate_size == 5632);
  CHECK(tiny.num_hidden_layers == 22);
  CHECK(tiny.num_attention_heads == 32);
  CHECK(tiny.num_key_value_heads == 4);
  CHECK(tiny.head_dim == 64);  // 2048 / 32
  CHECK(tiny.q_size() == 2048);
  CHECK(tiny.kv_size() == 256);
  CHECK(tiny.rms_norm_eps == 1e-5);
  CHECK(tiny.rope_theta == 10000.0);
  CHECK(tiny.rope_scaling.type == "default");
  CHECK(tiny.vocab_size == 32000);
  CHECK(!tiny.tie_word_embeddings);
  CHECK(tiny.bos_token_id == 1);
  CHECK(tiny.eos_token_ids == std::vector<int64_t>{2});
  CHECK(tiny.torch_dtype == "bfloat16");
  CHECK(!tiny.qkv_bias);
  CHECK(!tiny.sliding_window);

  ModelConfig llama = parse_model_config(json::parse(kLlama32Config), "llama/config.json");
  CHECK(llama.head_dim == 64);
  CHECK(llama.tie_word_embeddings);
  CHECK(llama.eos_token_ids == std::vector<int64_t>{128001, 128008, 128009});
  CHECK(llama.rope_scaling.type == "llama3");
  CHECK(llama.rope_scaling.factor == 32.0);
  CHECK(llama.rope_scaling.low_freq_factor == 1.0);
  CHECK(llama.rope_scaling.high_freq_factor == 4.0);
  CHECK(llama.rope_scaling.original_max_position_embeddings == 8192);
  CHECK(llama.max_position_embeddings == 131072);

  ModelConfig qwen = parse_model_config(json::parse(kQwen2Config), "qwen/config.json");
  CHECK(qwen.architecture == Architecture::qwen2);
  CHECK(qwen.qkv_bias);   // Qwen2 always has q/k/v biases
  CHECK(!qwen.o_bias);
  CHECK(qwen.head_dim == 64);
  CHECK(qwen.rope_theta == 1000000.0);
  CHECK(!qwen.sliding_window);  // use_sliding_window is false
  json qwen_windowed = json::parse(kQwen2Config);
  qwen_windowed["use_sliding_window"] = true;
  qwen_windowed["max_window_layers"] = 20;
  ModelConfig windowed = parse_model_config(qwen_windowed, "qwen/config.json");
  REQUIRE(windowed.sliding_window.has_value());
  CHECK(*windowed.sliding_window == 32768);
  CHECK(!windowed.sliding_window_layers[19]);
  CHECK(windowed.sliding_window_layers[20]);  // layers from max_window_layers on use the window
  CHECK(!windowed.sliding_window_matters(4096));

  ModelConfig mistral = parse_model_config(json::parse(kMistralConfig), "mistral/config.json");
  CHECK(mistral.architecture == Architecture::mistral);
  REQUIRE(mistral.sliding_window.has_value());
  CHECK(*mistral.sliding_window == 4096);
  CHECK(mistral.sliding_window_layers[0]);
  CHECK(mistral.sliding_window_matters(4097));
  CHECK(!mistral.sliding_window_matters(4096));
}

TEST_CASE("config: transformers 5 spelling (rope_parameters, dtype) and defaults") {
  json document = json::parse(kLlama32Config);
  document.erase("rope_scaling");
  document.erase("rope_theta");
  document.erase("torch_dtype");
  document["dtype"] = "bfloat16";
  document["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 32.0},
                                 {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                                 {"original_max_position_embeddings", 8192}};
  ModelConfig config = parse_model_config(document, "v5/config.json");
  CHECK(config.rope_theta == 500000.0);
  CHECK(config.rope_scaling.type == "llama3");
  CHECK(config.rope_scaling.original_max_position_embeddings == 8192);
  CHECK(config.torch_dtype == "bfloat16");
  // Written back in the same spelling.
  json written = to_json(config);
  CHECK(written.contains("rope_parameters"));
  CHECK(!written.contains("rope_scaling"));
  CHECK(written["rope_parameters"]["rope_theta"] == 500000.0);
  CHECK(written["dtype"] == "bfloat16");

  // Missing optional keys take transformers' defaults.
  json minimal = {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 64}, {"intermediate_size", 128},
                  {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"vocab_size", 100}};
  ModelConfig small = parse_model_config(minimal, "minimal/config.json");
  CHECK(small.num_key_value_heads == 4);
  CHECK(small.head_dim == 16);
  CHECK(small.rope_theta == 10000.0);
  CHECK(small.rms_norm_eps == 1e-6);
  CHECK(small.max_position_embeddings == 2048);
  CHECK(!small.tie_word_embeddings);
  CHECK(!small.bos_token_id);
  CHECK(small.eos_token_ids.empty());
}

TEST_CASE("config: to_json round trips and keeps keys it does not model; save and load") {
  for (const char* text : {kTinyLlamaConfig, kLlama32Config, kQwen2Config, kMistralConfig}) {
    json original = json::parse(text);
    ModelConfig config = parse_model_config(original, "config.json");
    json written = to_json(config);
    ModelConfig again = parse_model_config(written, "written/config.json");
    CHECK(again.architecture == config.architecture);
    CHECK(again.hidden_size == config.hidden_size);
    CHECK(again.num_key_value_heads == config.num_key_value_heads);
    CHECK(again.head_dim == config.head_dim);
    CHECK(again.rope_theta == config.rope_theta);
    CHECK(again.rope_scaling.type == config.rope_scaling.type);
    CHECK(again.rope_scaling.factor == config.rope_scaling.factor);
    CHECK(again.eos_token_ids == config.eos_token_ids);
    CHECK(again.tie_word_embeddings == config.tie_word_embeddings);
    CHECK(again.sliding_window == config.sliding_window);
    CHECK(again.qkv_bias == config.qkv_bias);
    CHECK(written["initializer_range"] == original["initializer_range"]);        // unmodelled key kept
    CHECK(written["transformers_version"] == original["transformers_version"]);  // unmodelled key kept
  }
  // A config built in code gets the keys transformers needs.
  ModelConfig built;
  built.architecture = Architecture::qwen2;
  built.hidden_size = 64;
  built.intermediate_size = 128;
  built.num_hidden_layers = 2;
  built.num_attention_heads = 4;
  built.num_key_value_heads = 2;
  built.head_dim = 16;
  built.vocab_size = 300;
  built.max_position_embeddings = 512;
  built.qkv_bias = true;
  built.sliding_window_layers.assign(2, false);
  built.torch_dtype = "float32";
  fs::path dir = test::temp_dir("config_save");
  save_model_config(built, dir / "config.json");
  json saved = load_json(dir / "config.json");
  CHECK(saved["architectures"] == json::array({"Qwen2ForCausalLM"}));
  CHECK(saved["model_type"] == "qwen2");
  CHECK(saved["use_sliding_window"] == false);
  CHECK(saved["hidden_act"] == "silu");
  CHECK(saved["rope_scaling"].is_null());
  ModelConfig loaded = load_model_config(dir);
  CHECK(loaded.num_key_value_heads == 2);
  CHECK(loaded.qkv_bias);
  CHECK(loaded.torch_dtype == "float32");
}

TEST_CASE("config: unsupported or malformed configs are rejected naming the file and key") {
  auto error_for = [](json document) { return user_error_of([&] { parse_model_config(document, "m/config.json"); }); };
  json base = json::parse(kTinyLlamaConfig);

  json gpt2 = base;
  gpt2["architectures"] = {"GPT2LMHeadModel"};
  std::string message = error_for(gpt2);
  CHECK(message.find("m/config.json: architecture GPT2LMHeadModel is not supported") != std::string::npos);
  CHECK(message.find("LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM") != std::string::npos);

  json mlp_bias = base;
  mlp_bias["mlp_bias"] = true;
  CHECK(error_for(mlp_bias).find("\"mlp_bias\" is true: MLP projections with a bias are not supported") != std::string::npos);

  json yarn = base;
  yarn["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  message = error_for(yarn);
  CHECK(message.find("\"rope_scaling\" has rope type \"yarn\"") != std::string::npos);
  CHECK(message.find("default, linear, llama3") != std::string::npos);

  json incomplete_llama3 = base;
  incomplete_llama3["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  CHECK(error_for(incomplete_llama3).find("\"rope_scaling.low_freq_factor\" is missing") != std::string::npos);

  json no_hidden = base;
  no_hidden.erase("hidden_size");
  CHECK(error_for(no_hidden).find("m/config.json: \"hidden_size\" is missing") != std::string::npos);

  json bad_heads = base;
  bad_heads["num_key_value_heads"] = 5;
  CHECK(error_for(bad_heads).find("\"num_attention_heads\" (32) is not a multiple of num_key_value_heads (5)") !=
        std::string::npos);

  json string_size = base;
  string_size["hidden_size"] = "2048";
  CHECK(error_for(string_size).find("\"hidden_size\" must be an integer, got \"2048\"") != std::string::npos);

  json gelu = base;
  gelu["hidden_act"] = "gelu";
  CHECK(error_for(gelu).find("\"hidden_act\" is \"gelu\"") != std::string::npos);

  fs::path dir = test::temp_dir("config_errors");
  write_bytes(dir / "config.json", "{\"architectures\": [");
  message = user_error_of([&] { load_model_config(dir); });
  CHECK(message.find((dir / "config.json").string() + ": not valid JSON") != std::string::npos);
  CHECK(user_error_of([&] { load_model_config(dir / "missing"); }).find("no config.json") != std::string::npos);
}

// ============================ RoPE frequencies ============================

TEST_CASE("config: rope_inv_freq matches transformers' fp32 init (torch golden values)") {
  // tests/data/rope/rope_reference.json comes from tests/reference/rope_reference.py (torch, with
  // modeling_rope_utils.py's expressions). theta^x here is correctly rounded; torch's CPU pow
  // (SLEEF powf, 1 ulp) rounds a few elements the other way, hence "within 1 ulp, mostly exact".
  // Everything after the pow is plain IEEE fp32 arithmetic, so apply_rope_scaling fed torch's own
  // unscaled frequencies must give torch's scaled ones bit for bit.
  json reference = load_json(test::source_dir() / "tests/data/rope/rope_reference.json");
  size_t total = 0, differing = 0;
  for (const auto& entry : reference["cases"]) {
    CAPTURE(entry["name"].get<std::string>());
    ModelConfig config;
    config.head_dim = entry["head_dim"];
    config.rope_theta = entry["rope_theta"];
    if (!entry["rope_scaling"].is_null()) {
      const json& scaling = entry["rope_scaling"];
      config.rope_scaling.type = scaling["rope_type"];
      config.rope_scaling.factor = scaling["factor"];
      if (config.rope_scaling.type == "llama3") {
        config.rope_scaling.low_freq_factor = scaling["low_freq_factor"];
        config.rope_scaling.high_freq_factor = scaling["high_freq_factor"];
        config.rope_scaling.original_max_position_embeddings = scaling["original_max_position_embeddings"];
      }
    }
    std::vector<uint32_t> default_bits = entry["default_bits"], scaled_bits = entry["scaled_bits"];
    std::vector<float> ours = rope_inv_freq(config);
    REQUIRE(ours.size() == scaled_bits.size());
    for (size_t i = 0; i < ours.size(); i++) {
      int64_t ulps = std::llabs(static_cast<int64_t>(float_bits(ours[i])) - static_cast<int64_t>(scaled_bits[i]));
      CAPTURE(i);
      CHECK(ulps <= 1);
      total++;
      differing += ulps != 0;
    }
    std::vector<float> torch_default(default_bits.size());
    for (size_t i = 0; i < default_bits.size(); i++) torch_default[i] = bits_float(default_bits[i]);
    std::vector<float> scaled = apply_rope_scaling(torch_default, config.rope_scaling);
    for (size_t i = 0; i < scaled.size(); i++) {
      CAPTURE(i);
      CHECK(float_bits(scaled[i]) == scaled_bits[i]);
    }
  }
  MESSAGE("rope_inv_freq: " << differing << " of " << total << " values differ from torch by 1 ulp");
  CHECK(differing * 20 < total);  // at most a few percent
  // Two values that need no reference: inv_freq[0] = 1/theta^0 = 1; for head_dim 4 and
  // theta 10000, inv_freq[1] = 1/10000^0.5 = 0.01 (rounded to fp32).
  ModelConfig small;
  small.head_dim = 4;
  small.rope_theta = 10000.0;
  std::vector<float> values = rope_inv_freq(small);
  CHECK(values[0] == 1.0f);
  CHECK(values[1] == 1.0f / 100.0f);
}

// ============================ tokenizer.json ============================

// Byte-level fixture (tests/reference/make_tokenizer_fixtures.py): the 256 byte tokens have
// id == byte value ("Ġ" = space = 32, "Ċ" = newline = 10, "Ã" = 0xC3 = 195, "©" = 0xA9 = 169);
// merges by rank: 0 h+e=256, 1 l+l=257, 2 ll+o=258, 3 he+llo=259 ("hello"), 4 Ġ+w=260, 5 o+r=261,
// 6 Ġw+or=262, 7 l+d=263, 8 Ġwor+ld=264 ("Ġworld"), 9 e+l=265, 10 3+4=266, 11 Ã+©=267 ("é"),
// 12 Ċ+Ċ=268, 13 '+S=269; "Ġxyz"=270 is in the vocabulary but no merge makes it.
// Llama 3 style: Split(Llama 3 regex, Isolated) then ByteLevel without regex; ignore_merges;
// added tokens <|begin_of_text|>=271, <|end_of_text|>=272, <|eot_id|>=273 (special),
// <mask>=274 (lstrip), <r>=275 (rstrip), "hi"=276 (single_word); template: <|begin_of_text|> $A.
TEST_CASE("tokenizer: byte-level BPE (Llama 3 style) by hand") {
  Tokenizer tokenizer = Tokenizer::load(tokenizer_fixture("bytelevel_llama3.json"));
  // "hello world": the regex gives "hello" and " world" -> "hello", "Ġworld".
  //  "hello" = h e l l o. Candidate pairs: h+e (rank 0), e+l (9), l+l (1). Rank 0: he; rank 1: ll;
  //  then ll+o (2) -> llo; then he+llo (3) -> hello = 259. (e+l at rank 9 is stale by then.)
  //  "Ġworld" = Ġ w o r l d: Ġ+w (4), o+r (5), then Ġw+or (6), l+d (7), Ġwor+ld (8) -> 264.
  CHECK(tokenizer.encode("hello world", false) == ids({259, 264}));
  CHECK(tokenizer.encode("hello world") == ids({271, 259, 264}));  // BOS from the template
  CHECK(tokenizer.adds_bos());
  CHECK(tokenizer.bos_id() == 271u);
  CHECK(tokenizer.eos_id() == 272u);  // <|end_of_text|>
  // Merge priority, not left-to-right: "ell" has e+l (rank 9) and l+l (rank 1): l+l wins, and
  // e+ll is no merge -> e(101), ll(257). A greedy left-to-right merge would give el, l.
  CHECK(tokenizer.encode("ell", false) == ids({101, 257}));
  // "hel": h+e (0) before e+l (9) -> he(256), l(108).
  CHECK(tokenizer.encode("hel", false) == ids({256, 108}));
  // ignore_merges: the pre-token "Ġxyz" is in the vocabulary -> 270 directly, although no merge leads there.
  CHECK(tokenizer.encode(" xyz", false) == ids({270}));
  // Llama 3's regex takes at most 3 digits: "12345" -> "123", "45"; the 3+4 merge cannot apply across them.
  CHECK(tokenizer.encode("12345", false) == ids({49, 50, 51, 52, 53}));
  // Unicode: "café" is one \p{L}+ piece; é = C3 A9 -> Ã © -> merge 11 -> 267.
  CHECK(tokenizer.encode("café", false) == ids({99, 97, 102, 267}));
  // CJK: 你 = E4 BD A0, 好 = E5 A5 BD, no merges -> the six byte ids.
  CHECK(tokenizer.encode("你好", false) == ids({228, 189, 160, 229, 165, 189}));
  // Emoji 👍 = F0 9F 91 8D (a symbol: the " ?[^\s\p{L}\p{N}]+" alternative).
  CHECK(tokenizer.encode("👍", false) == ids({240, 159, 145, 141}));
  // Case-insensitive contractions: "IT'S" -> "IT", "'S" -> I T 'S(269).
  CHECK(tokenizer.encode("IT'S", false) == ids({73, 84, 269}));
  // Whitespace runs: "a  b" -> "a", " " (\s+(?!\S) backs off one space), " b" -> 97, 32, 32 98.
  CHECK(tokenizer.encode("a  b", false) == ids({97, 32, 32, 98}));
  // Trailing spaces are one piece; "\n\n" is one piece (\s*[\r\n]+) -> Ċ+Ċ = 268.
  CHECK(tokenizer.encode("a   ", false) == ids({97, 32, 32, 32}));
  CHECK(tokenizer.encode("a\n\nb", false) == ids({97, 268, 98}));
  // Special tokens in the text are matched before the model: <|begin_of_text|>, "ab" (a b, no merge), <|eot_id|>.
  CHECK(tokenizer.encode("<|begin_of_text|>ab<|eot_id|>", false) == ids({271, 97, 98, 273}));
  CHECK(tokenizer.encode("<|begin_of_text|>ab<|eot_id|>", true) == ids({271, 271, 97, 98, 273}));
  // Text around a special token is pre-tokenized on its own: "a " -> a, " "; " b" -> Ġ b.
  CHECK(tokenizer.encode("a <|eot_id|> b", false) == ids({97, 32, 273, 32, 98}));
  // lstrip: <mask> swallows the space before it: "a", "<mask>", " b".
  CHECK(tokenizer.encode("a <mask> b", false) == ids({97, 274, 32, 98}));
  // rstrip: <r> swallows the spaces after it: "x", "<r>  ", "y".
  CHECK(tokenizer.encode("x<r>  y", false) == ids({120, 275, 121}));
  // single_word: "hi" is the added token only between non-word characters. In "this" it is
  // inside a word, so "this" is t h i s; " there" = Ġ t (h+e) r e.
  CHECK(tokenizer.encode("hi there", false) == ids({276, 32, 116, 256, 114, 101}));
  CHECK(tokenizer.encode("this", false) == ids({116, 104, 105, 115}));
  CHECK(tokenizer.encode("", true) == ids({271}));
  CHECK(tokenizer.encode("", false).empty());
  CHECK(tokenizer.vocab_size() == 277);
  CHECK(tokenizer.token_to_id("Ġworld") == 264u);
  CHECK(tokenizer.token_to_id("<|eot_id|>") == 273u);
  CHECK(tokenizer.id_to_token(259) == "hello");
  CHECK(tokenizer.id_to_token(273) == "<|eot_id|>");
  CHECK(!tokenizer.id_to_token(5000));
  CHECK(tokenizer.is_special(273));
  CHECK(!tokenizer.is_special(274));

  // Decoding reverses the byte-level map and joins; special tokens can be skipped.
  CHECK(tokenizer.decode(ids({271, 259, 264})) == "<|begin_of_text|>hello world");
  CHECK(tokenizer.decode(ids({271, 259, 264}), true) == "hello world");
  CHECK(tokenizer.decode(ids({228, 189})) == "\xef\xbf\xbd");  // half of 你: one U+FFFD, as from_utf8_lossy
  CHECK(tokenizer.decode(ids({99, 5000, 97})) == "ca");         // unknown ids are skipped, as HF does
  for (const char* text : {"hello world", "café 你好 👍!", "a  b\n\n\tc   ", "IT'S 12345 <|eot_id|> x<r>y",
                           "naïve e\u0301 Привет", "hi this"}) {
    CAPTURE(text);
    CHECK(tokenizer.decode(tokenizer.encode(text, false)) == text);
  }
  // The whitespace an lstrip/rstrip token swallowed does not come back (the same in HF).
  CHECK(tokenizer.decode(tokenizer.encode("x<r>  y a <mask>", false)) == "x<r>y a<mask>");
}

TEST_CASE("tokenizer: byte-level variants: GPT-2 regex, prefix space, merges as strings, ignore_merges off") {
  // GPT-2 style fixture: same vocabulary and merges (as "a b" strings), ByteLevel pre-tokenizer
  // with its own regex, add_prefix_space false, <|endoftext|>=271, no template.
  Tokenizer gpt2 = Tokenizer::load(tokenizer_fixture("bytelevel_gpt2.json"));
  CHECK(gpt2.encode("hello world") == ids({259, 264}));
  CHECK(!gpt2.adds_bos());
  CHECK(!gpt2.bos_id());
  CHECK(gpt2.eos_id() == 271u);
  // GPT-2's regex keeps digit runs whole: "12345" -> 1 2 (3+4) 5.
  CHECK(gpt2.encode("12345") == ids({49, 50, 266, 53}));
  // Its contractions are case-sensitive: "IT'S" -> "IT", "'", "S" -> no '+S merge.
  CHECK(gpt2.encode("IT'S") == ids({73, 84, 39, 83}));
  // "\n\n" before a letter: \s+(?!\S) takes one newline, then \s+ the other: two pieces, no Ċ+Ċ.
  CHECK(gpt2.encode("a\n\nb") == ids({97, 10, 10, 98}));
  // Without ignore_merges, "Ġxyz" is spelled out.
  CHECK(gpt2.encode(" xyz") == ids({32, 120, 121, 122}));

  json document = load_json(tokenizer_fixture("bytelevel_gpt2.json"));
  document["pre_tokenizer"]["add_prefix_space"] = true;  // "hello" -> " hello" -> Ġ hello
  Tokenizer prefixed = Tokenizer::from_json(document, "prefixed.json");
  CHECK(prefixed.encode("hello world") == ids({32, 259, 264}));
  CHECK(prefixed.encode(" world") == ids({264}));  // already starts with a space

  json llama3 = load_json(tokenizer_fixture("bytelevel_llama3.json"));
  llama3["model"]["ignore_merges"] = false;
  CHECK(Tokenizer::from_json(llama3, "no_ignore.json").encode(" xyz", false) == ids({32, 120, 121, 122}));

  // Normalizers with a normalized added token: NFKC turns fullwidth "ＨＥＬＬＯ" into "HELLO",
  // Lowercase into "hello"; the added token "HELLO" (normalized: true) is stored normalized as
  // "hello" and matched in the normalized text -> its id 272, not the merges' 259.
  json normalized = load_json(tokenizer_fixture("bytelevel_gpt2.json"));
  normalized["normalizer"] = {{"type", "Sequence"},
                              {"normalizers", json::array({{{"type", "NFKC"}}, {{"type", "Lowercase"}}})}};
  normalized["added_tokens"].push_back({{"id", 272}, {"content", "HELLO"}, {"single_word", false}, {"lstrip", false},
                                        {"rstrip", false}, {"normalized", true}, {"special", false}});
  Tokenizer lowered = Tokenizer::from_json(normalized, "normalized.json");
  CHECK(lowered.encode("\xef\xbc\xa8\xef\xbc\xa5\xef\xbc\xac\xef\xbc\xac\xef\xbc\xaf") == ids({272}));
  CHECK(lowered.encode("Hello World") == ids({272, 264}));  // "hello world" after Lowercase
  CHECK(lowered.decode(ids({272})) == "hello");                // decoded as its normalized form, as HF does
}

TEST_CASE("tokenizer: Qwen2 style: NFC normalizer, one digit per piece, no BOS") {
  // Same byte-level vocabulary and merges; normalizer NFC; Split with Qwen2's regex (\p{N} alone);
  // added <|endoftext|>=271, <|im_start|>=272, <|im_end|>=273; ByteLevel post-processor.
  Tokenizer tokenizer = Tokenizer::load(tokenizer_fixture("bytelevel_qwen2.json"));
  // "e" + U+0301 (combining acute) is composed by NFC into é = C3 A9 -> Ã© = 267.
  CHECK(tokenizer.encode("e\u0301") == ids({267}));
  CHECK(tokenizer.decode(tokenizer.encode("e\u0301")) == "é");  // the normalized text comes back
  // One digit per piece: "12345" -> 1 2 3 4 5; the 3+4 merge never applies.
  CHECK(tokenizer.encode("12345") == ids({49, 50, 51, 52, 53}));
  CHECK(tokenizer.encode("<|im_start|>hello<|im_end|>") == ids({272, 259, 273}));
  CHECK(!tokenizer.adds_bos());
  CHECK(!tokenizer.bos_id());
  CHECK(tokenizer.eos_id() == 271u);  // <|endoftext|> (Qwen2's tokenizer_config names <|im_end|> for chat models)
}

// Sentencepiece fixtures: <unk>=0 <s>=1 </s>=2, <0x00>..<0xFF> = 3..258 (byte b -> 3 + b),
// pieces ▁=259 a=260 b=261 c=262 h=263 e=264 l=265 o=266 w=267 r=268 d=269 é=270 t=271;
// merges by rank: 0 ▁+h=272, 1 l+l=273, 2 ▁h+e=274, 3 ll+o=275, 4 ▁he+llo=276, 5 ▁+w=277,
// 6 o+r=278, 7 ▁w+or=279, 8 l+d=280, 9 ▁wor+ld=281, 10 ▁+▁=282, 11 e+l=283.
// byte_fallback, unk <unk>, fuse_unk; template <s> $A.
TEST_CASE("tokenizer: sentencepiece-style BPE (Llama 2 style) by hand") {
  // Normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer: the whole text is one word.
  Tokenizer tokenizer = Tokenizer::load(tokenizer_fixture("sentencepiece_llama2.json"));
  // "hello world" -> "▁hello▁world": ▁+h (0) -> ▁h; l+l (1); ▁h+e (2); ll+o (3); ▁he+llo (4) -> 276;
  // ▁+w (5), o+r (6), ▁w+or (7), l+d (8), ▁wor+ld (9) -> 281.
  CHECK(tokenizer.encode("hello world", false) == ids({276, 281}));
  CHECK(tokenizer.encode("hello world") == ids({1, 276, 281}));
  CHECK(tokenizer.adds_bos());
  CHECK(tokenizer.bos_id() == 1u);
  CHECK(tokenizer.eos_id() == 2u);
  // Byte fallback: "hi" -> ▁ h i; i is not a piece -> <0x69> = 3 + 0x69 = 108; ▁+h -> 272.
  CHECK(tokenizer.encode("hi", false) == ids({272, 108}));
  CHECK(tokenizer.encode("é", false) == ids({259, 270}));  // é is a piece
  // 你 = E4 BD A0 -> <0xE4>=231 <0xBD>=192 <0xA0>=163.
  CHECK(tokenizer.encode("你", false) == ids({259, 231, 192, 163}));
  // 👍 = F0 9F 91 8D -> 243 162 148 144.
  CHECK(tokenizer.encode("👍", false) == ids({259, 243, 162, 148, 144}));
  // Whitespace runs: "a  b" -> ▁a▁▁b: ▁+▁ (10) -> 282. "a   b" -> ▁a▁▁▁b: two ▁+▁ candidates of
  // equal rank overlap; the leftmost wins -> ▁▁, ▁.
  CHECK(tokenizer.encode("a  b", false) == ids({259, 260, 282, 261}));
  CHECK(tokenizer.encode("a   b", false) == ids({259, 260, 282, 259, 261}));
  // Priority again: "ell" -> ▁ e l l: l+l (1) beats e+l (11).
  CHECK(tokenizer.encode("ell", false) == ids({259, 264, 273}));
  // Special tokens are cut out first and the normalizer runs on each remaining piece, so "hello"
  // between them still gets its ▁ (HF's legacy Llama behaviour).
  CHECK(tokenizer.encode("<s>hello</s>", false) == ids({1, 276, 2}));

  // Decoder Replace(▁ -> " "), ByteFallback, Fuse, Strip(1 leading space).
  CHECK(tokenizer.decode(ids({1, 276, 281}), true) == "hello world");
  CHECK(tokenizer.decode(ids({1, 276, 281})) == "<s> hello world");  // as HF: <s> keeps the space after it
  CHECK(tokenizer.decode(ids({259, 231, 192, 163})) == "你");
  CHECK(tokenizer.decode(ids({259, 231})) == "\xef\xbf\xbd");  // a lone lead byte: U+FFFD per byte
  for (const char* text : {"hello world", "hi é 你好 👍", "a   b", "Привет, мир!", "tab\there"}) {
    CAPTURE(text);
    CHECK(tokenizer.decode(tokenizer.encode(text, false)) == std::string(text));
    CHECK(tokenizer.decode(tokenizer.encode(text), true) == std::string(text));  // BOS skipped
  }

  // Without byte fallback, unknown characters become <unk>; fuse_unk fuses a run into one.
  json document = load_json(tokenizer_fixture("sentencepiece_llama2.json"));
  document["model"]["byte_fallback"] = false;
  CHECK(Tokenizer::from_json(document, "unk.json").encode("你好", false) == ids({259, 0}));
  document["model"]["fuse_unk"] = false;
  CHECK(Tokenizer::from_json(document, "unk.json").encode("你好", false) == ids({259, 0, 0}));
}

TEST_CASE("tokenizer: Metaspace pre-tokenizer (prepend_scheme first/always, split)") {
  // Same vocabulary; no normalizer; Metaspace(▁, prepend_scheme "first", split false).
  Tokenizer tokenizer = Tokenizer::load(tokenizer_fixture("metaspace_mistral.json"));
  CHECK(tokenizer.encode("hello world") == ids({1, 276, 281}));
  // "first": only the piece at the start of the text gets ▁; after <s> the piece "hello" does not:
  // h e l l o: l+l (1), ll+o (3); h+e and e+llo are no merges -> h(263) e(264) llo(275).
  CHECK(tokenizer.encode("<s>hello", false) == ids({1, 263, 264, 275}));
  // Decoder ByteFallback + Metaspace: the first token's ▁ is dropped, the others become spaces.
  CHECK(tokenizer.decode(ids({276, 281})) == "hello world");

  json document = load_json(tokenizer_fixture("metaspace_mistral.json"));
  document["pre_tokenizer"]["prepend_scheme"] = "always";
  CHECK(Tokenizer::from_json(document, "always.json").encode("<s>hello", false) == ids({1, 276}));
  // split: true cuts before every ▁: "▁a▁▁b" -> "▁a", "▁", "▁b" (no ▁+▁ across pieces).
  document["pre_tokenizer"]["split"] = true;
  CHECK(Tokenizer::from_json(document, "split.json").encode("a  b", false) == ids({259, 260, 259, 259, 261}));
  document["pre_tokenizer"]["split"] = false;
  CHECK(Tokenizer::from_json(document, "nosplit.json").encode("a  b", false) == ids({259, 260, 282, 261}));
}

TEST_CASE("tokenizer: agrees with the independent Python implementation on every fixture") {
  // tests/data/tokenizers/reference_ids.json: tests/reference/tokenizer_reference.py (Python
  // `regex` module, quadratic BPE) on 41 texts x 2 add_special_tokens settings per fixture.
  json reference = load_json(tokenizer_fixture("reference_ids.json"));
  size_t cases = 0;
  for (auto& [fixture, rows] : reference.items()) {
    Tokenizer tokenizer = Tokenizer::load(tokenizer_fixture(fixture));
    for (const auto& row : rows) {
      std::string text = row[0];
      bool add_special = row[1];
      std::vector<uint32_t> expected = row[2];
      CAPTURE(fixture);
      CAPTURE(text);
      CAPTURE(add_special);
      CHECK(tokenizer.encode(text, add_special) == expected);
      cases++;
    }
  }
  CHECK(cases >= 300);
}

TEST_CASE("tokenizer: tokenizer_config.json names bos/eos") {
  fs::path dir = test::temp_dir("tokenizer_config");
  fs::copy_file(tokenizer_fixture("bytelevel_gpt2.json"), dir / "tokenizer.json");
  write_file_atomically(dir / "tokenizer_config.json",
                        R"({"bos_token": {"content": "<|endoftext|>", "__type": "AddedToken"}, "eos_token": "<|endoftext|>"})");
  Tokenizer tokenizer = Tokenizer::load(dir);
  CHECK(tokenizer.bos_id() == 271u);
  CHECK(tokenizer.eos_id() == 271u);
  CHECK(!tokenizer.adds_bos());  // the post-processor (ByteLevel) adds nothing
  CHECK(!tokenizer.adds_eos());

  // LlamaTokenizerFast takes add_bos_token/add_eos_token from tokenizer_config.json over the
  // tokenizer.json template (transformers' update_post_processor).
  fs::path llama_dir = test::temp_dir("tokenizer_config_llama");
  fs::copy_file(tokenizer_fixture("sentencepiece_llama2.json"), llama_dir / "tokenizer.json");
  json config = {{"tokenizer_class", "LlamaTokenizerFast"}, {"bos_token", "<s>"}, {"eos_token", "</s>"},
                 {"add_bos_token", false}, {"add_eos_token", true}};
  write_file_atomically(llama_dir / "tokenizer_config.json", config.dump());
  Tokenizer eos_only = Tokenizer::load(llama_dir);
  CHECK(eos_only.encode("hello world") == ids({276, 281, 2}));
  CHECK(!eos_only.adds_bos());
  CHECK(eos_only.adds_eos());
  config.erase("add_bos_token");  // default true
  write_file_atomically(llama_dir / "tokenizer_config.json", config.dump());
  CHECK(Tokenizer::load(llama_dir).encode("hello world") == ids({1, 276, 281, 2}));
}

TEST_CASE("tokenizer: malformed tokenizer.json gives errors naming the file and the JSON path") {
  json base = load_json(tokenizer_fixture("bytelevel_llama3.json"));
  auto error_for = [](const json& document) {
    return user_error_of([&] { Tokenizer::from_json(document, "models/x/tokenizer.json"); });
  };
  json bad_merge = base;
  bad_merge["model"]["merges"][12] = {"a", "b", "c"};
  std::string message = error_for(bad_merge);
  CHECK(message.find("models/x/tokenizer.json: model.merges[12]") != std::string::npos);
  CHECK(message.find("must be \"a b\" or [\"a\", \"b\"]") != std::string::npos);
  CHECK(message.find("HINT: ") != std::string::npos);

  json legacy_bad = load_json(tokenizer_fixture("bytelevel_gpt2.json"));
  legacy_bad["model"]["merges"][3] = "a b c";
  CHECK(error_for(legacy_bad).find("model.merges[3]: \"a b c\" must be two tokens separated by one space") !=
        std::string::npos);

  json unknown_token = base;
  unknown_token["model"]["merges"][5] = {"o", "zz"};
  CHECK(error_for(unknown_token).find("model.merges[5]: token \"zz\" is not in model.vocab") != std::string::npos);

  json unmerged = base;
  unmerged["model"]["merges"].push_back({"a", "b"});  // "ab" is not in the vocabulary
  CHECK(error_for(unmerged).find("model.merges[14]: the merged token \"ab\" is not in model.vocab") != std::string::npos);

  json bad_regex = base;
  bad_regex["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  message = error_for(bad_regex);
  CHECK(message.find("pre_tokenizer.pretokenizers[0].pattern.Regex: invalid regular expression") != std::string::npos);

  json unknown_pre = base;
  unknown_pre["pre_tokenizer"]["pretokenizers"][1]["type"] = "UnicodeScripts";
  message = error_for(unknown_pre);
  CHECK(message.find("pre_tokenizer.pretokenizers[1]: pre-tokenizer type \"UnicodeScripts\" is not supported") !=
        std::string::npos);
  CHECK(message.find("ByteLevel, Split, Metaspace") != std::string::npos);

  json unigram = base;
  unigram["model"]["type"] = "Unigram";
  CHECK(error_for(unigram).find("model.type: model type \"Unigram\" is not supported") != std::string::npos);

  json bad_vocab = base;
  bad_vocab["model"]["vocab"]["hello"] = -3;
  CHECK(error_for(bad_vocab).find("model.vocab.hello: must be a non-negative integer, got -3") != std::string::npos);

  json no_model = base;
  no_model.erase("model");
  CHECK(error_for(no_model).find("models/x/tokenizer.json: model: is missing") != std::string::npos);

  json bad_template = base;
  bad_template["post_processor"]["processors"][1]["single"][0]["SpecialToken"]["id"] = "<nope>";
  CHECK(error_for(bad_template).find("post_processor.processors[1].single[0]: special token \"<nope>\" is not defined") !=
        std::string::npos);

  json bad_unk = load_json(tokenizer_fixture("sentencepiece_llama2.json"));
  bad_unk["model"]["unk_token"] = "<missing>";
  CHECK(error_for(bad_unk).find("model.unk_token: \"<missing>\" is not in model.vocab") != std::string::npos);

  fs::path dir = test::temp_dir("tokenizer_errors");
  write_bytes(dir / "tokenizer.json", "{\"model\": ");
  message = user_error_of([&] { Tokenizer::load(dir); });
  CHECK(message.find((dir / "tokenizer.json").string() + ": not valid JSON") != std::string::npos);
  CHECK(user_error_of([&] { Tokenizer::load(dir / "nowhere"); }).find("no tokenizer.json") != std::string::npos);

  Tokenizer tokenizer = Tokenizer::from_json(base, "ok.json");
  CHECK(user_error_of([&] { tokenizer.encode(std::string("ab\xff", 3)); }).find("not valid UTF-8 (at byte 2)") !=
        std::string::npos);
}

}  // TEST_SUITE
