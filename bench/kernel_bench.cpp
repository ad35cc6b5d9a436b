#include "bench/kernel_bench.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include <sys/resource.h>

#include "engine/base/error.hpp"
#include "engine/base/half.hpp"

namespace vkt::bench {
namespace {

std::vector<KernelBenchmark>& registry() {
  static std::vector<KernelBenchmark> rows;
  return rows;
}

void register_builtin_kernel_benchmarks() {
  static bool done = false;
  if (done) return;
  done = true;
  register_matmul_benchmarks();
  register_attention_benchmarks();
  // Other kernel groups add their register_*_benchmarks() call here.
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

double process_cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         1e-6 * double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

void register_kernel_benchmark(KernelBenchmark benchmark) {
  VKT_ASSERT(benchmark.setup != nullptr, "benchmark " + benchmark.op + " has no setup");
  registry().push_back(std::move(benchmark));
}

const std::vector<KernelBenchmark>& kernel_benchmarks() {
  register_builtin_kernel_benchmarks();
  return registry();
}

std::shared_ptr<vk::Buffer> random_tensor(vk::Context& context, size_t count, kernels::DType type, uint32_t seed,
                                          const std::string& name) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> distribution(-1.0f, 1.0f);
  auto buffer =
      std::make_shared<vk::Buffer>(context.allocate(count * kernels::dtype_bytes(type), vk::Category::workspace, name));
  if (type == kernels::DType::f32) {
    std::vector<float> values(count);
    for (float& value : values) value = distribution(generator);
    context.upload(*buffer, values.data());
  } else {
    std::vector<uint16_t> values(count);
    for (uint16_t& value : values) {
      float x = distribution(generator);
      value = type == kernels::DType::f16 ? float_to_half(x) : float_to_bf16(x);
    }
    context.upload(*buffer, values.data());
  }
  return buffer;
}

double measure_copy_gbps(vk::Context& context, size_t bytes, int repeat) {
  vk::Buffer source = context.allocate(bytes, vk::Category::workspace, "bench-copy-source");
  vk::Buffer destination = context.allocate(bytes, vk::Category::workspace, "bench-copy-destination");
  vk::Sequence sequence(context);
  sequence.record([&](vk::Recorder& recorder) {
    recorder.fill(source.range(), 0x3f800000u);  // first touch outside the timed copies
  });
  context.submit({&sequence});
  sequence.record([&](vk::Recorder& recorder) { recorder.copy(source.range(), destination.range()); });
  context.submit({&sequence});  // warm-up
  // vkCmdCopyBuffer gets no timestamps from the recorder; host time of a large copy is close
  // to device time (submission overhead is microseconds against milliseconds).
  std::vector<double> seconds;
  for (int i = 0; i < std::max(repeat, 1); i++) {
    auto start = std::chrono::steady_clock::now();
    context.submit({&sequence});
    seconds.push_back(seconds_since(start));
  }
  return 2.0 * double(bytes) / median(seconds) * 1e-9;
}

KernelBenchReport run_kernel_benchmarks(vk::Context& context, const KernelBenchOptions& options) {
  KernelBenchReport report;
  report.device = context.caps().name;
  bool matched = false;
  for (const KernelBenchmark& benchmark : kernel_benchmarks()) {
    if (!options.op.empty() && benchmark.op != options.op) continue;
    if (!options.shape.empty() && benchmark.shape.find(options.shape) == std::string::npos) continue;
    matched = true;
    if (benchmark.supported && !benchmark.supported(context.caps())) {
      std::fprintf(stderr, "  %-12s %-40s skipped: not supported on this device\n", benchmark.op.c_str(),
                   benchmark.shape.c_str());
      continue;
    }
    RecordFn record = benchmark.setup(context);
    vk::Sequence sequence(context, /*profiling=*/true);
    sequence.record(record);      // creates the pipelines, outside the timed runs
    context.submit({&sequence});  // warm-up: first touch of memory, driver-side compilation
    std::vector<double> samples, cpu_samples;
    bool timestamps = context.caps().timestamps;
    for (int i = 0; i < std::max(options.repeat, 1); i++) {
      auto start = std::chrono::steady_clock::now();
      double cpu_start = process_cpu_seconds();
      context.submit({&sequence});
      cpu_samples.push_back((process_cpu_seconds() - cpu_start) * 1e3);
      double host_ms = seconds_since(start) * 1e3;
      double device_ms = 0;
      for (const auto& timing : sequence.timings()) device_ms += timing.milliseconds;
      samples.push_back(timestamps ? device_ms : host_ms);
    }
    KernelBenchResult row;
    row.op = benchmark.op;
    row.shape = benchmark.shape;
    row.timestamps = timestamps;
    row.flops = benchmark.flops;
    row.bytes = benchmark.bytes;
    row.median_ms = median(samples);
    row.min_ms = *std::min_element(samples.begin(), samples.end());
    row.cpu_ms = median(cpu_samples);
    if (row.median_ms > 0) {
      row.gflops = benchmark.flops / (row.median_ms * 1e-3) * 1e-9;
      row.gbps = benchmark.bytes / (row.median_ms * 1e-3) * 1e-9;
    }
    report.peak_gflops = std::max(report.peak_gflops, row.gflops);
    report.rows.push_back(row);
    std::fprintf(stderr, "  %-12s %-40s %9.3f ms (cpu %.3f ms)\n", row.op.c_str(), row.shape.c_str(), row.median_ms,
                 row.cpu_ms);
  }
  if (!matched) {
    std::string known;
    for (const KernelBenchmark& benchmark : kernel_benchmarks())
      if (known.find(benchmark.op) == std::string::npos) known += (known.empty() ? "" : ", ") + benchmark.op;
    throw UserError("no kernel benchmark for op '" + options.op + "' and shape '" + options.shape + "'",
                    "known ops: " + known + " (`vktune bench kernels --list` shows every row)");
  }
  if (options.roofline) report.copy_gbps = measure_copy_gbps(context, size_t(64) << 20, std::max(options.repeat, 3));
  // The roofline of each row: the time it would take at this run's best compute rate and the
  // copy bandwidth, whichever bound is larger, against the time it took.
  for (KernelBenchResult& row : report.rows) {
    double compute_s = report.peak_gflops > 0 ? row.flops / (report.peak_gflops * 1e9) : 0;
    double memory_s = report.copy_gbps > 0 ? row.bytes / (report.copy_gbps * 1e9) : 0;
    if (row.median_ms > 0) row.roofline_fraction = std::max(compute_s, memory_s) / (row.median_ms * 1e-3);
  }
  return report;
}

std::string format_kernel_bench_report(const KernelBenchReport& report) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "kernel benchmarks on %s (median of timed runs)\n", report.device.c_str());
  out += line;
  std::snprintf(line, sizeof line, "%-12s %-40s %10s %10s %10s %9s %9s %9s\n", "op", "shape", "median ms", "min ms",
                "cpu ms", "GFLOP/s", "GB/s", "roofline");
  out += line;
  for (const KernelBenchResult& row : report.rows) {
    std::snprintf(line, sizeof line, "%-12s %-40s %10.3f %10.3f %10.3f %9.2f %9.2f %8.0f%%%s\n", row.op.c_str(),
                  row.shape.c_str(), row.median_ms, row.min_ms, row.cpu_ms, row.gflops, row.gbps,
                  100.0 * row.roofline_fraction, row.timestamps ? "" : " (host time)");
    out += line;
  }
  std::snprintf(line, sizeof line,
                "roofline of this run: %.2f GFLOP/s (best row) and %.2f GB/s (64 MiB buffer copy, read + write)\n",
                report.peak_gflops, report.copy_gbps);
  out += line;
  return out;
}

}  // namespace vkt::bench
