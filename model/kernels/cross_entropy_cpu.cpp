// The cross-entropy chunk step on the CPU: per row of logits, the max, the sum of exponentials
// (float lanes within blocks of 1024, blocks summed in double, so the loss keeps about fp32
// precision at V = 32000 and beyond), the loss lse - x[target], and in place the gradient
// (exp(x - max) / sum - onehot) * grad_scale.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>

#include "model/error.h"
#include "model/kernels/cpu_launch.h"
#include "model/kernels/cpu_vector.h"
#include "model/loss.h"

namespace dus::kernels::cpu {
namespace {

constexpr int64_t kBlock = 1024;

DUS_CPU_CLONES float row_max(const float* x, int64_t n) {
  float m = -INFINITY;
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < n; ++j) m = std::max(m, x[j]);
  return m;
}

DUS_CPU_CLONES float block_sum_exp(const float* x, float shift, int64_t n) {
  float acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < n; ++j) acc += exp_approx(x[j] - shift);
  return acc;
}

DUS_CPU_CLONES void write_softmax(float* x, float shift, float scale, int64_t n) {
  for (int64_t j = 0; j < n; ++j) x[j] = exp_approx(x[j] - shift) * scale;
}

}  // namespace

at::Tensor cross_entropy_chunk(at::Tensor& logits_nV, const at::Tensor& targets_n,
                               const at::Tensor& grad_scale, bool compute_grad) {
  const int64_t n = logits_nV.size(0), V = logits_nV.size(1);
  const bool widen = logits_nV.scalar_type() != at::kFloat;
  at::Tensor l = widen ? logits_nV.to(at::kFloat).contiguous() : logits_nV;
  auto t = targets_n.contiguous();
  auto loss = at::empty({n}, l.options());
  float* lp = l.data_ptr<float>();
  const int64_t* tp = t.data_ptr<int64_t>();
  float* out = loss.data_ptr<float>();
  const float gscale = grad_scale.item<float>();
  for (int64_t i = 0; i < n; ++i)  // checked up front: a bad target must not be read or written
    if (tp[i] != kIgnoreIndex && (tp[i] < 0 || tp[i] >= V))
      throw dus::Error("cross-entropy", "target " + std::to_string(tp[i]) + " at row " +
                                            std::to_string(i) + " is outside the vocabulary [0, " +
                                            std::to_string(V) + ")");
  at::parallel_for(0, n, std::max<int64_t>(1, 65536 / std::max<int64_t>(V, 1)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t i = begin; i < end; ++i) {
                       float* x = lp + i * V;
                       const float m = row_max(x, V);
                       double sum = 0;
                       for (int64_t b = 0; b < V; b += kBlock)
                         sum += block_sum_exp(x + b, m, std::min(kBlock, V - b));
                       const bool counted = tp[i] != kIgnoreIndex;
                       const float lse = m + static_cast<float>(std::log(sum));
                       out[i] = counted ? lse - x[counted ? tp[i] : 0] : 0.0f;
                       if (!compute_grad) continue;
                       const float scale = counted ? gscale : 0.0f;
                       write_softmax(x, m, static_cast<float>(scale / sum), V);
                       if (counted) x[tp[i]] -= scale;
                     }
                   });
  if (compute_grad && widen) logits_nV.copy_(l);
  return loss;
}

}  // namespace dus::kernels::cpu
