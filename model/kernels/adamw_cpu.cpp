// The optimizer's CPU loops for bf16 training with fp32 masters: the AdamW step that reads the
// bf16 gradient and writes the bf16 parameter in the same pass, and the gradient's sum of
// squares (for the global norm) without an fp32 copy of it. The copies these replace (gradient
// to fp32 for the norm and again for the step, master to bf16) each read and write every
// gradient or parameter, a large share of a bf16 step on the CPU.
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "model/kernels/cpu_launch.h"
#include "model/kernels/cpu_vector.h"

namespace dus::kernels::cpu {
namespace {

constexpr int64_t kGrain = 16384;       // elements per parallel task
constexpr int64_t kSquareBlock = 8192;  // elements per fp32 partial sum of squares

struct StepConstants {
  float decay;  // 1 - lr * weight_decay
  float one_minus_beta1, beta2, one_minus_beta2;
  float step_size;   // lr / (1 - beta1^step)
  float bias2_sqrt;  // sqrt(1 - beta2^step)
  float eps;
};

// adamw.h's formula as adamw_step_reference (adamw.cpp) orders it:
// p *= 1 - lr wd; m = lerp(m, g, 1 - beta1); v = beta2 v + (1 - beta2) g g;
// p -= step_size * m / (sqrt(v) / sqrt(bias2) + eps). The compiler may fuse a multiply and an
// add (FMA), so the last bit can differ from at::_fused_adamw_; the result is the same on every
// run and thread count.
DUS_CPU_CLONES void step_span(float* p, uint16_t* p_bf16, const uint16_t* g_bf16, float* m,
                              float* v, const StepConstants c, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = bf16_to_float(g_bf16[i]);
    const float pi = p[i] * c.decay;
    const float mi = m[i] + c.one_minus_beta1 * (g - m[i]);
    const float vi = v[i] * c.beta2 + c.one_minus_beta2 * g * g;
    const float denom = std::sqrt(vi) / c.bias2_sqrt + c.eps;
    const float pn = pi - c.step_size * (mi / denom);
    m[i] = mi;
    v[i] = vi;
    p[i] = pn;
    p_bf16[i] = float_to_bf16(pn);
  }
}

}  // namespace

void adamw_step_bf16_param(const at::Tensor& master, const at::Tensor& param,
                           const at::Tensor& grad, const at::Tensor& exp_avg,
                           const at::Tensor& exp_avg_sq, const AdamWStep& hp) {
  const int64_t n = master.numel();
  for (const auto* t : {&master, &exp_avg, &exp_avg_sq})
    if (!t->is_cpu() || t->scalar_type() != at::kFloat || !t->is_contiguous() || t->numel() != n)
      throw dus::Error("adamw", "bf16 step: master and moments must be contiguous CPU fp32");
  for (const auto* t : {&param, &grad})
    if (!t->is_cpu() || t->scalar_type() != at::kBFloat16 || !t->is_contiguous() || t->numel() != n)
      throw dus::Error("adamw", "bf16 step: param and grad must be contiguous CPU bf16");
  const double bias1 = 1.0 - std::pow(hp.beta1, static_cast<double>(hp.step));
  const double bias2 = 1.0 - std::pow(hp.beta2, static_cast<double>(hp.step));
  const StepConstants c{static_cast<float>(1.0 - hp.lr * hp.weight_decay),
                        static_cast<float>(1.0 - hp.beta1),
                        static_cast<float>(hp.beta2),
                        static_cast<float>(1.0 - hp.beta2),
                        static_cast<float>(hp.lr / bias1),
                        static_cast<float>(std::sqrt(bias2)),
                        static_cast<float>(hp.eps)};
  float* p = master.data_ptr<float>();
  uint16_t* pb = data_of<uint16_t>(param);
  const uint16_t* g = data_of<uint16_t>(grad);
  float* m = exp_avg.data_ptr<float>();
  float* v = exp_avg_sq.data_ptr<float>();
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    step_span(p + begin, pb + begin, g + begin, m + begin, v + begin, c, end - begin);
  });
}

double sum_of_squares(const at::Tensor& t) {
  if (!t.is_cpu() || !t.is_contiguous() ||
      (t.scalar_type() != at::kFloat && t.scalar_type() != at::kBFloat16))
    throw dus::Error("sum_of_squares", "expected a contiguous CPU fp32 or bf16 tensor");
  const int64_t n = t.numel(), blocks = (n + kSquareBlock - 1) / kSquareBlock;
  std::vector<double> partial(blocks);
  auto blocks_of = [&](const auto* data) {
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t start = b * kSquareBlock;
        partial[b] = row_sum_of_squares(data + start, std::min(kSquareBlock, n - start));
      }
    });
  };
  if (t.scalar_type() == at::kBFloat16)
    blocks_of(data_of<uint16_t>(t));
  else
    blocks_of(data_of<float>(t));
  double sum = 0;
  for (double s : partial) sum += s;
  return sum;
}

}  // namespace dus::kernels::cpu
