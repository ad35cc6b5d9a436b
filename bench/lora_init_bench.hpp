#pragma once
// `vktune bench lora-init`: host time of --init-lora-weights pissa / pissa_niter_K / olora
// (engine/model/lora_init.hpp) on random weights of real shapes, one module at a time, and the sum
// over a whole model's adapted modules (Llama-3.2-1B: 16 layers of q, k, v, o, gate, up, down).
#include <cstdint>
#include <string>
#include <vector>

namespace vkt::bench {

struct LoraInitBenchOptions {
  std::vector<std::string> inits{"pissa_niter_4", "olora", "pissa"};
  std::string shape = "2048x5632";  // out x in of one weight, or "llama-3.2-1b" for every module of that model
  uint32_t rank = 16;
};

// One line per (init, shape): seconds per weight and, for a model, seconds for all its modules.
std::string run_lora_init_bench(const LoraInitBenchOptions& options);

}  // namespace vkt::bench
