#include "bench/lora_init_bench.hpp"

#include <chrono>
#include <cstdio>
#include <random>

#include "engine/base/error.hpp"
#include "engine/model/lora_init.hpp"

namespace vkt::bench {

namespace {

struct WeightShape {
  const char* name;
  uint64_t out, in;
  uint32_t per_layer;  // modules of this shape in one layer
};

// Llama-3.2-1B (hidden 2048, 8 kv heads of 64, intermediate 8192, 16 layers), all-linear.
constexpr uint32_t llama_1b_layers = 16;
const std::vector<WeightShape> llama_1b = {{"q_proj/o_proj", 2048, 2048, 2},
                                           {"k_proj/v_proj", 512, 2048, 2},
                                           {"gate/up", 8192, 2048, 2},
                                           {"down", 2048, 8192, 1}};

std::vector<float> random_weight(uint64_t out, uint64_t in) {
  std::mt19937 generator(1234);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> weight(out * in);
  for (float& value : weight) value = normal(generator);
  return weight;
}

double seconds_for(const model::LoraInit& init, const WeightShape& shape, uint32_t rank) {
  std::vector<float> weight = random_weight(shape.out, shape.in);
  const model::RandomizedSvd randomized{init.niter, 7, 0};
  const auto start = std::chrono::steady_clock::now();
  if (init.kind == model::LoraInitKind::olora)
    model::olora_init(weight, shape.out, shape.in, rank, 2.0f);
  else
    model::pissa_init(weight, shape.out, shape.in, rank, 2.0f, init.randomized ? &randomized : nullptr);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

std::string run_lora_init_bench(const LoraInitBenchOptions& options) {
  std::vector<WeightShape> shapes;
  const bool model_shape = options.shape == "llama-3.2-1b";
  if (model_shape) {
    shapes = llama_1b;
  } else {
    unsigned long long out = 0, in = 0;
    if (std::sscanf(options.shape.c_str(), "%llux%llu", &out, &in) != 2 || out == 0 || in == 0)
      throw UserError("bench lora-init: --shape " + options.shape + " is not OUTxIN", "e.g. 2048x5632 or llama-3.2-1b");
    shapes.push_back({options.shape.c_str(), out, in, 1});
  }
  std::string report;
  char line[256];
  for (const std::string& name : options.inits) {
    const model::LoraInit init = model::parse_lora_init(name);
    if (!init.changes_base())
      throw UserError("bench lora-init: " + name + " runs no SVD/QR", "pissa, pissa_niter_K or olora");
    double model_total = 0;
    for (const WeightShape& shape : shapes) {
      const double seconds = seconds_for(init, shape, options.rank);
      model_total += seconds * shape.per_layer * llama_1b_layers;
      std::snprintf(line, sizeof line, "%-14s %-14s %5llux%-5llu r=%-3u %9.3f s/weight\n", name.c_str(), shape.name,
                    static_cast<unsigned long long>(shape.out), static_cast<unsigned long long>(shape.in), options.rank,
                    seconds);
      report += line;
    }
    if (model_shape) {
      std::snprintf(line, sizeof line, "%-14s llama-3.2-1b all %u modules: %.1f s (sum of the rows x modules)\n",
                    name.c_str(), 7 * llama_1b_layers, model_total);
      report += line;
    }
  }
  return report;
}

}  // namespace vkt::bench
