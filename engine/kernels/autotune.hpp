#pragma once
// Per-device autotuning of kernel tile parameters (the specialization constants of a kernel body).
//
// A kernel wrapper names a shape class (e.g. "matmul_direct|nt|f32|r512|c2048|k2048") and lists its
// candidates, the first being today's heuristic default. On the first use of a class on a device the
// candidates are timed (timestamp queries; host time where the device has none) and the fastest wins;
// the winner is kept in memory for the process and on disk in
//   $XDG_CACHE_HOME/vktune/autotune-<device uuid>-<driver version>-<vktune version + kernel hash>.json
// (default ~/.cache/vktune), written atomically after each new winner, so a later process reuses it.
// A cache file that does not parse is ignored with a warning (and rewritten when a class is tuned).
// The tiled/direct candidates differ only in how the work is split, never in each output's summation
// order, so among them results are bit-identical whichever wins (tests/test_kernels_autotune.cpp forces
// each one). The exception is a cooperative-matrix candidate (matmul_coopmat.hpp): the matrix units sum
// in their own order, so it is admitted only after matching the default body within coopmat_tolerance.
// Switches: VKT_NO_AUTOTUNE=1 uses the defaults (ctest sets it: tuning costs seconds per class on
// lavapipe); on CPU drivers tuning on first use is off unless VKT_AUTOTUNE=1; `vktune bench tune` tunes
// the kernel-bench shapes up front on any device.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/vk/context.hpp"

namespace vkt::kernels {

enum class AutotuneMode {
  from_environment,  // on unless VKT_NO_AUTOTUNE is set (the default)
  on,
  off,
};

// Process-wide settings; tests change them and put them back.
struct AutotuneSettings {
  AutotuneMode mode = AutotuneMode::from_environment;
  std::optional<uint32_t> forced_candidate;  // tests: always this candidate (clamped to the list), no timing
  std::filesystem::path cache_dir;           // empty: $XDG_CACHE_HOME/vktune, else ~/.cache/vktune
};
AutotuneSettings& autotune_settings();
bool autotune_enabled();

// What tuning did in this process (the test that a second run times nothing reads it).
struct AutotuneCounters {
  uint64_t classes_timed = 0;      // shape classes whose candidates were timed
  uint64_t candidate_runs = 0;     // candidate timings
  uint64_t classes_from_disk = 0;  // shape classes whose winner came from the cache file
};
AutotuneCounters autotune_counters();
// Forgets the in-memory winners (the next lookup reads the cache file again, as a new process would).
void autotune_forget_memory();

// The cache file for this device (whether or not it exists).
std::filesystem::path autotune_cache_file(const vk::Context& context);

// Times one candidate: milliseconds of device time (the median of a few runs).
using CandidateTimer = std::function<double(uint32_t candidate)>;

// The candidate to use for `shape_class` (0 = the default): forced, cached, or timed now with `time`
// when autotuning is on; 0 when it is off or there is only one candidate. `candidate_names` name the
// candidates in the cache file (a cached name no longer in the list is retuned).
uint32_t autotune_choose(vk::Context& context, const std::string& shape_class,
                         const std::vector<std::string>& candidate_names, const CandidateTimer& time);

// One cached winner, for `vktune bench tune`.
struct AutotuneEntry {
  std::string shape_class, winner;
  std::vector<double> candidate_ms;  // as timed (empty for a winner read from disk this process)
};
std::vector<AutotuneEntry> autotune_entries(const vk::Context& context);

}  // namespace vkt::kernels
