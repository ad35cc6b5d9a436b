#pragma once
// A terminal progress bar with ETA for long work. On a terminal it redraws one line; when
// stderr is not a terminal it prints one line per report() call (callers report sparingly).
#include <chrono>
#include <cstdint>
#include <string>

namespace vkt {

class ProgressBar {
 public:
  // first_done: where this run starts (a resumed run starts past 0); the ETA uses only the rate of
  // the work done since.
  ProgressBar(std::string label, int64_t total, int64_t first_done = 0);
  ~ProgressBar();
  // Sets the position and an extra text shown after the bar (e.g. "loss 2.31 lr 1e-4").
  void update(int64_t done, const std::string& extra = {});
  // Prints a line even when not on a terminal (used at logging steps).
  void report(int64_t done, const std::string& extra);
  void finish(const std::string& extra = {});
  double elapsed_seconds() const;

 private:
  void draw(int64_t done, const std::string& extra, bool force_line);
  std::string label_;
  int64_t total_;
  int64_t first_done_;
  bool is_terminal_;
  bool silent_;  // log level above info: draws nothing
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace vkt
