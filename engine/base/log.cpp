#include "engine/base/log.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace vkt::log {
namespace {
Level initial_level() {
  const char* env = std::getenv("VKT_LOG");
  if (env && std::strcmp(env, "debug") == 0) return Level::debug;
  if (env && std::strcmp(env, "quiet") == 0) return Level::warn;
  return Level::info;
}
Level current_level = initial_level();
std::mutex write_mutex;
}  // namespace

void set_level(Level level) { current_level = level; }
bool enabled(Level level) { return level >= current_level; }

void write(Level level, const std::string& message) {
  if (!enabled(level)) return;
  static const char* prefixes[] = {"debug: ", "", "warning: ", "error: "};
  std::lock_guard lock(write_mutex);
  std::fprintf(stderr, "%s%s\n", prefixes[static_cast<int>(level)], message.c_str());
}

}  // namespace vkt::log
