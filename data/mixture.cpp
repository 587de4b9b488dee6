#include "data/mixture.h"

#include <cmath>
#include <string>

#include <fmt/format.h>

#include "core/error.h"

namespace dus {

MixtureSchedule::MixtureSchedule(std::vector<double> weights) : weights_(std::move(weights)) {
  if (weights_.empty()) throw Error("data.sources", "at least one source is needed");
  double total = 0;
  for (size_t i = 0; i < weights_.size(); ++i) {
    if (!(weights_[i] > 0) || !std::isfinite(weights_[i]))
      throw Error(fmt::format("data.sources[{}].weight", i),
                  fmt::format("must be a positive number, got {:f}", weights_[i]));
    total += weights_[i];
  }
  for (double& w : weights_) w /= total;
}

size_t MixtureSchedule::pick(const std::vector<uint64_t>& counts) const {
  if (weights_.size() == 1) return 0;
  uint64_t n = 0;
  for (uint64_t c : counts) n += c;
  size_t best = 0;
  double best_deficit = -1e300;
  for (size_t d = 0; d < weights_.size(); ++d) {
    const double deficit =
        weights_[d] * static_cast<double>(n + 1) - static_cast<double>(counts[d]);
    if (deficit > best_deficit) {
      best_deficit = deficit;
      best = d;
    }
  }
  return best;
}

}  // namespace dus
