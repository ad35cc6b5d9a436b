#include "engine/train/run_parts.hpp"

#include <algorithm>

namespace vkt::train {

namespace {

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The trainable tensor a buffer belongs to: its name without a gradient/state/master prefix.
std::string tensor_of(const std::string& buffer) {
  for (const char* prefix :
       {"grad.", "master.", "adam_m.", "adam_v.", "momentum.", "adafactor_row.", "adafactor_col.", "adafactor_v."})
    if (buffer.starts_with(prefix)) return buffer.substr(std::string(prefix).size());
  return buffer;
}

void add_to(std::vector<MemoryPart>& parts, const std::string& name, uint64_t planned, uint64_t measured) {
  auto it = std::find_if(parts.begin(), parts.end(), [&](const MemoryPart& p) { return p.name == name; });
  if (it == parts.end()) it = parts.insert(parts.end(), MemoryPart{name, 0, 0});
  it->planned += planned;
  it->measured += measured;
}

}  // namespace

std::string trainable_kind(const std::string& name, bool full) {
  if (ends_with(name, ".lora_A")) return "LoRA A";
  if (ends_with(name, ".lora_B")) return "LoRA B";
  if (ends_with(name, ".lora_magnitude_vector")) return "DoRA magnitudes";
  if (ends_with(name, ".ia3_l")) return "IA3 vectors";
  if (name.starts_with("prompt")) return "soft prompt";
  if (name.starts_with("model.embed_tokens.token_")) return "trainable tokens";
  if (full) return "full weights";
  if (name == "model.embed_tokens.weight" || name == "lm_head.weight") return "modules_to_save";
  if (ends_with(name, ".bias")) return "BitFit biases";
  return "other";
}

std::vector<std::pair<std::string, uint64_t>> trainable_parameters_by_kind(const plan::MemoryPlan& plan) {
  const bool full = plan.settings.method == spec::Method::full;
  std::vector<std::pair<std::string, uint64_t>> counts;
  for (const plan::BufferSpec& spec : plan.buffers) {
    if (!spec.name.starts_with("grad.")) continue;
    const std::string kind = trainable_kind(spec.name.substr(5), full);
    auto it = std::find_if(counts.begin(), counts.end(), [&](const auto& entry) { return entry.first == kind; });
    if (it == counts.end()) it = counts.insert(counts.end(), std::pair<std::string, uint64_t>(kind, 0));
    it->second += spec.bytes / 4;  // gradients are fp32, also for 16-bit weights
  }
  return counts;
}

std::vector<MemoryPart> adapter_memory_parts(const plan::MemoryPlan& plan, const model::BufferSet* buffers) {
  std::vector<MemoryPart> parts;
  if (plan.settings.method == spec::Method::full) return parts;
  // The adapter kinds' tensors: those with a gradient, plus their fixed companions (index lists).
  std::vector<std::string> trained;
  for (const plan::BufferSpec& spec : plan.buffers)
    if (spec.name.starts_with("grad.")) trained.push_back(spec.name.substr(5));
  for (const plan::BufferSpec& spec : plan.buffers) {
    if (spec.external || spec.category == vk::Category::optimizer_state) continue;
    const std::string tensor = tensor_of(spec.name);
    const bool companion = spec.name == "prompt.indices" || spec.name == "model.embed_tokens.token_indices";
    if (!companion && std::find(trained.begin(), trained.end(), tensor) == trained.end()) continue;
    const uint64_t measured = buffers && buffers->has(spec.name) ? buffers->buffer(spec.name).size() : 0;
    add_to(parts, trainable_kind(tensor, false), spec.bytes, measured);
  }
  return parts;
}

MemoryPart teacher_memory_part(const plan::MemoryPlan& teacher_plan, const model::BufferSet& teacher_buffers) {
  MemoryPart part{"teacher", teacher_plan.device_bytes(), 0};
  for (const auto& [name, buffer] : teacher_buffers.all())
    if (buffer.kind() == vk::MemoryKind::device) part.measured += buffer.size();
  return part;
}

}  // namespace vkt::train
