#pragma once
// `vktune bench kernels`: GPU time of each kernel on a few realistic shapes, from timestamp
// queries (median over repeats), with GFLOP/s, GB/s and the fraction of this device's own
// roofline measured in the same run (the best matmul GFLOP/s found and the GB/s of a buffer
// copy). Timing is reported, never asserted.
//
// Adding rows: write a function that calls register_kernel_benchmark() once per (op, shape)
// (see bench/matmul_bench.cpp) and call it from register_builtin_kernel_benchmarks() in
// bench/kernel_bench.cpp.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/kernels/types.hpp"
#include "engine/vk/context.hpp"
#include "engine/vk/recorder.hpp"

namespace vkt::bench {

// Records one run of the benchmarked work (one or more dispatches) into a sequence.
using RecordFn = std::function<void(vk::Recorder&)>;

struct KernelBenchmark {
  std::string op;     // kernel name, as `--op` selects it, e.g. "matmul_nt"
  std::string shape;  // what the row measures, e.g. "M=1024 N=1024 K=1024 fp32"
  double flops = 0;   // floating-point operations per run (0 for data-movement ops)
  double bytes = 0;   // minimum bytes read + written per run
  // Allocates and fills the tensors (called once, only when the row is selected) and returns
  // the function that records one run; the function keeps its tensors alive.
  std::function<RecordFn(vk::Context&)> setup;
  // Optional: false skips the row on this device (e.g. fp16 storage missing).
  std::function<bool(const vk::Capabilities&)> supported;
};

void register_kernel_benchmark(KernelBenchmark benchmark);
// Every registered row, the built-in ones first registered on the first call.
const std::vector<KernelBenchmark>& kernel_benchmarks();

// A device tensor of `count` random values in [-1, 1) stored as `type`; shared so that RecordFns
// can keep it alive.
std::shared_ptr<vk::Buffer> random_tensor(vk::Context& context, size_t count, kernels::DType type, uint32_t seed,
                                          const std::string& name);

struct KernelBenchOptions {
  std::string op;        // only rows of this op (empty: all)
  std::string shape;     // only rows whose shape contains this text (empty: all)
  int repeat = 5;        // timed runs per row; the median is reported
  bool roofline = true;  // measure copy bandwidth for the roofline column
};

struct KernelBenchResult {
  std::string op, shape;
  double flops = 0, bytes = 0;  // per run, as registered
  double median_ms = 0, min_ms = 0;
  // Median CPU time this process spent per run. On a CPU driver (lavapipe) that is the work
  // itself, and unlike wall time it barely changes when other processes share the cores.
  double cpu_ms = 0;
  double gflops = 0;             // flops / median time
  double gbps = 0;               // bytes / median time
  double roofline_fraction = 0;  // max(flops/peak, bytes/bandwidth) / median time
  bool timestamps = true;        // false: host wall-clock time (device without timestamps)
};

struct KernelBenchReport {
  std::vector<KernelBenchResult> rows;
  double peak_gflops = 0;  // the best GFLOP/s of any row in this run
  double copy_gbps = 0;    // vkCmdCopyBuffer bandwidth (bytes read + written)
  std::string device;
};

KernelBenchReport run_kernel_benchmarks(vk::Context& context, const KernelBenchOptions& options);
std::string format_kernel_bench_report(const KernelBenchReport& report);

// Bandwidth of a device-to-device buffer copy of `bytes`, in GB/s counting bytes read + written;
// median over `repeat` host-timed submissions.
double measure_copy_gbps(vk::Context& context, size_t bytes, int repeat);

// Built-in rows, one function per kernel group.
void register_matmul_benchmarks();
void register_attention_benchmarks();

}  // namespace vkt::bench
