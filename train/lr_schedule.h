// Learning-rate schedules: linear warm-up, then cosine, linear, constant or warm-up-stable-decay
// (WSD), never below a floor. A pure function of the step, so resume needs only the step.
#pragma once

#include <cstdint>
#include <string>

namespace dus {

/// The defaults are the recipe's (recipe.cpp reads them from here).
struct ScheduleOptions {
  std::string kind = "cosine";  ///< cosine | linear | constant | wsd
  double lr = 3e-4;             ///< peak learning rate
  double lr_min = 0.0;          ///< floor (cosine/linear/wsd end here)
  int64_t warmup_steps = 0;     ///< linear ramp from lr/warmup to lr over these steps
  int64_t total_steps = 1000;   ///< schedule length in optimizer steps
  double decay_fraction = 0.2;  ///< wsd: share of total_steps spent decaying at the end
};

/// Throws dus::Error naming `where` for an unknown kind or inconsistent values.
void validate_schedule(const ScheduleOptions& options, const std::string& where);

/// Learning rate for optimizer step `step` (0-based: the first update uses step 0).
double lr_at(const ScheduleOptions& options, int64_t step);

}  // namespace dus
