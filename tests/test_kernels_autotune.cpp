// Autotuning (engine/kernels/autotune.hpp) on lavapipe: every matmul candidate gives bit-identical
// results (each forced in turn, both shader bodies, dense, 16-bit and quantized operands); the first
// use of a shape class times its candidates and caches the winner on disk, a fresh process (memory
// forgotten) reuses it without timing anything, a corrupt cache file is ignored and rewritten,
// VKT_NO_AUTOTUNE=1 times nothing; `vktune bench tune` run twice times nothing the second time.
// ctest runs the other suites with autotuning off (VKT_NO_AUTOTUNE=1): these cases turn it on.
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "engine/base/files.hpp"
#include "engine/base/half.hpp"
#include "engine/kernels/autotune.hpp"
#include "engine/kernels/matmul.hpp"
#include "engine/quant/device.hpp"
#include "engine/quant/quantize.hpp"
#include "tests/kernel_harness.hpp"

using namespace vkt;
using kernels::DType;
using test::ScopedEnv;
using vkt::test::context;
using vkt::test::Guarded;

namespace {

// Settings changed for one case and put back after it.
struct ScopedAutotune {
  kernels::AutotuneSettings saved = kernels::autotune_settings();
  std::filesystem::path dir;
  explicit ScopedAutotune(kernels::AutotuneMode mode, const std::string& tag = "") {
    kernels::autotune_settings().mode = mode;
    if (!tag.empty()) {
      dir = std::filesystem::temp_directory_path() / ("vktune-autotune-" + tag + "-" + std::to_string(::getpid()));
      std::filesystem::remove_all(dir);
      kernels::autotune_settings().cache_dir = dir;
    }
    kernels::autotune_forget_memory();
  }
  ~ScopedAutotune() {
    kernels::autotune_settings() = saved;
    kernels::autotune_forget_memory();
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }
};

enum class Form { nt, nn, tn };

// One product with random operands; returns C's raw bits. `w_quant` quantizes W (nt/nn only).
struct Product {
  Form form;
  uint32_t m, n, k;
  DType act = DType::f32;
  bool quantized = false;
};

std::vector<uint32_t> run_product(const Product& product) {
  uint32_t m = product.m, n = product.n, k = product.k;
  // Operand element counts of each form (matmul.hpp): nt A[m,k] W[n,k] C[m,n]; nn A[m,n] W[n,k] C[m,k];
  // tn A[m,n] B[m,k] C[n,k].
  size_t a_count = product.form == Form::nt ? size_t(m) * k : size_t(m) * n;
  size_t w_count = product.form == Form::tn ? size_t(m) * k : size_t(n) * k;
  size_t c_count = product.form == Form::nt ? size_t(m) * n : product.form == Form::nn ? size_t(m) * k : size_t(n) * k;
  DType c_type = product.form == Form::tn ? DType::f32 : product.act;
  auto a = test::random_floats(a_count, 11);
  auto w = test::random_floats(w_count, 12);
  std::optional<Guarded> a_device;
  if (product.act == DType::bf16) {
    std::vector<uint16_t> raw(a.size());
    for (size_t i = 0; i < a.size(); i++) raw[i] = float_to_bf16(a[i]);
    a_device.emplace(Guarded::of_raw(raw, "A"));
  } else {
    a_device.emplace(Guarded::of(a, "A"));
  }
  Guarded w_device = Guarded::of(w, "W");
  Guarded c_device(c_count * (c_type == DType::f32 ? 4 : 2), "C");
  std::optional<quant::DeviceWeight> q_device;
  if (product.quantized) {
    quant::QuantizedWeight q = quant::quantize(w.data(), n, k, kernels::WeightFormat::nf4, {64, true}, "W");
    q_device.emplace(quant::upload(context(), q, "W"));
  }
  kernels::WeightRef w_ref = q_device ? q_device->ref : kernels::dense_f32(w_device.range());
  context().run([&](vk::Recorder& r) {
    if (product.form == Form::nt)
      kernels::matmul_nt(r, a_device->range(), product.act, w_ref, c_device.range(), c_type, m, n, k);
    else if (product.form == Form::nn)
      kernels::matmul_nn(r, a_device->range(), product.act, w_ref, c_device.range(), c_type, m, n, k);
    else
      kernels::matmul_tn(r, a_device->range(), product.act, w_device.range(), DType::f32, c_device.range(), m, n, k);
  });
  CHECK(c_device.guard_intact());
  std::vector<uint32_t> bits;
  if (c_type == DType::f32) return c_device.read<uint32_t>();
  for (uint16_t half : c_device.read<uint16_t>()) bits.push_back(half);
  return bits;
}

// Rows and columns of C (the extents matmul_candidates sees, before any transpose).
std::pair<uint32_t, uint32_t> output_shape(const Product& product) {
  if (product.form == Form::nt) return {product.m, product.n};
  if (product.form == Form::nn) return {product.m, product.k};
  return {product.n, product.k};
}

void every_candidate_identical(const Product& product, bool tiled_body) {
  std::optional<ScopedEnv> tiled;
  if (tiled_body) tiled.emplace("VKT_DISABLE_MATMUL_DIRECT", "1");
  auto [rows, cols] = output_shape(product);
  std::vector<kernels::MatmulTiling> candidates = kernels::matmul_candidates(context(), rows, cols, !product.quantized);
  std::string what = std::to_string(int(product.form)) + " " + std::to_string(product.m) + "x" +
                     std::to_string(product.n) + "x" + std::to_string(product.k) + (product.quantized ? " nf4" : "") +
                     (product.act == DType::bf16 ? " bf16" : "") + (tiled_body ? " tiled" : " default body");
  INFO(what);
  REQUIRE(candidates.size() >= 2);  // something to tune in every shape below
  ScopedAutotune scoped(kernels::AutotuneMode::on);
  kernels::autotune_settings().forced_candidate = 0;
  std::vector<uint32_t> reference = run_product(product);
  for (uint32_t i = 1; i < candidates.size(); i++) {
    kernels::autotune_settings().forced_candidate = i;
    std::string name = candidates[i].name();
    INFO(name);
    std::vector<uint32_t> bits = run_product(product);
    // The same summation order over P in every candidate: bit for bit, no tolerance.
    CHECK(bits == reference);
  }
}

}  // namespace

TEST_SUITE("autotune") {
TEST_CASE("autotune: every matmul candidate gives bit-identical results") {
  // Shapes that are not multiples of any tile; nt (forward), nn (dX), tn (dW); bf16 activations;
  // an NF4 + double-quant weight (dequantized in the load stage of each candidate).
  // Each candidate is one pipeline compile on lavapipe (~0.5 s): the tiled body (GPUs) gets the two
  // nt products only.
  every_candidate_identical({Form::nt, 70, 65, 36}, false);
  every_candidate_identical({Form::nn, 70, 33, 68}, false);
  every_candidate_identical({Form::nn, 70, 1030, 68}, false);  // inner passes (the same in every candidate)
  every_candidate_identical({Form::tn, 40, 70, 66}, false);
  every_candidate_identical({Form::nt, 70, 65, 64, DType::bf16}, false);
  every_candidate_identical({Form::nt, 70, 65, 128, DType::f32, true}, false);
  every_candidate_identical({Form::nt, 70, 65, 36}, true);
  every_candidate_identical({Form::nt, 70, 65, 128, DType::f32, true}, true);
}

TEST_CASE("autotune: the first use times and caches, a new process reuses the cache") {
  ScopedAutotune scoped(kernels::AutotuneMode::on, "cache");
  Product product{Form::nt, 96, 80, 64};
  auto [rows, cols] = output_shape(product);
  size_t candidate_count = kernels::matmul_candidates(context(), rows, cols).size();
  REQUIRE(candidate_count >= 2);
  std::filesystem::path file = kernels::autotune_cache_file(context());
  CHECK(file.parent_path() == scoped.dir);
  CHECK(file.filename().string().find(context().caps().device_uuid) != std::string::npos);

  kernels::AutotuneCounters before = kernels::autotune_counters();
  std::vector<uint32_t> first = run_product(product);
  kernels::AutotuneCounters after_first = kernels::autotune_counters();
  CHECK(after_first.classes_timed == before.classes_timed + 1);
  CHECK(after_first.candidate_runs == before.candidate_runs + candidate_count);
  REQUIRE(std::filesystem::exists(file));
  std::string cached = read_text_file(file);
  CHECK(cached.find("\"winner\"") != std::string::npos);
  CHECK(cached.find("matmul_direct|lr|000|w0|r128|c128|k64") != std::string::npos);
  auto entries = kernels::autotune_entries(context());
  REQUIRE(entries.size() == 1);
  CHECK(entries[0].candidate_ms.size() == candidate_count);

  // The same class again in this process: the in-memory winner, nothing timed.
  run_product({Form::nt, 100, 70, 60});
  CHECK(kernels::autotune_counters().classes_timed == after_first.classes_timed);

  // A new process: the winner comes from the file, nothing is timed, the result is the same.
  kernels::autotune_forget_memory();
  std::vector<uint32_t> second = run_product(product);
  kernels::AutotuneCounters after_second = kernels::autotune_counters();
  CHECK(after_second.classes_timed == after_first.classes_timed);
  CHECK(after_second.candidate_runs == after_first.candidate_runs);
  CHECK(after_second.classes_from_disk == after_first.classes_from_disk + 1);
  CHECK(second == first);

  // A corrupt file: ignored (a warning), the class timed again, the file rewritten whole.
  std::ofstream(file) << "{\"format\": \"vktune-autotune\", \"classes\": {\"x\": ";
  kernels::autotune_forget_memory();
  std::vector<uint32_t> third = run_product(product);
  CHECK(kernels::autotune_counters().classes_timed == after_second.classes_timed + 1);
  CHECK(third == first);
  CHECK(nlohmann::json::parse(read_text_file(file))["classes"].size() == 1);
}

TEST_CASE("autotune: VKT_NO_AUTOTUNE=1 times nothing and uses the defaults") {
  ScopedAutotune scoped(kernels::AutotuneMode::from_environment, "off");
  ScopedEnv off("VKT_NO_AUTOTUNE", "1");
  CHECK_FALSE(kernels::autotune_enabled());
  kernels::AutotuneCounters before = kernels::autotune_counters();
  run_product({Form::nt, 96, 80, 64});
  CHECK(kernels::autotune_counters().candidate_runs == before.candidate_runs);
  CHECK_FALSE(std::filesystem::exists(kernels::autotune_cache_file(context())));
}
}

TEST_SUITE("autotune") {
TEST_CASE("autotune: vktune bench tune times on the first run and reuses the cache on the second") {
  std::filesystem::path cache = test::temp_dir("autotune-bench-tune");
  // VKT_NO_AUTOTUNE=1 as ctest sets it: `bench tune` asked for explicitly tunes all the same.
  std::string command = "ASAN_OPTIONS=detect_leaks=0 VKT_NO_AUTOTUNE=1 XDG_CACHE_HOME='" + cache.string() + "' '" +
                        (test::binary_dir() / "vktune").string() +
                        "' bench tune --op matmul_nt --shape 'lora A fwd' 2>&1";
  const auto first = test::run_command(command);
  INFO(first.second);
  REQUIRE(first.first == 0);
  CHECK(first.second.find("autotune: 1 shape classes timed") != std::string::npos);
  CHECK(first.second.find(cache.string() + "/vktune/autotune-") != std::string::npos);
  const auto second = test::run_command(command);
  INFO(second.second);
  REQUIRE(second.first == 0);
  CHECK(second.second.find("autotune: 0 shape classes timed (0 candidate runs), 1 from") != std::string::npos);
  CHECK(second.second.find("(cached)") != std::string::npos);
  std::filesystem::remove_all(cache);
}
}
