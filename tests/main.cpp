// The test runner: doctest plus vktune's own switches.
//   --op NAME   run only the kernel test cases of that op: they are named "NAME: ..."
// After all tests, any Vulkan validation error seen by the shared context fails the run.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tests/support.hpp"

namespace vkt::test {
extern std::string op_filter_value;
bool context_created();
extern uint32_t expected_validation_errors;
void destroy_context();
}  // namespace vkt::test

int main(int argc, char** argv) {
  std::vector<char*> arguments;
  std::string op_case_filter;
  for (int i = 0; i < argc; i++) {
    const char* op = nullptr;
    if (std::strcmp(argv[i], "--op") == 0 && i + 1 < argc)
      op = argv[++i];
    else if (std::strncmp(argv[i], "--op=", 5) == 0)
      op = argv[i] + 5;
    if (op) {
      vkt::test::op_filter_value = op;
      op_case_filter = std::string("--test-case=") + op + ":*";
      continue;
    }
    arguments.push_back(argv[i]);
  }
  if (!op_case_filter.empty()) arguments.push_back(op_case_filter.data());
  doctest::Context runner;
  runner.applyCommandLine(static_cast<int>(arguments.size()), arguments.data());
  int result = runner.run();
  if (runner.shouldExit()) return result;
  if (vkt::test::context_created()) {
    auto& context = vkt::test::context();
    bool enabled = context.validation_enabled();
    uint32_t warnings = context.validation_warnings();
    vkt::test::destroy_context();  // reports leaked objects, if any
    uint32_t errors = vkt::vk::process_validation_errors() - vkt::test::expected_validation_errors;
    std::printf("vulkan validation: %s, %u errors, %u warnings\n", enabled ? "on" : "off", errors, warnings);
    if (errors > 0) {
      std::printf("FAILED: the validation layers reported errors (see above)\n");
      return 1;
    }
  }
  return result;
}
