#pragma once
// PEFT's modules_to_save matching (peft 0.21.2, utils/other.py _set_trainable: key.endswith(entry)
// over the base model's module names): an entry names every module whose full name ends with it as a
// plain string. So "norm" is model.norm and every input_layernorm / post_attention_layernorm too,
// "layernorm" both layer norms, "model.norm" the final norm only. PEFT ignores an entry that matches
// nothing; vktune refuses it (model::check_modules_to_save).
#include <algorithm>
#include <string>
#include <vector>

namespace vkt::spec {

// Whether `module` ("model.layers.0.input_layernorm") is one of `entries`' modules.
inline bool peft_saves_module(const std::vector<std::string>& entries, const std::string& module) {
  return std::any_of(entries.begin(), entries.end(),
                     [&](const std::string& entry) { return !entry.empty() && module.ends_with(entry); });
}

}  // namespace vkt::spec
