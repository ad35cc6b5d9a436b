#pragma once
// Errors that reach the user carry where (file, line, tensor, ...) and a hint on what to do.
#include <stdexcept>
#include <string>

namespace vkt {

// A problem the user can fix: bad input file, bad flag, missing driver. Printed as
//   error: <what>
//   ---> HINT: <hint>
class UserError : public std::runtime_error {
 public:
  UserError(std::string what, std::string hint = {}) : std::runtime_error(std::move(what)), hint_(std::move(hint)) {}
  const std::string& hint() const { return hint_; }

 private:
  std::string hint_;
};

// An internal invariant that does not hold: a bug in vktune, not in the input.
[[noreturn]] void fail_invariant(const char* expression, const char* file, int line, const std::string& detail);

}  // namespace vkt

#define VKT_ASSERT(expr, detail)                                             \
  do {                                                                       \
    if (!(expr)) ::vkt::fail_invariant(#expr, __FILE__, __LINE__, (detail)); \
  } while (0)
