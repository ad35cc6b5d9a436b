#include "engine/kernels/autotune.hpp"

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/base/files.hpp"
#include "engine/base/log.hpp"
#include "engine/base/version.hpp"
#include "engine/vk/shader_registry.hpp"

namespace vkt::kernels {
namespace {

using nlohmann::json;

constexpr const char* cache_format = "vktune-autotune";
// A winner must beat the default by this much: timing noise should not flip choices run to run.
constexpr double default_margin = 0.97;

struct Entry {
  std::string winner;
  std::vector<double> candidate_ms;  // as timed in this process (empty when read from disk)
  bool from_disk = false, used = false;
};

struct DeviceTable {
  bool loaded = false;  // the cache file was read (or found missing/corrupt)
  std::map<std::string, Entry> entries;
};

struct State {
  std::mutex mutex;
  AutotuneSettings settings;
  AutotuneCounters counters;
  std::map<std::string, DeviceTable> devices;  // by device_key()
  bool write_warned = false;
};

State& state() {
  static State instance;
  return instance;
}

// FNV-1a over every embedded shader: a rebuilt kernel may have other best tiles, so it gets a new file.
std::string kernel_hash() {
  static const std::string hash = [] {
    uint64_t h = 1469598103934665603ull;
    for (size_t s = 0; s < vk::embedded_shader_count; s++) {
      const auto& shader = vk::embedded_shaders[s];
      for (size_t w = 0; w < shader.word_count; w++) {
        h ^= shader.words[w];
        h *= 1099511628211ull;
      }
    }
    std::ostringstream out;
    out << std::hex << (h & 0xffffffffu);
    return out.str();
  }();
  return hash;
}

std::string device_key(const vk::Context& context) {
  const auto& caps = context.caps();
  std::ostringstream key;
  key << (caps.device_uuid.empty() ? "nouuid" : caps.device_uuid) << "-" << std::hex << caps.driver_version << "-"
      << vktune_version << "-" << kernel_hash();
  return key.str();
}

std::filesystem::path cache_dir(const AutotuneSettings& settings) {
  if (!settings.cache_dir.empty()) return settings.cache_dir;
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && *xdg) return std::filesystem::path(xdg) / "vktune";
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home && *home ? home : "/tmp") / ".cache" / "vktune";
}

std::filesystem::path cache_file(const AutotuneSettings& settings, const vk::Context& context) {
  return cache_dir(settings) / ("autotune-" + device_key(context) + ".json");
}

void load(DeviceTable& table, const std::filesystem::path& path) {
  table.loaded = true;
  std::error_code error;
  if (!std::filesystem::exists(path, error)) return;
  try {
    json document = json::parse(read_text_file(path));
    if (!document.is_object() || document.value("format", "") != cache_format || !document["classes"].is_object())
      throw std::runtime_error("not a " + std::string(cache_format) + " file");
    std::map<std::string, Entry> entries;
    for (const auto& [shape_class, value] : document["classes"].items()) {
      Entry entry;
      entry.winner = value.at("winner").get<std::string>();
      entry.from_disk = true;
      entries[shape_class] = entry;
    }
    for (auto& [shape_class, entry] : entries) table.entries.emplace(shape_class, entry);
  } catch (const std::exception& e) {
    log::warn("autotune: ignoring the cache file " + path.string() + " (" + e.what() +
              "); its shapes are tuned again and the file rewritten");
  }
}

void save(State& s, const DeviceTable& table, const vk::Context& context) {
  const auto& caps = context.caps();
  json classes = json::object();
  for (const auto& [shape_class, entry] : table.entries) {
    json value = {{"winner", entry.winner}};
    if (!entry.candidate_ms.empty()) value["candidate_ms"] = entry.candidate_ms;
    classes[shape_class] = value;
  }
  json document = {{"format", cache_format},
                   {"device", caps.name},
                   {"device_uuid", caps.device_uuid},
                   {"driver", caps.driver_info},
                   {"driver_version", caps.driver_version},
                   {"vktune_version", vktune_version},
                   {"kernel_hash", kernel_hash()},
                   {"classes", classes}};
  std::filesystem::path path = cache_file(s.settings, context);
  try {
    std::filesystem::create_directories(path.parent_path());
    write_file_atomically(path, document.dump(1) + "\n");
  } catch (const std::exception& e) {
    if (!s.write_warned)
      log::warn("autotune: cannot write " + path.string() + " (" + e.what() + "); winners kept in memory");
    s.write_warned = true;
  }
}

}  // namespace

AutotuneSettings& autotune_settings() { return state().settings; }

bool autotune_enabled() {
  switch (state().settings.mode) {
    case AutotuneMode::on:
      return true;
    case AutotuneMode::off:
      return false;
    default: {
      const char* value = std::getenv("VKT_NO_AUTOTUNE");
      return !(value && *value && std::strcmp(value, "0") != 0);
    }
  }
}

AutotuneCounters autotune_counters() {
  std::lock_guard lock(state().mutex);
  return state().counters;
}

void autotune_forget_memory() {
  std::lock_guard lock(state().mutex);
  state().devices.clear();
}

std::filesystem::path autotune_cache_file(const vk::Context& context) { return cache_file(state().settings, context); }

uint32_t autotune_choose(vk::Context& context, const std::string& shape_class,
                         const std::vector<std::string>& candidate_names, const CandidateTimer& time) {
  State& s = state();
  uint32_t count = static_cast<uint32_t>(candidate_names.size());
  if (s.settings.forced_candidate) return std::min(*s.settings.forced_candidate, count ? count - 1 : 0);
  if (count <= 1 || !autotune_enabled()) return 0;
  // CPU drivers tune only when asked (`bench tune`, VKT_AUTOTUNE=1): there the defaults were measured
  // (matmul.cpp), and timing a new training run's classes costs lavapipe more than it saves.
  const char* asked = std::getenv("VKT_AUTOTUNE");
  bool asked_on = asked && *asked && std::strcmp(asked, "0") != 0;
  if (s.settings.mode == AutotuneMode::from_environment && context.caps().device_type == VK_PHYSICAL_DEVICE_TYPE_CPU &&
      !asked_on)
    return 0;
  std::unique_lock lock(s.mutex);
  DeviceTable& table = s.devices[device_key(context)];
  if (!table.loaded) load(table, cache_file(s.settings, context));
  auto found = table.entries.find(shape_class);
  if (found != table.entries.end()) {
    for (uint32_t i = 0; i < count; i++)
      if (candidate_names[i] == found->second.winner) {
        if (found->second.from_disk && !found->second.used) s.counters.classes_from_disk++;
        found->second.used = true;
        return i;
      }
  }
  // Time outside the lock: a candidate run records and submits work on this context.
  lock.unlock();
  std::vector<double> ms(count);
  for (uint32_t i = 0; i < count; i++) ms[i] = time(i);
  uint32_t best = 0;
  for (uint32_t i = 1; i < count; i++)
    if (ms[i] < ms[best] && ms[i] < ms[0] * default_margin) best = i;
  lock.lock();
  s.counters.classes_timed++;
  s.counters.candidate_runs += count;
  table.entries[shape_class] = Entry{candidate_names[best], ms, false, true};
  log::debug("autotune: " + shape_class + ": " + candidate_names[best]);
  save(s, table, context);
  return best;
}

std::vector<AutotuneEntry> autotune_entries(const vk::Context& context) {
  State& s = state();
  std::lock_guard lock(s.mutex);
  std::vector<AutotuneEntry> result;
  auto table = s.devices.find(device_key(context));
  if (table == s.devices.end()) return result;
  for (const auto& [shape_class, entry] : table->second.entries) {
    if (entry.used) result.push_back({shape_class, entry.winner, entry.candidate_ms});
  }
  return result;
}

}  // namespace vkt::kernels
