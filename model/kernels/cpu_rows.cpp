// The row reductions several CPU loops share (declared in cpu_vector.h): a row's maximum (the
// loss chunk's and attention's softmax) and its sum of squares (RMSNorm, the gradient norm).
// fp32 lanes; bf16 rows are widened in registers.
#include <algorithm>
#include <cmath>

#include "model/kernels/cpu_vector.h"

namespace dus::kernels::cpu {
namespace {

template <typename T>
DUS_CPU_INLINE float row_max_body(const T* x, int64_t n) {
  float m = -INFINITY;
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < n; ++j) m = std::max(m, load(x[j]));
  return m;
}

template <typename T>
DUS_CPU_INLINE float row_sum_of_squares_body(const T* x, int64_t n) {
  float acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < n; ++j) acc += load(x[j]) * load(x[j]);
  return acc;
}

}  // namespace

DUS_CPU_CLONES float row_max(const float* x, int64_t n) {
  return row_max_body(x, n);
}
DUS_CPU_CLONES float row_max(const uint16_t* x, int64_t n) {
  return row_max_body(x, n);
}
DUS_CPU_CLONES float row_sum_of_squares(const float* x, int64_t n) {
  return row_sum_of_squares_body(x, n);
}
DUS_CPU_CLONES float row_sum_of_squares(const uint16_t* x, int64_t n) {
  return row_sum_of_squares_body(x, n);
}

}  // namespace dus::kernels::cpu
