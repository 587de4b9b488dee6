// Weighted mixtures of datasets, deterministic: which source global sample k comes from is a
// function of the weights and how many samples each source has given so far (the counts, which
// the loader state saves). The rule is "largest deficit": pick the source d maximising
// w_d * (n + 1) - count_d (n = samples so far, weights normalised; ties go to the lower index).
// After n samples every source is within one sample of its share w_d * n, with no randomness
// to replay. Within a source, samples still come in its own shuffled order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dus {

class MixtureSchedule {
 public:
  /// Weights must be positive and finite; they are normalised to sum to 1.
  explicit MixtureSchedule(std::vector<double> weights);
  /// The source of the next sample given the per-source counts so far.
  size_t pick(const std::vector<uint64_t>& counts) const;
  const std::vector<double>& weights() const { return weights_; }

 private:
  std::vector<double> weights_;
};

}  // namespace dus
