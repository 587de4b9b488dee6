#include "data/sample_order.h"

namespace dus {

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

SamplePermutation::SamplePermutation(uint64_t n, uint64_t seed, uint64_t epoch, bool shuffle)
    : n_(n), shuffle_(shuffle) {
  while ((uint64_t(1) << (2 * half_bits_)) < n && half_bits_ < 31) ++half_bits_;
  half_mask_ = (uint64_t(1) << half_bits_) - 1;
  uint64_t k = mix64(seed ^ mix64(epoch ^ 0x5eed5eed5eed5eedull));
  for (auto& key : keys_) key = k = mix64(k);
}

uint64_t SamplePermutation::feistel(uint64_t x) const {
  uint64_t left = x >> half_bits_, right = x & half_mask_;
  for (uint64_t key : keys_) {
    uint64_t next = left ^ (mix64(right ^ key) & half_mask_);
    left = right;
    right = next;
  }
  return (left << half_bits_) | right;
}

uint64_t SamplePermutation::operator()(uint64_t i) const {
  if (!shuffle_) return i;
  // Cycle walking: a bijection on the power-of-two domain restricted to [0, n) stays a
  // bijection when out-of-range outputs are fed back in.
  uint64_t x = feistel(i);
  while (x >= n_) x = feistel(x);
  return x;
}

}  // namespace dus
