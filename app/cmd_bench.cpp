// `vktune bench kernels [--op NAME] [--shape TEXT] [--repeat N]`: GPU time, GFLOP/s, GB/s and the fraction of
// this device's measured roofline for each kernel on a few realistic shapes (bench/).
// `vktune bench tune [--op NAME] [--shape TEXT]`: autotunes those shapes' matmul tiles up front (bench/tune.cpp).
// `vktune bench lora-init [--init NAME...] [--shape OUTxIN|llama-3.2-1b] [--rank R]`: host seconds of PiSSA/OLoRA.
#include <cstdio>
#include <string>

#include "app/commands.hpp"
#include "bench/kernel_bench.hpp"
#include "bench/lora_init_bench.hpp"
#include "bench/tune.hpp"
#include "engine/vk/context.hpp"

namespace vkt::app {

void add_bench_command(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  auto* kernels = bench->add_subcommand("kernels", "Time each kernel on realistic shapes (timestamp queries)");
  static bench::KernelBenchOptions options;
  static bool list = false;
  kernels->add_option("--op", options.op, "Only the rows of this op (e.g. matmul_nt)");
  kernels->add_option("--shape", options.shape, "Only the rows whose shape contains this text (e.g. 'K=1024 fp32')");
  kernels->add_option("--repeat", options.repeat, "Timed runs per row; the median is reported")
      ->check(CLI::PositiveNumber);
  kernels->add_flag("--list", list, "List the rows without running them");
  kernels->callback([] {
    if (list) {
      for (const auto& row : bench::kernel_benchmarks()) std::printf("%-12s %s\n", row.op.c_str(), row.shape.c_str());
      return;
    }
    vk::Context context;
    auto report = bench::run_kernel_benchmarks(context, options);
    std::printf("%s", bench::format_kernel_bench_report(report).c_str());
  });

  auto* tune = bench->add_subcommand(
      "tune", "Autotune the matmul tiles of the kernel-bench shapes now and cache the winners for this device");
  static bench::TuneOptions tune_options;
  tune->add_option("--op", tune_options.op, "Only the rows of this op (e.g. matmul_nt)");
  tune->add_option("--shape", tune_options.shape, "Only the rows whose shape contains this text");
  tune->callback([] {
    vk::Context context;
    std::printf("%s", bench::format_tune_report(bench::run_autotune(context, tune_options)).c_str());
  });

  auto* lora_init = bench->add_subcommand(
      "lora-init",
      "Host seconds of --init-lora-weights pissa / pissa_niter_K / olora on random weights of real shapes");
  static bench::LoraInitBenchOptions lora_init_options;
  lora_init->add_option("--init", lora_init_options.inits, "Initialisations to time")->expected(1, -1);
  lora_init->add_option("--shape", lora_init_options.shape, "OUTxIN of one weight, or llama-3.2-1b (every module)");
  lora_init->add_option("--rank", lora_init_options.rank, "LoRA r")->check(CLI::PositiveNumber);
  lora_init->callback([] { std::printf("%s", bench::run_lora_init_bench(lora_init_options).c_str()); });
}

}  // namespace vkt::app
