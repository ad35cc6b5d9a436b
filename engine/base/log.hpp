#pragma once
// Minimal logging to stderr; VKT_LOG=debug shows debug lines, VKT_LOG=quiet hides info.
#include <string>

namespace vkt::log {

enum class Level { debug, info, warn, error };
void set_level(Level level);
bool enabled(Level level);
void write(Level level, const std::string& message);

inline void debug(const std::string& m) { write(Level::debug, m); }
inline void info(const std::string& m) { write(Level::info, m); }
inline void warn(const std::string& m) { write(Level::warn, m); }
inline void error(const std::string& m) { write(Level::error, m); }

}  // namespace vkt::log
