#include "train/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace dus {

void validate_schedule(const ScheduleOptions& o, const std::string& where) {
  if (o.kind != "cosine" && o.kind != "linear" && o.kind != "constant" && o.kind != "wsd")
    throw Error(where, "lr_schedule \"" + o.kind + "\" is not one of cosine, linear, constant, wsd");
  if (!(o.lr > 0)) throw Error(where, "lr must be positive");
  if (o.lr_min < 0 || o.lr_min > o.lr) throw Error(where, "lr_min must be in [0, lr]");
  if (o.warmup_steps < 0 || o.warmup_steps > o.total_steps)
    throw Error(where, "warmup_steps must be in [0, steps]");
  if (o.decay_fraction < 0 || o.decay_fraction > 1)
    throw Error(where, "decay_fraction must be in [0, 1]");
}

double lr_at(const ScheduleOptions& o, int64_t step) {
  // Warm-up: step 0 already trains, at lr / warmup (a zero first step would waste a batch).
  if (step < o.warmup_steps) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps);
  const double span = static_cast<double>(std::max<int64_t>(1, o.total_steps - o.warmup_steps));
  const double progress = std::clamp(static_cast<double>(step - o.warmup_steps) / span, 0.0, 1.0);
  if (o.kind == "constant") return o.lr;
  if (o.kind == "linear") return o.lr_min + (o.lr - o.lr_min) * (1.0 - progress);
  if (o.kind == "cosine") return o.lr_min + (o.lr - o.lr_min) * 0.5 * (1.0 + std::cos(M_PI * progress));
  // wsd: constant, then a linear decay to lr_min over the last decay_fraction of all steps.
  const double decay_steps = o.decay_fraction * static_cast<double>(o.total_steps);
  const double decay_start = static_cast<double>(o.total_steps) - decay_steps;
  if (static_cast<double>(step) < decay_start || decay_steps <= 0) return o.lr;
  const double d = std::clamp((static_cast<double>(step) - decay_start) / decay_steps, 0.0, 1.0);
  return o.lr_min + (o.lr - o.lr_min) * (1.0 - d);
}

}  // namespace dus
