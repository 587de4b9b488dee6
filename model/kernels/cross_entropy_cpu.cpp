// The cross-entropy chunk step on the CPU: per row of logits, the max, the sum of exponentials
// (float lanes within blocks of 1024, blocks summed in double, so the loss keeps about fp32
// precision at V = 32000 and beyond), the loss lse - x[target], and in place the gradient
// (exp(x - max) / sum - onehot) * grad_scale. bf16 logits are read and overwritten as bf16 (no
// fp32 copy of the chunk).
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
#include "model/kernels/cpu_launch.h"
#include "model/kernels/cpu_vector.h"
#include "model/loss.h"

namespace dus::kernels::cpu {
namespace {

constexpr int64_t kBlock = 1024;

// Rows are T (float, or uint16_t holding bf16: widened in registers, the gradient rounded once).
template <typename T>
DUS_CPU_INLINE float block_sum_exp_body(const T* x, float shift, int64_t n) {
  float acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < n; ++j) acc += exp_approx(load(x[j]) - shift);
  return acc;
}

template <typename T>
DUS_CPU_INLINE void write_softmax_body(T* x, float shift, float scale, int64_t n) {
  for (int64_t j = 0; j < n; ++j) store(x + j, exp_approx(load(x[j]) - shift) * scale);
}

#define DUS_CROSS_ENTROPY_ROW_LOOPS(T)                                           \
  DUS_CPU_CLONES float block_sum_exp(const T* x, float shift, int64_t n) {       \
    return block_sum_exp_body(x, shift, n);                                      \
  }                                                                              \
  DUS_CPU_CLONES void write_softmax(T* x, float shift, float scale, int64_t n) { \
    write_softmax_body(x, shift, scale, n);                                      \
  }
DUS_CROSS_ENTROPY_ROW_LOOPS(float)
DUS_CROSS_ENTROPY_ROW_LOOPS(uint16_t)
#undef DUS_CROSS_ENTROPY_ROW_LOOPS

template <typename T>
void chunk_as(const at::Tensor& logits_nV, const int64_t* tp, float gscale, bool compute_grad,
              float* out) {
  const int64_t n = logits_nV.size(0), V = logits_nV.size(1);
  T* lp = data_of<T>(logits_nV);
  at::parallel_for(0, n, std::max<int64_t>(1, 65536 / std::max<int64_t>(V, 1)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t i = begin; i < end; ++i) {
                       T* x = lp + i * V;
                       const float m = row_max(x, V);
                       double sum = 0;
                       for (int64_t b = 0; b < V; b += kBlock)
                         sum += block_sum_exp(x + b, m, std::min(kBlock, V - b));
                       const bool counted = tp[i] != kIgnoreIndex;
                       const float lse = m + static_cast<float>(std::log(sum));
                       const float x_target = counted ? load(x[tp[i]]) : 0.0f;
                       out[i] = counted ? lse - x_target : 0.0f;
                       if (!compute_grad) continue;
                       const float scale = counted ? gscale : 0.0f;
                       const float row_scale = static_cast<float>(scale / sum);
                       write_softmax(x, m, row_scale, V);
                       // The target's entry from its logit, so bf16 rounds it once.
                       if (counted) store(x + tp[i], exp_approx(x_target - m) * row_scale - scale);
                     }
                   });
}

}  // namespace

at::Tensor cross_entropy_chunk(at::Tensor& logits_nV, const at::Tensor& targets_n,
                               const at::Tensor& grad_scale, bool compute_grad) {
  const int64_t n = logits_nV.size(0), V = logits_nV.size(1);
  auto t = targets_n.contiguous();
  auto loss = at::empty({n}, logits_nV.options().dtype(at::kFloat));
  const int64_t* tp = t.data_ptr<int64_t>();
  const float gscale = grad_scale.item<float>();
  for (int64_t i = 0; i < n; ++i)  // checked up front: a bad target must not be read or written
    if (tp[i] != kIgnoreIndex && (tp[i] < 0 || tp[i] >= V))
      throw dus::Error(
          "cross-entropy",
          fmt::format("target {} at row {} is outside the vocabulary [0, {})", tp[i], i, V));
  if (logits_nV.scalar_type() == at::kBFloat16)
    chunk_as<uint16_t>(logits_nV, tp, gscale, compute_grad, loss.data_ptr<float>());
  else
    chunk_as<float>(logits_nV, tp, gscale, compute_grad, loss.data_ptr<float>());
  return loss;
}

}  // namespace dus::kernels::cpu
