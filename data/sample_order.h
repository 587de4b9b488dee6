// The order in which an epoch visits the packed sequences: a seeded, stateless permutation of
// [0, n). Sample i of epoch e is perm(seed, e)(i), computed in O(1) time and memory, so the
// order depends only on (seed, epoch, i): not on world size, not on how far a run got, not on
// the standard library (std::shuffle and distributions differ between implementations).
//
// Construction: a 6-round Feistel network over the smallest even-bit power of two >= n, with
// splitmix64 as round function, and cycle walking to stay inside [0, n) (at most ~4 steps on
// average since the domain is < 4n).
#pragma once

#include <cstdint>

namespace dus {

/// splitmix64 finaliser: a well-mixed 64-bit hash.
uint64_t mix64(uint64_t x);

class SamplePermutation {
 public:
  /// shuffle=false gives the identity (sequential order).
  SamplePermutation(uint64_t n, uint64_t seed, uint64_t epoch, bool shuffle = true);
  /// The sample at position i (i < n) of the epoch.
  uint64_t operator()(uint64_t i) const;
  uint64_t size() const { return n_; }

 private:
  uint64_t feistel(uint64_t x) const;
  uint64_t n_;
  bool shuffle_;
  int half_bits_ = 1;
  uint64_t half_mask_ = 1;
  uint64_t keys_[6];
};

}  // namespace dus
