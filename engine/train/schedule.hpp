#pragma once
// Learning-rate schedules with Hugging Face's formulas (transformers.optimization), as
// multipliers of the peak learning rate. HF evaluates the multiplier at the scheduler's step
// counter, which is 0 for the first optimizer step: optimizer step s (1-based) uses
// multiplier(s - 1). So with warmup the very first step has learning rate 0, as in HF.
#include <span>
#include <string>
#include <vector>

#include "engine/base/names.hpp"
namespace vkt::train {

enum class ScheduleType {
  linear,
  cosine,
  cosine_with_restarts,
  polynomial,
  constant,
  constant_with_warmup,
  inverse_sqrt,
  warmup_stable_decay,
  exponential_ramp  // not HF's: `vktune lr-find`'s range test, lr_start -> --learning-rate geometrically
};
std::span<const NameEntry<ScheduleType>> schedule_type_names();  // the --lr-scheduler-type names (HF's)
const char* schedule_name(ScheduleType type);
// UserError "--lr-scheduler-type 'NAME' is not supported" listing the valid names when unknown.
ScheduleType schedule_from_name(const std::string& name);
std::vector<std::string> schedule_names();

struct ScheduleSettings {
  ScheduleType type = ScheduleType::linear;
  double peak_lr = 5e-5;       // --learning-rate (HF default 5e-5)
  long long warmup_steps = 0;  // resolved from --warmup-steps (a value < 1 is a ratio of max steps)
  long long max_steps = 1;     // total optimizer steps
  // --lr-scheduler-kwargs, with HF's defaults:
  double num_cycles = -1;              // cosine 0.5, cosine_with_restarts 1, wsd 0.5 (cosine decay)
  double lr_end = 1e-7;                // polynomial
  double power = 1.0;                  // polynomial
  long long timescale = 0;             // inverse_sqrt: 0 means warmup_steps or 10000
  long long num_decay_steps = -1;      // wsd: HF requires it; default here 10% of max_steps
  long long num_stable_steps = -1;     // wsd: default max_steps - warmup - decay
  std::string decay_type = "cosine";   // wsd: linear | cosine | 1-sqrt
  std::string warmup_type = "linear";  // wsd: linear | cosine | 1-sqrt
  double min_lr_ratio = 0;             // wsd
  double lr_start = 1e-7;              // exponential_ramp: the first step's learning rate
};

// Applies --lr-scheduler-kwargs (a JSON object; keys as in HF's schedule functions: num_cycles,
// lr_end, power, timescale, num_decay_steps, num_stable_steps, decay_type, warmup_type,
// min_lr_ratio; lr_start for exponential_ramp). UserError naming `where` for bad JSON or wrong types.
void apply_schedule_kwargs(ScheduleSettings& settings, const std::string& json, const std::string& where);

// HF's warmup resolution: a value in (0, 1) is a ratio: ceil(ratio * max_steps).
long long resolve_warmup_steps(double warmup, long long max_steps);

class Schedule {
 public:
  explicit Schedule(ScheduleSettings settings);
  // HF's lambda at scheduler step `scheduler_step` (0-based).
  double multiplier(long long scheduler_step) const;
  // The learning rate used by optimizer step `step` (1-based).
  double learning_rate(long long step) const { return settings_.peak_lr * multiplier(step - 1); }
  const ScheduleSettings& settings() const { return settings_; }

 private:
  ScheduleSettings settings_;
};

}  // namespace vkt::train
