#pragma once
// `vktune bench tune`: autotunes the matmul shapes of the kernel bench up front (engine/kernels/autotune.hpp):
// each selected row is recorded once, which times the candidates of every shape class not yet in this
// device's cache file and stores the winners; a second run finds them all there and times nothing.
#include <string>
#include <vector>

#include "engine/kernels/autotune.hpp"
#include "engine/vk/context.hpp"

namespace vkt::bench {

struct TuneOptions {
  std::string op;     // only kernel-bench rows of this op (empty: every matmul row)
  std::string shape;  // only rows whose shape contains this text
};

struct TuneReport {
  std::string cache_file;
  std::vector<kernels::AutotuneEntry> entries;  // every shape class the rows used
  kernels::AutotuneCounters counters;           // what this run did
};

TuneReport run_autotune(vk::Context& context, const TuneOptions& options);
std::string format_tune_report(const TuneReport& report);

}  // namespace vkt::bench
