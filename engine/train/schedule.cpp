#include "engine/train/schedule.hpp"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"

namespace vkt::train {

namespace {
constexpr NameEntry<ScheduleType> schedule_type_table[] = {{ScheduleType::linear, "linear"},
                                                           {ScheduleType::cosine, "cosine"},
                                                           {ScheduleType::cosine_with_restarts, "cosine_with_restarts"},
                                                           {ScheduleType::polynomial, "polynomial"},
                                                           {ScheduleType::constant, "constant"},
                                                           {ScheduleType::constant_with_warmup, "constant_with_warmup"},
                                                           {ScheduleType::inverse_sqrt, "inverse_sqrt"},
                                                           {ScheduleType::warmup_stable_decay, "warmup_stable_decay"},
                                                           {ScheduleType::exponential_ramp, "exponential_ramp"}};
constexpr double pi = 3.14159265358979323846;
}  // namespace

std::span<const NameEntry<ScheduleType>> schedule_type_names() { return schedule_type_table; }
const char* schedule_name(ScheduleType type) { return enum_name(schedule_type_names(), type); }

std::vector<std::string> schedule_names() {
  std::vector<std::string> names;
  for (const auto& entry : schedule_type_names()) names.push_back(entry.name);
  return names;
}

ScheduleType schedule_from_name(const std::string& name) {
  return enum_from_flag(schedule_type_names(), name, "--lr-scheduler-type");
}

void apply_schedule_kwargs(ScheduleSettings& settings, const std::string& json, const std::string& where) {
  nlohmann::json kwargs;
  try {
    kwargs = nlohmann::json::parse(json.empty() ? "{}" : json);
  } catch (const nlohmann::json::exception& error) {
    throw UserError(where + ": schedule kwargs are not JSON: " + std::string(error.what()),
                    "it should be an object such as {\"num_cycles\": 2}");
  }
  if (!kwargs.is_object())
    throw UserError(where + ": schedule kwargs are not a JSON object: " + json,
                    "it should be an object such as {\"num_cycles\": 2}");
  static const char* known[] = {"num_cycles",       "lr_end",     "power",       "timescale",    "num_decay_steps",
                                "num_stable_steps", "decay_type", "warmup_type", "min_lr_ratio", "lr_start"};
  for (const auto& item : kwargs.items())
    if (std::find(std::begin(known), std::end(known), item.key()) == std::end(known))
      throw UserError(where + ": unknown schedule kwarg '" + item.key() + "'",
                      "known: num_cycles, lr_end, power, timescale, num_decay_steps, num_stable_steps, decay_type, "
                      "warmup_type, min_lr_ratio, lr_start");
  try {
    settings.num_cycles = kwargs.value("num_cycles", settings.num_cycles);
    settings.lr_end = kwargs.value("lr_end", settings.lr_end);
    settings.power = kwargs.value("power", settings.power);
    settings.timescale = kwargs.value("timescale", settings.timescale);
    settings.num_decay_steps = kwargs.value("num_decay_steps", settings.num_decay_steps);
    settings.num_stable_steps = kwargs.value("num_stable_steps", settings.num_stable_steps);
    settings.decay_type = kwargs.value("decay_type", settings.decay_type);
    settings.warmup_type = kwargs.value("warmup_type", settings.warmup_type);
    settings.min_lr_ratio = kwargs.value("min_lr_ratio", settings.min_lr_ratio);
    settings.lr_start = kwargs.value("lr_start", settings.lr_start);
  } catch (const nlohmann::json::exception& error) {
    throw UserError(where + ": a schedule kwarg has the wrong type: " + std::string(error.what()),
                    "numbers for num_cycles, lr_end, power, timescale, num_*_steps, min_lr_ratio; strings for *_type");
  }
}

long long resolve_warmup_steps(double warmup, long long max_steps) {
  if (warmup < 0) throw UserError("--warmup-steps must not be negative", "use a step count or a ratio below 1");
  if (warmup > 0 && warmup < 1) return static_cast<long long>(std::ceil(warmup * static_cast<double>(max_steps)));
  return static_cast<long long>(warmup);
}

Schedule::Schedule(ScheduleSettings settings) : settings_(std::move(settings)) {
  auto& s = settings_;
  if (s.num_cycles < 0) s.num_cycles = s.type == ScheduleType::cosine_with_restarts ? 1.0 : 0.5;
  if (s.type == ScheduleType::inverse_sqrt && s.timescale <= 0) s.timescale = s.warmup_steps ? s.warmup_steps : 10000;
  if (s.type == ScheduleType::warmup_stable_decay) {
    if (s.num_decay_steps < 0) s.num_decay_steps = std::max<long long>(1, s.max_steps / 10);
    if (s.num_stable_steps < 0)
      s.num_stable_steps = std::max<long long>(0, s.max_steps - s.warmup_steps - s.num_decay_steps);
    for (const std::string* type : {&s.decay_type, &s.warmup_type})
      if (*type != "linear" && *type != "cosine" && *type != "1-sqrt")
        throw UserError("unknown warmup_stable_decay type '" + *type + "'", "use linear, cosine or 1-sqrt");
  }
  if (s.type == ScheduleType::exponential_ramp && !(s.lr_start > 0 && s.lr_start < s.peak_lr))
    throw UserError("exponential_ramp: lr_start must be positive and below the learning rate",
                    "e.g. --lr-scheduler-kwargs '{\"lr_start\": 1e-7}' --learning-rate 1e-2");
  if (s.type == ScheduleType::polynomial && !(s.peak_lr > s.lr_end))
    throw UserError(
        "polynomial schedule: lr_end (" + std::to_string(s.lr_end) + ") must be smaller than the learning rate",
        "lower lr_end in --lr-scheduler-kwargs");
}

double Schedule::multiplier(long long step) const {
  const auto& s = settings_;
  const double current = static_cast<double>(step);
  const long long warmup = s.warmup_steps, total = s.max_steps;
  auto warmup_value = [&] { return current / static_cast<double>(std::max<long long>(1, warmup)); };
  switch (s.type) {
    case ScheduleType::constant:
      return 1.0;
    case ScheduleType::constant_with_warmup:
      return step < warmup ? warmup_value() : 1.0;
    case ScheduleType::linear:
      if (step < warmup) return warmup_value();
      return std::max(0.0,
                      static_cast<double>(total - step) / static_cast<double>(std::max<long long>(1, total - warmup)));
    case ScheduleType::cosine: {
      if (step < warmup) return warmup_value();
      double progress =
          static_cast<double>(step - warmup) / static_cast<double>(std::max<long long>(1, total - warmup));
      return std::max(0.0, 0.5 * (1.0 + std::cos(pi * s.num_cycles * 2.0 * progress)));
    }
    case ScheduleType::cosine_with_restarts: {
      if (step < warmup) return warmup_value();
      double progress =
          static_cast<double>(step - warmup) / static_cast<double>(std::max<long long>(1, total - warmup));
      if (progress >= 1.0) return 0.0;
      return std::max(0.0, 0.5 * (1.0 + std::cos(pi * std::fmod(s.num_cycles * progress, 1.0))));
    }
    case ScheduleType::polynomial: {
      if (step < warmup) return warmup_value();
      if (step > total) return s.lr_end / s.peak_lr;
      double range = s.peak_lr - s.lr_end;
      double decay_steps = static_cast<double>(total - warmup);
      double remaining = 1.0 - static_cast<double>(step - warmup) / decay_steps;
      return (range * std::pow(remaining, s.power) + s.lr_end) / s.peak_lr;
    }
    case ScheduleType::inverse_sqrt: {
      if (step < warmup) return warmup_value();
      double shift = static_cast<double>(s.timescale - warmup);
      return 1.0 / std::sqrt((current + shift) / static_cast<double>(s.timescale));
    }
    case ScheduleType::warmup_stable_decay: {
      if (step < warmup) {
        double progress = warmup_value();
        double factor = progress;
        if (s.warmup_type == "cosine")
          factor = 0.5 * (1.0 - std::cos(pi * progress));
        else if (s.warmup_type == "1-sqrt")
          factor = 1.0 - std::sqrt(1.0 - progress);
        return std::max(0.0, factor * (1.0 - s.min_lr_ratio) + s.min_lr_ratio);
      }
      if (step < warmup + s.num_stable_steps) return 1.0;
      if (step < warmup + s.num_stable_steps + s.num_decay_steps) {
        double progress = static_cast<double>(step - warmup - s.num_stable_steps) /
                          static_cast<double>(std::max<long long>(1, s.num_decay_steps));
        double factor = 0.5 * (1.0 + std::cos(pi * s.num_cycles * 2.0 * progress));
        if (s.decay_type == "linear")
          factor = 1.0 - progress;
        else if (s.decay_type == "1-sqrt")
          factor = 1.0 - std::sqrt(progress);
        return std::max(0.0, factor * (1.0 - s.min_lr_ratio) + s.min_lr_ratio);
      }
      return s.min_lr_ratio;
    }
    case ScheduleType::exponential_ramp: {  // lr_start at the first step, the peak at the last
      if (total <= 1) return 1.0;
      double progress = std::min(1.0, current / static_cast<double>(total - 1));
      return std::pow(s.lr_start / s.peak_lr, 1.0 - progress);
    }
  }
  return 1.0;
}

}  // namespace vkt::train
