#include "app/commands.hpp"

#include <filesystem>

#include "engine/base/error.hpp"

namespace vkt::app {

void require_new_output_folder(const std::string& model, const std::string& output, const std::string& result) {
  std::error_code ignored;
  if (std::filesystem::weakly_canonical(model, ignored) == std::filesystem::weakly_canonical(output, ignored))
    throw UserError("--output is the --model folder", "write the " + result + " model to a new folder");
}

}  // namespace vkt::app
