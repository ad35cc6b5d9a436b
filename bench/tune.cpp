#include "bench/tune.hpp"

#include <cstdio>

#include "bench/kernel_bench.hpp"
#include "engine/base/error.hpp"
#include "engine/vk/recorder.hpp"

namespace vkt::bench {

TuneReport run_autotune(vk::Context& context, const TuneOptions& options) {
  // Asked for explicitly: on even where VKT_NO_AUTOTUNE is set.
  kernels::AutotuneSettings saved = kernels::autotune_settings();
  kernels::autotune_settings().mode = kernels::AutotuneMode::on;
  kernels::AutotuneCounters before = kernels::autotune_counters();
  bool matched = false;
  for (const KernelBenchmark& benchmark : kernel_benchmarks()) {
    if (benchmark.op.rfind("matmul", 0) != 0) continue;  // the tunable kernels
    if (!options.op.empty() && benchmark.op != options.op) continue;
    if (!options.shape.empty() && benchmark.shape.find(options.shape) == std::string::npos) continue;
    if (benchmark.supported && !benchmark.supported(context.caps())) continue;
    matched = true;
    RecordFn record = benchmark.setup(context);
    vk::Sequence sequence(context);
    sequence.record(record);  // recording chooses (and on first use times) each product's tiles
  }
  kernels::autotune_settings() = saved;
  if (!matched)
    throw UserError("no matmul kernel benchmark for op '" + options.op + "' and shape '" + options.shape + "'",
                    "`vktune bench kernels --list` shows the rows");
  TuneReport report;
  report.cache_file = kernels::autotune_cache_file(context).string();
  report.entries = kernels::autotune_entries(context);
  kernels::AutotuneCounters after = kernels::autotune_counters();
  report.counters.classes_timed = after.classes_timed - before.classes_timed;
  report.counters.candidate_runs = after.candidate_runs - before.candidate_runs;
  report.counters.classes_from_disk = after.classes_from_disk - before.classes_from_disk;
  return report;
}

std::string format_tune_report(const TuneReport& report) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%-52s %-22s %s\n", "shape class", "winner", "candidates ms (timed now)");
  out += line;
  for (const auto& entry : report.entries) {
    std::string times;
    for (double ms : entry.candidate_ms) {
      char value[32];
      std::snprintf(value, sizeof value, "%s%.3f", times.empty() ? "" : " ", ms);
      times += value;
    }
    std::snprintf(line, sizeof line, "%-52s %-22s %s\n", entry.shape_class.c_str(), entry.winner.c_str(),
                  times.empty() ? "(cached)" : times.c_str());
    out += line;
  }
  std::snprintf(line, sizeof line, "autotune: %llu shape classes timed (%llu candidate runs), %llu from %s\n",
                static_cast<unsigned long long>(report.counters.classes_timed),
                static_cast<unsigned long long>(report.counters.candidate_runs),
                static_cast<unsigned long long>(report.counters.classes_from_disk), report.cache_file.c_str());
  out += line;
  return out;
}

}  // namespace vkt::bench
