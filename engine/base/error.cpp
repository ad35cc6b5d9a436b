#include "engine/base/error.hpp"

namespace vkt {

void fail_invariant(const char* expression, const char* file, int line, const std::string& detail) {
  throw std::logic_error(std::string("internal error: ") + expression + " does not hold at " + file + ":" +
                         std::to_string(line) + (detail.empty() ? "" : " (" + detail + ")"));
}

}  // namespace vkt
