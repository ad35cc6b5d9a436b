#include "engine/base/progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "engine/base/files.hpp"
#include "engine/base/log.hpp"

namespace vkt {

ProgressBar::ProgressBar(std::string label, int64_t total, int64_t first_done)
    : label_(std::move(label)),
      total_(total > 0 ? total : 1),
      first_done_(first_done),
      is_terminal_(isatty(fileno(stderr))),
      silent_(!log::enabled(log::Level::info)),  // e.g. the ranks other than 0 under mpirun
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  if (!finished_ && is_terminal_ && !silent_) std::fputc('\n', stderr);
}

double ProgressBar::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressBar::update(int64_t done, const std::string& extra) {
  if (!is_terminal_) return;
  auto now = std::chrono::steady_clock::now();
  if (done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  draw(done, extra, false);
}

void ProgressBar::report(int64_t done, const std::string& extra) { draw(done, extra, !is_terminal_); }

void ProgressBar::finish(const std::string& extra) {
  if (finished_) return;
  draw(total_, extra, true);
  if (is_terminal_ && !silent_) std::fputc('\n', stderr);
  finished_ = true;
}

void ProgressBar::draw(int64_t done, const std::string& extra, bool force_line) {
  if (silent_) return;
  double fraction = static_cast<double>(done) / static_cast<double>(total_);
  if (fraction > 1) fraction = 1;
  double elapsed = elapsed_seconds();
  int64_t done_here = done - first_done_;
  double eta = done_here > 0
                   ? elapsed * static_cast<double>(total_ - std::min(done, total_)) / static_cast<double>(done_here)
                   : -1;
  constexpr int width = 24;
  int filled = static_cast<int>(fraction * width);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(width, '.');
  char line[512];
  std::snprintf(line, sizeof line, "%s [%s] %lld/%lld %3.0f%% %s<%s %s", label_.c_str(), bar.c_str(),
                static_cast<long long>(done), static_cast<long long>(total_), fraction * 100,
                format_duration(elapsed).c_str(), format_duration(eta).c_str(), extra.c_str());
  if (is_terminal_)
    std::fprintf(stderr, "\r\033[K%s", line);
  else if (force_line)
    std::fprintf(stderr, "%s\n", line);
  std::fflush(stderr);
}

}  // namespace vkt
